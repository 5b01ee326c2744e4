"""adadelta.mpi: the data-parallel optimizer (libadadelta_mpi) over mpi4py.

Every rank creates the optimizer with the same arguments and builds it on
the same variables (same names, shapes, order and initial values); each
step takes the rank's *local* gradients, which the library averages over
the ranks in a fixed order, so every rank applies the same bits::

    from mpi4py import MPI
    import adadelta.mpi
    opt = adadelta.mpi.Adadelta(comm=MPI.COMM_WORLD, mode="sharded", learning_rate=1.0)
    opt.build([w, b], names=["dense/kernel", "dense/bias"])
    opt.apply([local_grad_w, local_grad_b])

``mode``: "replicated" (every rank holds the whole optimizer state) or
"sharded" (ZeRO-1: the state is split over the ranks; same results).

The overlapped step reports each gradient as soon as the backward pass has
produced it, so its reduction runs during the rest of the backward pass::

    opt.begin_step()
    opt.grad_ready("dense_1/kernel", g2)   # any order; the memory must stay
    opt.grad_ready("dense/kernel", g1)     # unchanged until end_step()
    ...
    opt.end_step()

For PyTorch, :class:`TorchAdadelta` (also ``adadelta.torch.DistributedAdadelta``)
does this from autograd hooks, like DistributedDataParallel: torch 1.13 has no
``register_post_accumulate_grad_hook``, so a hook is registered on each
parameter's gradient accumulator node (``p.expand_as(p).grad_fn
.next_functions[0][0]``, as DDP does), which runs right after ``p.grad`` has
been written; it reports ``p.grad`` (no copy).

Collective calls (every rank must make them, in the same order): the
constructor, build(), apply(), begin_step(), end_step(), save(), load(),
finalize_variable_values(), setting learning_rate to a float or schedule
(every rank the same), close(). Local: grad_ready(), exclude_from_weight_decay
(before the first step), threads, the getters. The communicator is given by
its Fortran handle (``comm.py2f()``), so any MPI that mpi4py and
libadadelta_mpi share works.
"""

import atexit
import contextlib
import ctypes
import itertools
import os
import weakref

try:
    from mpi4py import MPI
except ImportError as e:  # pragma: no cover
    raise ImportError("adadelta.mpi needs mpi4py (Debian: apt-get install python3-mpi4py, run "
                      "with /usr/bin/python3)") from e

from . import _capi, errors
from . import optimizer as _optimizer

REPLICATED, SHARDED = 0, 1
_MODES = {"replicated": REPLICATED, "sharded": SHARDED}

_live = {}  # creation number -> weakref of every wrapped optimizer
_counter = itertools.count()


@atexit.register
def _close_all():
    """Destroys the wrapped optimizers (collective) before mpi4py finalizes
    MPI, in creation order (the same on every rank)."""
    for k in sorted(_live):
        ref = _live.get(k)
        opt = ref() if ref is not None else None
        if opt is not None:
            opt.close()
    _live.clear()


def _check_comm_mode(comm, mode):
    if comm is None:
        comm = MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm):
        raise errors.invalid("comm must be an mpi4py communicator, got %r" % (comm,))
    if mode not in _MODES:
        raise errors.invalid("mode must be 'replicated' or 'sharded', got %r" % (mode,))
    return comm


_COMPRESSIONS = {None: 0, "none": 0, "bf16": 1, "f16": 2}


def _check_compression(compression):
    if compression not in _COMPRESSIONS:
        raise errors.invalid("compression must be None, 'bf16' or 'f16', got %r" % (compression,))
    return compression


class _MPIMixin:
    """The MPI layer's calls in place of the core's (see adadelta.optimizer)."""

    _mpi = None

    def _mpi_setup(self, comm, mode, bucket_bytes, timeout, compression=None):
        self._comm = _check_comm_mode(comm, mode)
        self._compression = _check_compression(compression)
        if bucket_bytes is not None and (isinstance(bucket_bytes, bool) or int(bucket_bytes) < 1):
            raise errors.invalid("bucket_bytes must be an integer >= 1, got %r" % (bucket_bytes,))
        if timeout is not None and not float(timeout) >= 0:
            raise errors.invalid("timeout must be >= 0 seconds (0: never), got %r" % (timeout,))
        self._mlib = _capi.mpi_lib()
        self._mode = mode
        self._bucket_bytes = bucket_bytes
        self._timeout = timeout
        self._inflight = None  # the gradients reported in an open overlapped step

    @property
    def comm(self):
        return self._comm

    @property
    def mode(self):
        return self._mode

    def _finish_build(self, core):
        out = ctypes.c_void_p()
        _capi.check(self._mlib.adadelta_mpi_wrap_fortran(self._comm.py2f(), core,
                                                         _MODES[self._mode], ctypes.byref(out)))
        m = out.value  # owns core from here on
        try:
            if self._bucket_bytes is not None:
                _capi.check(self._mlib.adadelta_mpi_set_bucket_bytes(m, int(self._bucket_bytes)))
            if self._timeout is not None:
                _capi.check(self._mlib.adadelta_mpi_set_timeout(m, float(self._timeout)))
            if self._compression is not None:
                _capi.check(self._mlib.adadelta_mpi_set_compression(
                    m, _COMPRESSIONS[self._compression]))
        except BaseException:
            self._mlib.adadelta_mpi_destroy(m)  # and the core with it
            self._core_consumed = True
            raise
        self._mpi = m
        k = next(_counter)
        _live[k] = weakref.ref(self, lambda _, k=k: _live.pop(k, None))
        return core

    def _destroy_new(self, core):
        _optimizer.lib.adadelta_destroy(core)

    def _destroy(self):
        m, self._mpi = self._mpi, None
        if m:
            self._core = None
            if not MPI.Is_finalized():
                self._mlib.adadelta_mpi_destroy(m)  # destroys the core too
            return
        super()._destroy()

    def close(self):
        """Frees the optimizer (collective). Later calls fail."""
        self._destroy()

    def _h(self):
        if not self._mpi:
            raise errors.error_for(errors.ESTATE, "the MPI optimizer is closed or not built")
        return self._mpi

    # the MPI layer's twins of the core's calls (before build: the core's)
    def _c_apply(self):
        return self._mlib.adadelta_mpi_apply(self._h(), self._grads_address)

    def _c_set_learning_rate_json(self, text):
        if not self._mpi:
            return super()._c_set_learning_rate_json(text)
        return self._mlib.adadelta_mpi_set_learning_rate_json(self._mpi, text)

    def _c_set_learning_rate_callback(self, fn):
        if not self._mpi:
            return super()._c_set_learning_rate_callback(fn)
        return self._mlib.adadelta_mpi_set_learning_rate_callback(self._mpi, fn, None)

    def _c_exclude(self, idx, n_idx, names, n_names):
        return self._mlib.adadelta_mpi_exclude_from_weight_decay(self._h(), idx, n_idx, names,
                                                                 n_names)

    def _c_finalize(self):
        return self._mlib.adadelta_mpi_finalize_variable_values(self._h())

    def _c_save(self, path):
        return self._mlib.adadelta_mpi_save(self._h(), path)

    def _c_load(self, path):
        return self._mlib.adadelta_mpi_load(self._h(), path)

    def _c_set_threads(self, n):
        if not self._mpi:
            return super()._c_set_threads(n)
        return self._mlib.adadelta_mpi_set_threads(self._mpi, n)

    def _save_local(self, path):
        _capi.check(self._mlib.adadelta_mpi_save_each(self._h(), os.fsencode(path)))

    def _slots_readable(self):
        return False

    def slot(self, variable, kind="accumulated_grad"):
        """As adadelta.Adadelta.slot in replicated mode, after the first step
        (a sharded optimizer holds only its part: use save())."""
        if self._mode == "sharded":
            raise errors.error_for(errors.ESTATE, "slot: the optimizer is sharded; each rank "
                                   "holds a part of the slots (use save())")
        if self.iterations == 0:
            raise errors.error_for(errors.ESTATE, "slot: the MPI optimizer builds its slots at "
                                   "the first step")
        return super().slot(variable, kind)

    @property
    def engine(self):
        """The reduction engine: "shm", "p2p", or "none" before the first step."""
        return self._mlib.adadelta_mpi_engine(self._h()).decode()

    @property
    def state_bytes(self):
        """Optimizer-state bytes held by this rank (about 1/R when sharded)."""
        return int(self._mlib.adadelta_mpi_state_bytes(self._h()))

    def broadcast_variables(self, root=0):
        """Root's variable values to every rank, in place (Horovod's
        broadcast_parameters; collective, after build). Before the first
        step the EMA starts from them too."""
        _capi.check(self._mlib.adadelta_mpi_broadcast_variables(self._h(), int(root)))

    def set_initial_check(self, on):
        """The first step checks that every rank starts from the same
        variables (on by default): different values raise
        InvalidArgumentError on every rank instead of diverging. Local: the
        check runs unless every rank turns it off."""
        self._mlib.adadelta_mpi_set_initial_check(self._h(), 1 if on else 0)

    # ---------------------------------------------------- overlapped step

    def begin_step(self):
        """Opens an overlapped step (collective)."""
        if self._inflight is not None:
            raise errors.error_for(errors.ESTATE, "begin_step: a step is already open")
        _capi.check(self._mlib.adadelta_mpi_begin_step(self._h()))
        self._inflight = [None] * len(self._names)

    @property
    def step_open(self):
        return self._inflight is not None

    def _variable_index(self, variable):
        if isinstance(variable, str):
            if variable not in self._names:
                raise errors.error_for(errors.ENOTFOUND, "no variable named %r" % variable)
            return self._names.index(variable)
        if isinstance(variable, int):
            if not 0 <= variable < len(self._names):
                raise errors.error_for(errors.ENOTFOUND, "no variable %d" % variable)
            return variable
        return self._index_of(variable)

    def grad_ready(self, variable, grad):
        """Reports one variable's gradient (its array, index or name; None:
        no gradient this step) in an open step (local). The gradient's memory
        must not change until end_step() returns (it is kept alive until
        then)."""
        i = self._variable_index(variable)
        self._grad_ready_pointer(i, self._grad_pointer(grad, i), grad)

    def _grad_ready_pointer(self, i, ptr, keep):
        if self._inflight is None:
            raise errors.error_for(errors.ESTATE, "grad_ready: no open step (call begin_step)")
        _capi.check(self._mlib.adadelta_mpi_grad_ready(self._h(), i, ptr))
        self._inflight[i] = keep if keep is not None else False

    def end_step(self):
        """Completes the overlapped step (collective): byte-identical to
        apply() with the same gradients."""
        if self._inflight is None:
            raise errors.error_for(errors.ESTATE, "end_step: no open step")
        cb = self._callback
        try:
            if cb is not None:
                cb.prepare()
            status = self._mlib.adadelta_mpi_end_step(self._h())
        finally:
            self._inflight = None
            if cb is not None:
                cb.done()
        _capi.check(status)


class Adadelta(_MPIMixin, _optimizer.Adadelta):
    """adadelta.Adadelta over MPI ranks (numpy arrays; see the module's
    docstring). comm: an mpi4py communicator (default COMM_WORLD); mode:
    "replicated" or "sharded"; bucket_bytes: bucket size of the overlapped
    step (default 4 MiB); timeout: stall watchdog in seconds (0: never);
    compression: None, or "bf16" / "f16" for the compressed gradient
    exchange (Horovod's Compression.fp16; not Keras's bits, see the README).
    The other arguments are keras.optimizers.Adadelta's."""

    def __init__(self, comm=None, mode="replicated", bucket_bytes=None, timeout=None,
                 compression=None, **kwargs):
        self._mpi_setup(comm, mode, bucket_bytes, timeout, compression)
        _optimizer.Adadelta.__init__(self, **kwargs)


class LossScaleOptimizer(_MPIMixin, _optimizer.LossScaleOptimizer):
    """adadelta.LossScaleOptimizer over MPI ranks (the finite check is
    collective)."""

    def __init__(self, inner_optimizer, comm=None, mode="replicated", bucket_bytes=None,
                 timeout=None, compression=None, **kwargs):
        self._mpi_setup(comm, mode, bucket_bytes, timeout, compression)
        _optimizer.LossScaleOptimizer.__init__(self, inner_optimizer, **kwargs)


def _torch_class():
    import torch

    from . import torch as adtorch

    class TorchAdadelta(adtorch.Adadelta):
        """adadelta.torch.Adadelta over MPI ranks, like DistributedDataParallel
        for the optimizer: every rank holds the same model, runs backward on
        its part of the batch and calls step(); the gradients are averaged
        over the ranks.

        comm, mode, bucket_bytes, timeout, compression: as adadelta.mpi.Adadelta.
        overlap=True: each parameter's gradient is reported from an autograd
        hook as soon as backward has accumulated it (the reduction overlaps
        the rest of the backward pass); step() reports what is left (None or
        gradients set by hand) and completes the step. Gradient accumulation
        over several backward passes: run all but the last inside
        ``with opt.no_sync():``. Do not change the gradients between backward
        and step (use clipnorm / global_clipnorm instead of clipping by
        hand). overlap=False: step() does one data-parallel apply.

        Every rank must run the same backward passes and steps.
        """

        def __init__(self, params, comm=None, mode="replicated", overlap=True,
                     bucket_bytes=None, timeout=None, compression=None, **kwargs):
            self._comm = _check_comm_mode(comm, mode)
            self._compression = _check_compression(compression)
            self._mode = mode
            self._bucket_bytes = bucket_bytes
            self._timeout = timeout
            self._overlap = bool(overlap)
            self._hook_handles = []
            self._grad_accumulators = []
            self._no_sync = 0
            super().__init__(params, **kwargs)

        def _make_group(self, group, names, index):
            engine = Adadelta(comm=self._comm, mode=self._mode, bucket_bytes=self._bucket_bytes,
                              timeout=self._timeout, compression=self._compression,
                              **self._engine_kwargs(group))
            if self._threads is not None:
                engine.threads = self._threads
            return adtorch._Group(engine, group, names)

        def add_param_group(self, param_group):
            super().add_param_group(param_group)
            if self._overlap:
                gi = len(self._groups) - 1
                with torch.enable_grad():
                    for i, p in enumerate(self._groups[gi].params):
                        if not p.requires_grad:
                            continue
                        acc = p.expand_as(p).grad_fn.next_functions[0][0]
                        self._hook_handles.append(acc.register_hook(self._make_hook(gi, i)))
                        self._grad_accumulators.append(acc)  # the node must stay alive

        def broadcast_parameters(self, root=0):
            """Root's parameter values to every rank, in place (Horovod's
            broadcast_parameters; collective). The first step refuses ranks
            that start from different values."""
            for g in self._groups:
                g.engine.broadcast_variables(root)

        def _make_hook(self, gi, i):
            ref = weakref.ref(self)

            def hook(*_):
                opt = ref()
                if opt is not None and not opt._no_sync:
                    opt._report(gi, i)

            return hook

        @contextlib.contextmanager
        def no_sync(self):
            """Backward passes inside only accumulate into .grad (no report)."""
            self._no_sync += 1
            try:
                yield
            finally:
                self._no_sync -= 1

        def _report(self, gi, i):
            gs = self._groups[gi]
            eng = gs.engine
            if not eng.step_open:
                gs.sync(self.param_groups[gi])
                eng.begin_step()
            if eng._inflight[i] is not None:
                raise errors.error_for(
                    errors.ESTATE, "parameter %s: a second backward pass before step(); run "
                    "the extra backward passes inside opt.no_sync()" % gs.names[i])
            p = gs.params[i]
            g = p.grad
            ptr = None
            if g is not None:
                if g.layout is not torch.strided or not g.is_contiguous():
                    ptr = False
                else:
                    ptr = g.data_ptr()
            if ptr is False:  # leave it unreported: step() raises, end_step fails everywhere
                return
            eng._grad_ready_pointer(i, ptr, g)

        def _step(self, closure):
            if not self._overlap:
                return super()._step(closure)
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            problems = []
            stepped = False
            for gi, (gs, g) in enumerate(zip(self._groups, self.param_groups)):
                eng = gs.engine
                try:
                    n = gs.fill(g)
                except errors.AdadeltaError as e:
                    if not eng.step_open:
                        raise
                    problems.append(e)  # close the step on every rank, then raise
                    n = -1
                if not eng.step_open:
                    if n == 0:
                        continue
                    gs.sync(g)
                    eng.begin_step()
                inflight = eng._inflight
                for i, p in enumerate(gs.params):
                    if inflight[i] is None and n >= 0:
                        eng._grad_ready_pointer(i, eng._grads[i], p.grad)
                    elif inflight[i] is not None and inflight[i] is not False and \
                            p.grad is not inflight[i]:
                        problems.append(errors.error_for(
                            errors.ESTATE, "parameter %s: .grad was replaced after backward "
                            "reported it; the step used the reported gradient" % gs.names[i]))
                eng.end_step()
                stepped = True
            if problems:
                raise problems[0]
            if not stepped:
                raise errors.invalid("No gradients provided for any variable.", errors.ENOGRAD)
            return loss

        def close(self):
            """Frees every group's MPI optimizer (collective)."""
            for gs in self._groups:
                gs.engine.close()

    return TorchAdadelta


def __getattr__(name):
    if name == "TorchAdadelta":
        cls = _torch_class()
        globals()["TorchAdadelta"] = cls
        return cls
    raise AttributeError(name)
