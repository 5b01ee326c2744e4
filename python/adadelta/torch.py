"""adadelta.torch.Adadelta: Keras's Adadelta as a ``torch.optim.Optimizer``.

    import torch, adadelta.torch
    model = torch.nn.Linear(64, 10)
    opt = adadelta.torch.Adadelta(model.parameters(), learning_rate=1.0)
    loss = model(x).square().mean(); loss.backward(); opt.step(); opt.zero_grad()

**Keras semantics, not PyTorch's.** The keyword arguments, their defaults
and their meaning are keras.optimizers.Adadelta's: ``learning_rate=0.001``
(PyTorch's ``lr=1.0``), ``epsilon=1e-7`` (PyTorch's ``eps=1e-6``), a
*decoupled* ``weight_decay`` (PyTorch's is L2, added to the gradient),
``clipnorm``/``clipvalue``/``global_clipnorm``, an EMA of the weights,
gradient accumulation, ``loss_scale_factor``. A parameter whose ``.grad`` is
None is Keras's None gradient (skipped this step); a step where no parameter
has a gradient raises ValueError, as Keras's apply does. With the same
learning rate, rho and epsilon and none of the extras, the step is
mathematically PyTorch's ``torch.optim.Adadelta(foreach=False)``.

Parameters: CPU tensors, contiguous, float32, float64, float16 or bfloat16
(each stepped in its own dtype, as Keras does). The C library updates the parameters' memory in place and reads the
gradients where they lie (no copy). ``params`` may also be
``model.named_parameters()`` (the names are then Keras's variable names, used
by ``exclude_from_weight_decay(var_names=...)`` and in the saved state).

Parameter groups: each group is its own Keras optimizer (its own iteration
count, slots and schedule); a group in which no parameter has a gradient in
a step is not stepped. ``global_clipnorm`` is refused with several groups
(Keras clips by the norm over all variables of one optimizer). Group keys are
the Keras keyword names; only ``learning_rate`` may change after a group is
created (assign ``group["learning_rate"]`` a float, a schedule or a
callable; PyTorch's ``lr`` schedulers, which write ``group["lr"]``, do not
apply -- use ``adadelta.schedules``).

``state_dict()`` holds the C library's whole state of each group (the bytes
of an ``adadelta_save`` file); ``load_state_dict()`` restores it exactly
(a resumed run continues bit for bit) and, as in PyTorch, does not change
the parameters' values.
"""

import os
import tempfile

import numpy as np
import torch

from . import _capi, errors
from . import optimizer as _optimizer

__all__ = ["Adadelta"]  # and DistributedAdadelta (adadelta.mpi.TorchAdadelta, on first use)

_profiler_enabled = torch.autograd._profiler_enabled

TORCH_DTYPES = {torch.float32: _capi.F32, torch.float64: _capi.F64, torch.float16: _capi.F16,
                torch.bfloat16: _capi.BF16}
_NUMPY_OF = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
             torch.bfloat16: np.uint16}
_SLOT_NAMES = ("accumulated_grad", "accumulated_delta_var", "average", "gradient_accumulator")


def _check_parameter(p, where):
    if not isinstance(p, torch.Tensor):
        raise errors.invalid("%s: %s is not a tensor" % (where, type(p).__name__))
    if p.device.type != "cpu":
        raise errors.invalid("%s: on %s; adadelta.torch runs on CPU tensors only"
                             % (where, p.device))
    if p.layout is not torch.strided:
        raise errors.invalid("%s: a %s tensor; only dense (strided) tensors" % (where, p.layout))
    if p.dtype not in TORCH_DTYPES:
        raise errors.invalid("%s: dtype %s; supported: torch.float32, torch.float64, "
                             "torch.float16 and torch.bfloat16" % (where, p.dtype))
    if not p.is_contiguous():
        raise errors.invalid("%s: not contiguous (the C library updates it in place; make "
                             "the parameter contiguous before creating the optimizer)" % where)
    if p.dim() > _capi.MAX_DIMS:
        raise errors.invalid("%s: %d dimensions, at most %d" % (where, p.dim(), _capi.MAX_DIMS))


class _Group:
    """One parameter group: its Keras optimizer (a numpy-level adadelta
    optimizer registered on the parameters' memory) and what step() checks."""

    def __init__(self, engine, group, names):
        self.engine = engine
        self.params = list(group["params"])
        self.names = names
        self.data = [p.data for p in self.params]  # keeps the storage the C side writes alive
        self.pointers = [p.data_ptr() for p in self.params]
        self.dtypes = [p.dtype for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.lr = group["learning_rate"]
        self.frozen = {k: v for k, v in group.items()
                       if k not in ("params", "names", "learning_rate")}
        self.exclusions = []
        entries = []
        for p, name in zip(self.params, names):
            entries.append((name, TORCH_DTYPES[p.dtype], p.data_ptr(), tuple(p.shape),
                            np.dtype(_NUMPY_OF[p.dtype]), p.data))
        engine._register(entries)

    def fill(self, group):
        """Writes the gradients' pointers (NULL for None) into the engine's
        array; returns how many there are. Raises before anything changes.
        (PyTorch itself refuses a .grad of another shape, dtype or device;
        the element count, layout and contiguity are checked here.)"""
        params = group["params"]
        if len(params) != len(self.params):
            raise errors.error_for(errors.ESTATE, "the parameter group's params changed "
                                   "after the optimizer was created")
        ptrs = self.engine._grads
        n = i = 0
        strided = torch.strided
        for p, mine, ptr, dtype, numel in zip(params, self.params, self.pointers, self.dtypes,
                                              self.numels):
            if p is not mine or p.data_ptr() != ptr:
                raise errors.error_for(errors.ESTATE, "parameter %d (%s): its tensor or storage "
                                       "changed after the optimizer was created (p.data was "
                                       "replaced?)" % (i, self.names[i]))
            g = p.grad
            if g is None:
                ptrs[i] = None
            elif g.layout is strided and g.dtype is dtype and g.numel() == numel and \
                    g.is_contiguous():
                ptrs[i] = g.data_ptr()
                n += 1
            else:
                self._refuse(i, p, g)
            i += 1
        return n

    def _refuse(self, i, p, g):
        if g.layout is not torch.strided or g.dtype is not p.dtype or g.shape != p.shape:
            raise errors.invalid("parameter %d (%s): gradient is %s %s %s, the parameter %s %s"
                                 % (i, self.names[i], g.layout, g.dtype, tuple(g.shape),
                                    p.dtype, tuple(p.shape)), errors.EMISMATCH)
        raise errors.invalid("parameter %d (%s): its gradient is not contiguous"
                             % (i, self.names[i]))

    def sync(self, group):
        """Applies a changed group["learning_rate"]; refuses other changes."""
        for k, v in self.frozen.items():
            if group.get(k) != v:
                raise errors.invalid("param group key %r changed from %r to %r; only "
                                     "learning_rate can change after creation"
                                     % (k, v, group.get(k)))
        lr = group["learning_rate"]
        if lr is not self.lr:
            self.engine.learning_rate = lr
            self.lr = lr

    def state_bytes(self):
        with tempfile.TemporaryDirectory(prefix="adadelta-") as d:
            path = os.path.join(d, "state.safetensors")
            self.engine._save_local(path)
            with open(path, "rb") as f:
                return f.read()

    def load_bytes(self, blob):
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise errors.invalid("adadelta_state entries must be bytes")
        with tempfile.TemporaryDirectory(prefix="adadelta-") as d:
            path = os.path.join(d, "state.safetensors")
            with open(path, "wb") as f:
                f.write(blob)
            self.engine.load(path)


class Adadelta(torch.optim.Optimizer):
    """Keras's Adadelta over torch parameters (see the module's docstring).

    Arguments: ``params`` (tensors, ``named_parameters()`` pairs or param
    group dicts, whose keys are the keyword names below plus ``params`` and
    optionally ``names``) and keras.optimizers.Adadelta's keyword arguments:
    learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
    clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
    ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
    gradient_accumulation_steps=None, name="adadelta". An unknown keyword
    raises ValueError (as Keras does).

    Beyond torch.optim.Optimizer: ``exclude_from_weight_decay(var_list,
    var_names)``, ``finalize_variable_values()``, ``iterations``,
    ``threads``, ``optimizers`` (each group's adadelta.Adadelta, for
    get_config(), learning_rate, slot() ...), ``save(path)`` / ``load(path)``
    (one group: the C library's state file), and ``state[p]`` holding live
    views of each parameter's slots.
    """

    _engine_class = _optimizer.Adadelta

    def __init__(self, params, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="adadelta", **kwargs):
        if kwargs:
            hint = " (Keras's names: learning_rate, epsilon)" if {"lr", "eps"} & set(kwargs) else ""
            raise errors.invalid("Argument(s) not recognized: %r%s" % (kwargs, hint))
        defaults = dict(learning_rate=learning_rate, rho=rho, epsilon=epsilon,
                        weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                        global_clipnorm=global_clipnorm, use_ema=use_ema,
                        ema_momentum=ema_momentum,
                        ema_overwrite_frequency=ema_overwrite_frequency,
                        loss_scale_factor=loss_scale_factor,
                        gradient_accumulation_steps=gradient_accumulation_steps, name=name)
        self._groups = []
        self._threads = None
        self._n_params = 0
        if isinstance(params, torch.Tensor):
            raise errors.invalid("params argument given to the optimizer should be an iterable "
                                 "of Tensors or dicts, but got a Tensor")
        params = list(params)
        if params and isinstance(params[0], tuple):  # named_parameters()
            params = [{"params": [p for _, p in params], "names": [n for n, _ in params]}]
        super().__init__(params, defaults)

    # ------------------------------------------------------------ groups

    def add_param_group(self, param_group):
        """Adds a group (torch's API): its own Keras optimizer."""
        group = dict(param_group)
        ps = group.get("params")
        if isinstance(ps, torch.Tensor):
            ps = [ps]
        ps = list(ps) if ps is not None else []
        if ps and isinstance(ps[0], tuple):
            group["names"] = [n for n, _ in ps]
            ps = [p for _, p in ps]
        group["params"] = ps
        unknown = set(group) - set(self.defaults) - {"params", "names"}
        if unknown:
            raise errors.invalid("param group: unknown key(s) %s (Keras's keyword names: %s)"
                                 % (sorted(unknown), ", ".join(self.defaults)))
        for i, p in enumerate(ps):
            _check_parameter(p, "parameter %d of group %d" % (i, len(self.param_groups)))
        if len({id(p) for p in ps}) != len(ps):
            raise errors.invalid("param group: a parameter is listed twice")
        names = group.pop("names", None)
        if names is None:
            names = ["variable_%d" % (self._n_params + i) for i in range(len(ps))]
        names = [str(n) for n in names]
        if len(names) != len(ps):
            raise errors.invalid("param group: %d names for %d params" % (len(names), len(ps)))
        merged = dict(self.defaults, **{k: v for k, v in group.items() if k != "params"})
        if self.param_groups and (merged.get("global_clipnorm") is not None or any(
                g.get("global_clipnorm") is not None for g in self.param_groups)):
            raise errors.invalid("global_clipnorm with several parameter groups: Keras clips by "
                                 "the norm over all variables of one optimizer, which separate "
                                 "groups cannot reproduce; use one group (or clipnorm)")
        super().add_param_group(group)
        g = self.param_groups[-1]
        try:
            state = self._make_group(g, names, len(self.param_groups) - 1)
        except BaseException:
            self.param_groups.pop()
            raise
        self._groups.append(state)
        self._n_params += len(ps)
        self._refresh_state(len(self._groups) - 1)

    def _engine_kwargs(self, group):
        return {k: group[k] for k in self.defaults}

    def _make_group(self, group, names, index):
        engine = self._engine_class(**self._engine_kwargs(group))
        if self._threads is not None:
            engine.threads = self._threads
        return _Group(engine, group, names)

    def _refresh_state(self, gi):
        """state[p]: live views (torch tensors over the C memory) of the slots."""
        gs = self._groups[gi]
        if not gs.engine._slots_readable():
            return
        kinds = ["accumulated_grad", "accumulated_delta_var"]
        cfg = self._engine_kwargs(self.param_groups[gi])
        if cfg.get("use_ema"):
            kinds.append("average")
        if cfg.get("gradient_accumulation_steps"):
            kinds.append("gradient_accumulator")
        for i, p in enumerate(gs.params):
            views = {}
            for k in kinds:
                a = gs.engine.slot(i, k)
                t = torch.from_numpy(a) if p.dtype is not torch.bfloat16 else \
                    torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
                views[k] = t
            self.state[p] = views

    # ------------------------------------------------------------ step

    def step(self, closure=None):
        """One Keras apply() per group with the parameters' current .grad
        (None: no gradient). Returns the closure's loss, if given."""
        if _profiler_enabled():  # torch's profiler label, only when profiling
            with torch.autograd.profiler.record_function(
                    "Optimizer.step#%s.step" % type(self).__name__):
                return self._step(closure)
        return self._step(closure)

    # torch.optim.Optimizer would wrap step() in record_function on every
    # call (about 6 us); step() above does it only while profiling.
    step.hooked = True

    def _step(self, closure):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self._groups
        if len(groups) == 1:  # the common case, with the least Python per step
            gs, g = groups[0], self.param_groups[0]
            if not gs.fill(g):
                raise errors.invalid("No gradients provided for any variable.", errors.ENOGRAD)
            gs.sync(g)
            gs.engine._run_apply()
            return loss
        counts = [gs.fill(g) for gs, g in zip(groups, self.param_groups)]
        if not any(counts):
            raise errors.invalid("No gradients provided for any variable.", errors.ENOGRAD)
        for gs, g in zip(groups, self.param_groups):
            gs.sync(g)
        for gs, n in zip(groups, counts):
            if n:
                gs.engine._run_apply()
        return loss

    # ------------------------------------------------------------ Keras extras

    @property
    def optimizers(self):
        """Each group's Keras optimizer (adadelta.Adadelta), read-only use."""
        return [gs.engine for gs in self._groups]

    @property
    def iterations(self):
        """The first group's iteration count (steps applied so far)."""
        return self._groups[0].engine.iterations

    @property
    def threads(self):
        return self._groups[0].engine.threads

    @threads.setter
    def threads(self, n):
        for gs in self._groups:
            gs.engine.threads = n
        self._threads = int(n)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras's exclude_from_weight_decay: no weight decay for these
        parameters, nor for those whose name matches a regular expression of
        var_names. Before the first step."""
        var_list = list(var_list or [])
        var_names = [str(n) for n in (var_names or [])]
        found = set()
        plans = []
        for gs in self._groups:
            idx = [i for i, p in enumerate(gs.params) if any(p is v for v in var_list)]
            found.update(id(gs.params[i]) for i in idx)
            plans.append(idx)
        if len(found) != len({id(v) for v in var_list}):
            raise errors.invalid("exclude_from_weight_decay: a tensor of var_list is not a "
                                 "parameter of this optimizer")
        for gs, idx in zip(self._groups, plans):
            gs.engine._exclude_indices(idx, var_names)
            gs.exclusions.append((idx, var_names))

    def finalize_variable_values(self):
        """Keras's finalize_variable_values (use_ema: the averages into the
        parameters)."""
        for gs in self._groups:
            gs.engine.finalize_variable_values()

    def save(self, path):
        """The C library's state file (one parameter group only)."""
        self._one_group("save").engine.save(path)

    def load(self, path):
        """Loads a file written by save() (parameters included)."""
        self._one_group("load").engine.load(path)

    def _one_group(self, what):
        if len(self._groups) != 1:
            raise errors.invalid("%s: %d parameter groups; use state_dict()" % (what, len(self._groups)))
        return self._groups[0]

    # ------------------------------------------------------------ state dict

    def state_dict(self):
        """PyTorch's layout ({"state", "param_groups"}) plus "adadelta_state":
        per group, the bytes of the C library's state file (slots, counters,
        parameters)."""
        groups, start = [], 0
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(packed)
        return {"state": {}, "param_groups": groups,
                "adadelta_state": [gs.state_bytes() for gs in self._groups]}

    def load_state_dict(self, state_dict):
        """Restores state_dict()'s state exactly: new Keras optimizers with the
        saved hyperparameters, loaded from the saved bytes. The parameters
        keep their current values (PyTorch's rule). All or nothing."""
        blobs = state_dict.get("adadelta_state")
        saved = state_dict.get("param_groups")
        if blobs is None or saved is None:
            raise errors.invalid("load_state_dict: not a state_dict of adadelta.torch.Adadelta "
                                 "(no adadelta_state)")
        if len(saved) != len(self.param_groups) or len(blobs) != len(saved):
            raise errors.invalid("load_state_dict: %d parameter groups saved, the optimizer has %d"
                                 % (len(saved), len(self.param_groups)))
        for g, s in zip(self.param_groups, saved):
            if len(g["params"]) != len(s["params"]):
                raise errors.invalid("load_state_dict: a saved group has %d parameters, this "
                                     "optimizer's has %d" % (len(s["params"]), len(g["params"])))
        params = [p for g in self.param_groups for p in g["params"]]
        with torch.no_grad():
            backup = [p.detach().clone() for p in params]
        new = []
        try:
            for gi, (g, s, blob) in enumerate(zip(self.param_groups, saved, blobs)):
                merged = dict(g)
                merged.update({k: v for k, v in s.items() if k in self.defaults})
                gs = self._make_group(merged, self._groups[gi].names, gi)
                for idx, names in self._groups[gi].exclusions:
                    gs.engine._exclude_indices(idx, names)
                gs.exclusions = list(self._groups[gi].exclusions)
                gs.load_bytes(blob)
                new.append(gs)
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
        for g, s in zip(self.param_groups, saved):
            g.update({k: v for k, v in s.items() if k in self.defaults})
        self._groups = new
        for gi in range(len(new)):
            self._refresh_state(gi)

    def __setstate__(self, state):
        super().__setstate__(state)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append("Parameter Group %d (%d params)" % (i, len(g["params"])))
            for k in self.defaults:
                lines.append("    %s: %r" % (k, g[k]))
        return "\n".join(lines) + "\n)"


def __getattr__(name):
    if name == "DistributedAdadelta":
        from .mpi import TorchAdadelta

        return TorchAdadelta
    raise AttributeError(name)
