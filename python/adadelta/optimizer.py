"""keras.optimizers.Adadelta (and LossScaleOptimizer) over numpy arrays.

The optimizer updates the caller's arrays in place: ``build()`` registers
each array's memory with the C library (no copy is ever made), ``apply()``
passes each gradient's data pointer. Everything else follows Keras 3's
optimizer API; the C library (libadadelta) computes every step.
"""

import ctypes
import json
import math
import numbers
import os

import numpy as np

from . import _capi, errors, schedules

lib = _capi.lib

#: Keras's keyword arguments of keras.optimizers.Adadelta and their defaults.
KERAS_DEFAULTS = {
    "learning_rate": 0.001,
    "rho": 0.95,
    "epsilon": 1e-7,
    "weight_decay": None,
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
    "name": "adadelta",
}

_SLOT_KINDS = {
    "accumulated_grad": _capi.SLOT_ACCUMULATED_GRAD,
    "accumulated_delta_var": _capi.SLOT_ACCUMULATED_DELTA_VAR,
    "average": _capi.SLOT_EMA,
    "gradient_accumulator": _capi.SLOT_GRADIENT_ACCUMULATOR,
}

# numpy dtype -> adadelta_dtype. The C library accepts float32 and float64;
# the others are passed through and refused (or, once implemented,
# accepted) by it. bfloat16 is ml_dtypes.bfloat16 when installed, or uint16
# arrays holding the bits.
_NP_DTYPES = {np.dtype(np.float32): _capi.F32, np.dtype(np.float64): _capi.F64,
              np.dtype(np.float16): _capi.F16, np.dtype(np.uint16): _capi.BF16}
try:  # pragma: no cover - optional
    import ml_dtypes

    _NP_DTYPES[np.dtype(ml_dtypes.bfloat16)] = _capi.BF16
except ImportError:
    pass
_ENUM_TO_NP = {_capi.F32: np.dtype(np.float32), _capi.F64: np.dtype(np.float64),
               _capi.F16: np.dtype(np.float16), _capi.BF16: np.dtype(np.uint16)}


def numpy_dtype_code(dtype):
    """The adadelta_dtype of a numpy dtype, or None."""
    return _NP_DTYPES.get(np.dtype(dtype))


def _plain(x):
    """numpy scalars as Python numbers (for JSON)."""
    return x.item() if isinstance(x, np.generic) else x


def _learning_rate_json(lr):
    """learning_rate as the C library's JSON value (a callable: a placeholder,
    replaced by the callback)."""
    if isinstance(lr, schedules.LearningRateSchedule):
        return schedules.serialize(lr)
    if isinstance(lr, numbers.Real) and not isinstance(lr, (bool, np.bool_)):
        return float(lr)
    if callable(lr):
        return 0.001
    raise errors.invalid("learning_rate must be a float, a LearningRateSchedule or a callable "
                         "without arguments; got %r" % (lr,))


def _normalize_learning_rate(lr):
    if isinstance(lr, dict):  # a serialized schedule
        return schedules.deserialize(lr)
    _learning_rate_json(lr)  # type check
    return _plain(lr)


def _dumps(config):
    try:
        return json.dumps(config, allow_nan=False)
    except ValueError:
        for k, v in config.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise errors.invalid("config: %s = %r is not finite" % (k, v)) from None
        raise errors.invalid("config: a value is not finite: %r" % (config,)) from None
    except TypeError as e:
        raise errors.invalid("config: %s" % e) from None


def live_array(ptr, shape, dtype, owner):
    """A numpy array over C memory (no copy) that keeps `owner` alive."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if not ptr:
        raise errors.error_for(errors.ENOTFOUND, _capi.last_error() or "no such memory")
    buf = (ctypes.c_char * max(n * dtype.itemsize, 1)).from_address(ptr)
    buf._owner = owner
    return np.frombuffer(buf, dtype=dtype, count=n).reshape(shape)


def _exclude_args(idx, names):
    """adadelta_exclude_from_weight_decay's arguments after the handle."""
    c_idx = (ctypes.c_int * max(len(idx), 1))(*idx)
    enc = [n.encode() for n in names]
    c_names = (ctypes.c_char_p * max(len(enc), 1))(*enc)
    return c_idx, len(idx), c_names, len(enc)


def _entry_index(entries, v):
    for i, e in enumerate(entries):
        if e[5] is v or (isinstance(v, np.ndarray) and e[2] == v.__array_interface__["data"][0]
                         and tuple(e[3]) == v.shape):
            return i
    raise errors.invalid("exclude_from_weight_decay: a variable of var_list is not among the "
                         "variables given to build()")


class _LRCallback:
    """A Python callable as the C library's learning-rate callback. The
    ctypes function object lives as long as this (the optimizer holds it).

    Before a step the callable is called from Python (``prepare``), so an
    exception it raises stops the step before anything changes; the C
    library's call during the step then returns that value (the callable is
    called once per step, as in Keras). Other calls (the learning_rate
    property) call it directly; an exception there is re-raised afterwards.
    """

    def __init__(self, fn):
        self.fn = fn
        self.error = None
        self.value = None

        def trampoline(_user_data):
            if self.value is not None:
                v, self.value = self.value, None
                return v
            try:
                return float(fn())
            except BaseException as e:  # noqa: B902 - re-raised by the caller
                self.error = e
                return float("nan")

        self.c_function = _capi.LR_CALLBACK(trampoline)

    def prepare(self):
        self.value = float(self.fn())

    def done(self):
        self.value = None
        if self.error is not None:
            e, self.error = self.error, None
            raise e


class _Optimizer:
    """What Adadelta and LossScaleOptimizer share: the C optimizer's handle,
    the registered variables and every call after the constructor.

    Subclasses provide ``_c_config()`` (the JSON dict for
    adadelta_create_from_json). The C calls that change the optimizer go
    through the ``_c_*`` methods, which adadelta.mpi overrides.
    """

    built = False

    def _init_common(self, learning_rate):
        self._lr = _normalize_learning_rate(learning_rate)
        self._callback = None
        self._threads = None
        self._pending_exclude = []
        self._arrays = []  # the registered objects (kept alive)
        self._pointers = []  # their data pointers
        self._names = []
        self._shapes = []
        self._dtypes = []
        self._index_by_id = {}
        self._index_by_ptr = {}
        self._grads = (ctypes.c_void_p * 1)()
        self._grads_address = ctypes.addressof(self._grads)
        self._core = None
        # validates the arguments as Keras's constructor does
        self._core, self._callback = self._new_core()

    # ------------------------------------------------------------ C handle

    def _c_config(self):
        raise NotImplementedError

    def _new_core(self):
        """A C optimizer from the current config: (handle, the callback
        object it calls, which must outlive it, or None)."""
        handle = ctypes.c_void_p()
        _capi.check(lib.adadelta_create_from_json(_dumps(self._c_config()).encode(),
                                                  ctypes.byref(handle)))
        core, cb = handle.value, None
        try:
            if callable(self._lr) and not isinstance(self._lr, schedules.LearningRateSchedule):
                cb = _LRCallback(self._lr)
                _capi.check(lib.adadelta_set_learning_rate_callback(core, cb.c_function, None))
            if self._threads is not None:
                _capi.check(lib.adadelta_set_threads(core, self._threads))
        except BaseException:
            lib.adadelta_destroy(core)
            raise
        return core, cb

    def _destroy(self):
        core, self._core = getattr(self, "_core", None), None
        if core:
            lib.adadelta_destroy(core)

    def __del__(self):
        try:
            self._destroy()
        except Exception:  # interpreter shutdown
            pass

    # the calls that change the optimizer (adadelta.mpi overrides them)
    def _c_apply(self):
        return lib.adadelta_apply(self._core, self._grads_address)

    def _c_set_learning_rate_json(self, text):
        return lib.adadelta_set_learning_rate_json(self._core, text)

    def _c_set_learning_rate_callback(self, fn):
        return lib.adadelta_set_learning_rate_callback(self._core, fn, None)

    def _c_exclude(self, idx, n_idx, names, n_names):
        return lib.adadelta_exclude_from_weight_decay(self._core, idx, n_idx, names, n_names)

    def _c_finalize(self):
        return lib.adadelta_finalize_variable_values(self._core)

    def _c_save(self, path):
        return lib.adadelta_save(self._core, path)

    def _c_load(self, path):
        return lib.adadelta_load(self._core, path)

    def _c_set_threads(self, n):
        return lib.adadelta_set_threads(self._core, n)

    def _finish_build(self, core):
        """After the variables are registered: Keras's build() (slots)."""
        _capi.check(lib.adadelta_build(core))
        return core

    # ------------------------------------------------------------ variables

    def _register(self, entries):
        """Registers variables in a fresh C optimizer and makes it current.
        entries: (name, dtype code, data pointer, shape, numpy dtype, keep-alive
        object). All or nothing: on failure the optimizer is unchanged."""
        core, cb = self._new_core()
        self._core_consumed = False
        try:
            for name, code, ptr, shape, _, _ in entries:
                dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
                _capi.check(lib.adadelta_add_variable(core, name.encode(), code,
                                                      ctypes.c_void_p(ptr), len(shape), dims))
            for var_list, names in self._pending_exclude:
                idx = [_entry_index(entries, v) for v in var_list]
                _capi.check(lib.adadelta_exclude_from_weight_decay(
                    core, *_exclude_args(idx, names)))
            core = self._finish_build(core)
        except BaseException:
            if not self._core_consumed:  # else _finish_build freed it
                self._destroy_new(core)
            raise
        old, self._core = self._core, core
        self._callback = cb
        if old:
            lib.adadelta_destroy(old)
        self._pending_exclude = []
        n = len(entries)
        self._names = [e[0] for e in entries]
        self._pointers = [e[2] for e in entries]
        self._shapes = [tuple(e[3]) for e in entries]
        self._dtypes = [e[4] for e in entries]
        self._arrays = [e[5] for e in entries]
        self._index_by_id = {id(e[5]): i for i, e in enumerate(entries)}
        self._index_by_ptr = {e[2]: i for i, e in enumerate(entries)}
        self._grads = (ctypes.c_void_p * max(n, 1))()
        self._grads_address = ctypes.addressof(self._grads)
        self.built = True

    def _destroy_new(self, core):
        lib.adadelta_destroy(core)

    def build(self, variables, names=None):
        """Keras's ``build(variables)``: registers the arrays this optimizer
        updates (in place, no copy) and allocates the slot variables.

        variables: C-contiguous, writeable numpy arrays, float32, float64,
        float16 or bfloat16 (ml_dtypes.bfloat16, or uint16 holding the bits);
        each variable's gradients in its dtype. names: one
        string per variable (default ``variable_<i>``); Keras's variable
        paths (``"dense/kernel"``) make exclude_from_weight_decay(var_names=)
        and the saved files readable. A second call does nothing, as in Keras.
        """
        if self.built:
            return
        variables = list(variables)
        if names is None:
            names = ["variable_%d" % i for i in range(len(variables))]
        names = list(names)
        if len(names) != len(variables):
            raise errors.invalid("build: %d names for %d variables" % (len(names), len(variables)))
        entries = []
        for i, (v, name) in enumerate(zip(variables, names)):
            if not isinstance(name, str):
                raise errors.invalid("build: name %d is %r, not a str" % (i, name))
            if not isinstance(v, np.ndarray):
                raise errors.invalid("build: variable %d (%s) is a %s, not a numpy array"
                                     % (i, name, type(v).__name__))
            code = _NP_DTYPES.get(v.dtype)
            if code is None:
                raise errors.invalid("build: variable %d (%s) has dtype %s; supported: float32, "
                                     "float64, float16 and bfloat16 (uint16 bits)"
                                     % (i, name, v.dtype))
            if not (v.flags.c_contiguous and v.flags.writeable and v.flags.aligned):
                raise errors.invalid("build: variable %d (%s) must be a C-contiguous, aligned, "
                                     "writeable array (it is updated in place)" % (i, name))
            if v.ndim > _capi.MAX_DIMS:
                raise errors.invalid("build: variable %d (%s) has %d dimensions, at most %d"
                                     % (i, name, v.ndim, _capi.MAX_DIMS))
            entries.append((name, code, v.ctypes.data, v.shape, v.dtype, v))
        self._register(entries)

    @property
    def trainable_variables(self):
        """The registered arrays, in order (Keras's var_list)."""
        return list(self._arrays)

    @property
    def variable_names(self):
        return list(self._names)

    def _index_of(self, v):
        i = self._index_by_id.get(id(v))
        if i is not None and self._arrays[i] is v:
            return i
        if isinstance(v, np.ndarray):
            i = self._index_by_ptr.get(v.__array_interface__["data"][0])
            if i is not None and v.shape == self._shapes[i] and v.dtype == self._dtypes[i]:
                return i
        raise errors.invalid("Unknown variable: %s of shape %s. This optimizer can only be called "
                             "for the variables it was originally built with."
                             % (type(v).__name__, getattr(v, "shape", "?")))

    # ------------------------------------------------------------ apply

    def _grad_pointer(self, g, i):
        if g is None:
            return None
        if not isinstance(g, np.ndarray):
            raise errors.invalid("gradient %d (%s) is a %s, not a numpy array or None"
                                 % (i, self._names[i], type(g).__name__))
        if g.dtype != self._dtypes[i] or g.shape != self._shapes[i]:
            raise errors.invalid("gradient %d (%s) has shape %s and dtype %s; the variable has "
                                 "shape %s and dtype %s" % (i, self._names[i], g.shape, g.dtype,
                                                            self._shapes[i], self._dtypes[i]),
                                 errors.EMISMATCH)
        if not (g.flags.c_contiguous and g.flags.aligned):
            raise errors.invalid("gradient %d (%s) is not a C-contiguous, aligned array (pass "
                                 "np.ascontiguousarray(g))" % (i, self._names[i]))
        return g.ctypes.data

    def _run_apply(self):
        cb = self._callback
        if cb is None:
            _capi.check(self._c_apply())
            return
        cb.prepare()
        try:
            status = self._c_apply()
        finally:
            cb.done()
        _capi.check(status)

    def apply(self, grads, variables=None):
        """Keras's ``apply(grads, trainable_variables=None)``: one step.

        grads: one numpy array (same shape and dtype as its variable) or None
        (no gradient this step) per variable. Without ``variables`` the list
        matches the built variables one to one; with them (any subset, any
        order) the optimizer is built on them first if needed, and the
        variables not listed get no gradient.
        """
        grads = list(grads)
        if not grads:
            return
        if variables is None:
            if not self.built:
                raise errors.invalid(
                    "When passing `grads` without `variables`, the optimizer must already be "
                    "built on a list of variables. Call `optimizer.build(trainable_variables)` "
                    "first.")
            if len(grads) != len(self._names):
                raise errors.invalid(
                    "When passing `grads` as a list of gradient tensors, the gradients must "
                    "match `optimizer.variables` one-to-one. Received a list of %d gradients, "
                    "but the optimizer is tracking %d trainable variables."
                    % (len(grads), len(self._names)), errors.EMISMATCH)
            values = [self._grad_pointer(g, i) for i, g in enumerate(grads)]
            ptrs = self._grads
            for i, p in enumerate(values):
                ptrs[i] = p
        else:
            variables = list(variables)
            if len(variables) != len(grads):
                raise errors.invalid("apply: %d gradients for %d variables"
                                     % (len(grads), len(variables)), errors.EMISMATCH)
            if not self.built:
                self.build(variables)
            index = [self._index_of(v) for v in variables]
            if len(set(index)) != len(index):
                raise errors.invalid("apply: a variable is listed twice", errors.EMISMATCH)
            values = [self._grad_pointer(g, i) for g, i in zip(grads, index)]
            ptrs = self._grads
            for i in range(len(self._names)):
                ptrs[i] = None
            for i, p in zip(index, values):
                ptrs[i] = p
        self._run_apply()

    def apply_gradients(self, grads_and_vars):
        """Keras's ``apply_gradients(zip(grads, variables))``; returns the
        iteration count."""
        pairs = list(grads_and_vars)
        if pairs:
            grads, variables = zip(*pairs)
            self.apply(list(grads), list(variables))
        return self.iterations

    # ------------------------------------------------------------ state

    @property
    def iterations(self):
        """The number of steps applied so far (Keras's ``optimizer.iterations``)."""
        return int(lib.adadelta_iterations(self._core))

    @property
    def learning_rate(self):
        """The learning rate the next step uses (a schedule evaluated at the
        current iteration, a callable called), as Keras's property. Settable:
        a float, a schedule (``adadelta.schedules``) or a callable without
        arguments, from the next step on."""
        value = lib.adadelta_current_learning_rate(self._core)
        if self._callback is not None:
            self._callback.done()
        return np.float32(value)

    @learning_rate.setter
    def learning_rate(self, value):
        self._set_learning_rate(value)

    def _set_learning_rate(self, value):
        value = _normalize_learning_rate(value)
        if callable(value) and not isinstance(value, schedules.LearningRateSchedule):
            cb = _LRCallback(value)
            _capi.check(self._c_set_learning_rate_callback(cb.c_function))
            self._callback = cb
        else:
            _capi.check(self._c_set_learning_rate_json(
                _dumps(_learning_rate_json(value)).encode()))
            self._callback = None
        self._lr = value

    @property
    def threads(self):
        """OpenMP threads of a step (default: OpenMP's maximum). Results do
        not depend on it."""
        return int(lib.adadelta_threads(self._core))

    @threads.setter
    def threads(self, n):
        _capi.check(self._c_set_threads(int(n)))
        self._threads = int(n)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras's ``exclude_from_weight_decay``: no weight decay for the
        variables in ``var_list`` and for those whose name (after its last
        '/') matches one of the regular expressions in ``var_names``.
        Allowed until the first step (before build, it is applied at build)."""
        var_list = list(var_list or [])
        var_names = [str(n) for n in (var_names or [])]
        if not self.built:
            self._pending_exclude.append((var_list, var_names))
            return
        idx = [self._index_of(v) for v in var_list]
        _capi.check(self._c_exclude(*_exclude_args(idx, var_names)))

    def _exclude_indices(self, idx, var_names):
        _capi.check(self._c_exclude(*_exclude_args(list(idx), list(var_names))))

    def _save_local(self, path):
        """save() into a file of this process (adadelta.mpi: every rank)."""
        self.save(path)

    def _slots_readable(self):
        return self.built

    def uses_weight_decay(self, variable):
        """False if weight decay is not applied to the variable (an array or
        its index)."""
        i = variable if isinstance(variable, int) else self._index_of(variable)
        return bool(_capi.check(lib.adadelta_uses_weight_decay(self._core, i)))

    def finalize_variable_values(self):
        """Keras's ``finalize_variable_values()``: with use_ema, copies the
        moving averages into the variables; otherwise does nothing."""
        _capi.check(self._c_finalize())

    def get_config(self):
        """Keras's ``get_config()`` dict (a schedule serialized, a callable
        learning rate as None, as the C library writes it)."""
        cfg = _capi.take_string(lib.adadelta_config_to_json(lib.adadelta_get_config(self._core)))
        return json.loads(cfg)

    def save(self, path):
        """Saves variables, slots and counters to one safetensors file,
        atomically (a temporary file, fsync, rename) with a checksum."""
        _capi.check(self._c_save(os.fsencode(path)))

    def load(self, path):
        """Loads a file written by save() for the same variables (names,
        shapes, dtypes, order) and a compatible config: the variables' values
        and the optimizer state. On failure nothing changes."""
        _capi.check(self._c_load(os.fsencode(path)))

    def slot(self, variable, kind="accumulated_grad"):
        """A live numpy view (no copy, writeable) of one slot of a variable
        (the array, its index or its name): "accumulated_grad",
        "accumulated_delta_var", "average" (use_ema) or "gradient_accumulator"
        (gradient_accumulation_steps)."""
        if kind not in _SLOT_KINDS:
            raise errors.invalid("slot kind %r is not one of %s" % (kind, ", ".join(_SLOT_KINDS)))
        if isinstance(variable, str):
            if variable not in self._names:
                raise errors.error_for(errors.ENOTFOUND, "no variable named %r" % variable)
            i = self._names.index(variable)
        elif isinstance(variable, numbers.Integral):
            i = int(variable)
            if not 0 <= i < len(self._names):
                raise errors.error_for(errors.ENOTFOUND, "no variable %d" % i)
        else:
            i = self._index_of(variable)
        ptr = lib.adadelta_slot(self._core, i, _SLOT_KINDS[kind])
        return live_array(ptr, self._shapes[i], _ENUM_TO_NP[self._dtype_code(i)], self)

    def _dtype_code(self, i):
        return lib.adadelta_variable_dtype(self._core, i)

    @property
    def variables(self):
        """The optimizer's own state as live numpy views, in Keras's order of
        creation: the EMA averages (use_ema), the gradient accumulators
        (gradient_accumulation_steps), accumulated_grad, accumulated_delta_var.
        (The iteration count is ``iterations``.)"""
        if not self.built:
            return []
        kinds = []
        c = self.get_config()
        inner = c.get("inner_optimizer", {}).get("config", c)
        if inner.get("use_ema"):
            kinds.append("average")
        if inner.get("gradient_accumulation_steps"):
            kinds.append("gradient_accumulator")
        kinds += ["accumulated_grad", "accumulated_delta_var"]
        return [self.slot(i, k) for k in kinds for i in range(len(self._names))]

    def __repr__(self):
        return "<%s %r: %d variables, %d iterations>" % (
            type(self).__name__, self.get_config().get("name"), len(self._names), self.iterations)


class Adadelta(_Optimizer):
    """keras.optimizers.Adadelta: the same arguments, defaults and results
    (float32, bit-exact with the C library's conformance tests).

    >>> import numpy as np, adadelta
    >>> w = np.ones(3, np.float32)
    >>> opt = adadelta.Adadelta(learning_rate=1.0)
    >>> opt.build([w], names=["dense/kernel"])
    >>> opt.apply([np.full(3, 0.5, np.float32)])   # w is updated in place
    >>> opt.iterations
    1

    learning_rate: a float, a schedule from ``adadelta.schedules`` (or its
    serialized dict) or a callable without arguments returning the rate.
    Unknown keyword arguments raise ValueError, as in Keras; invalid values
    raise ValueError (InvalidArgumentError) with the C library's message.
    """

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name="adadelta", **kwargs):
        if kwargs:
            raise errors.invalid("Argument(s) not recognized: %r" % (kwargs,))
        self._config = {
            "name": name, "weight_decay": weight_decay, "clipnorm": clipnorm,
            "global_clipnorm": global_clipnorm, "clipvalue": clipvalue,
            "use_ema": bool(use_ema) if isinstance(use_ema, (bool, np.bool_)) or use_ema in (0, 1)
            else use_ema,
            "ema_momentum": ema_momentum, "ema_overwrite_frequency": ema_overwrite_frequency,
            "loss_scale_factor": loss_scale_factor,
            "gradient_accumulation_steps": gradient_accumulation_steps,
            "rho": rho, "epsilon": epsilon,
        }
        self._config = {k: _plain(v) for k, v in self._config.items()}
        self._init_common(learning_rate)

    def _c_config(self):
        cfg = dict(self._config)
        cfg["learning_rate"] = _learning_rate_json(self._lr)
        return cfg

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The optimizer from ``get_config()``'s dict (a schedule given as its
        serialized dict)."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        if config.get("learning_rate", 0.0) is None:
            config.pop("learning_rate")  # a callable, not serializable
        return cls(**config)

    @property
    def name(self):
        return self._config["name"]


class LossScaleOptimizer(_Optimizer):
    """keras.optimizers.LossScaleOptimizer around an Adadelta: gradients are
    divided by the dynamic scale, a step with a non-finite gradient is
    skipped and halves the scale, ``dynamic_growth_steps`` finite steps in a
    row double it. Multiply the loss by ``scale_loss`` before differentiating.

    The inner optimizer only gives its config (and learning rate); build
    and apply this object.
    """

    def __init__(self, inner_optimizer, initial_scale=2.0 ** 15, dynamic_growth_steps=2000,
                 name="loss_scale_optimizer", **kwargs):
        if kwargs:
            raise errors.invalid("Argument(s) not recognized: %r" % (kwargs,))
        if not isinstance(inner_optimizer, Adadelta):
            raise errors.invalid("LossScaleOptimizer: inner_optimizer must be an "
                                 "adadelta.Adadelta, got %r" % (inner_optimizer,))
        if inner_optimizer.built:
            raise errors.invalid("LossScaleOptimizer: the inner optimizer is already built; "
                                 "wrap an optimizer before building it")
        self.inner_optimizer = inner_optimizer
        self.initial_scale = _plain(initial_scale)
        self.dynamic_growth_steps = _plain(dynamic_growth_steps)
        self._name = name
        self._init_common(inner_optimizer._lr)

    def _c_config(self):
        inner = self.inner_optimizer._c_config()
        inner["learning_rate"] = _learning_rate_json(self._lr)
        return {"name": self._name,
                "inner_optimizer": {"module": "keras.optimizers", "class_name": "Adadelta",
                                    "config": inner, "registered_name": None},
                "initial_scale": self.initial_scale,
                "dynamic_growth_steps": self.dynamic_growth_steps}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = config.pop("inner_optimizer")
        if isinstance(inner, dict):
            inner = Adadelta.from_config(inner.get("config", inner) if "class_name" in inner
                                         else inner)
        return cls(inner, **config)

    @property
    def name(self):
        return self._name

    @property
    def dynamic_scale(self):
        """The current loss scale."""
        return np.float32(lib.adadelta_dynamic_scale(self._core))

    @property
    def step_counter(self):
        """Finite steps since the scale last changed."""
        return int(lib.adadelta_step_counter(self._core))

    def scale_loss(self, loss):
        """``loss * dynamic_scale`` (differentiate this)."""
        return loss * self.dynamic_scale


def from_config(config):
    """An Adadelta, or a LossScaleOptimizer when the config has an
    ``inner_optimizer`` (also Keras's {"class_name": ..., "config": ...}
    form)."""
    if "class_name" in config and "config" in config:
        config = config["config"]
    if "inner_optimizer" in config:
        return LossScaleOptimizer.from_config(config)
    return Adadelta.from_config(config)
