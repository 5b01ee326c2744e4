"""ctypes declarations of libadadelta (and, on demand, libadadelta_mpi).

The shared library is found, in this order:

1. ``$ADADELTA_LIBDIR`` (a folder holding ``libadadelta.so``; ``make check``
   sets it to the build tree), ``$ADADELTA_MPI_LIBDIR`` likewise for the MPI
   layer;
2. the libdir recorded by ``make install`` (the generated ``_paths.py``);
3. the build tree around a source checkout (``../../lib/.libs``);
4. ``ctypes.util.find_library`` (the dynamic linker's search path).

ctypes was chosen over cffi because it needs neither a compiler nor the C
headers at install time, ships with Python and calls a C function in about a
microsecond, which is small against a step; the data itself is never copied
(arrays are passed by their data pointers).
"""

import ctypes
import ctypes.util
import glob
import os

from . import errors

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_int64 = ctypes.c_int64
c_float = ctypes.c_float
c_double = ctypes.c_double

#: float (*)(void *user_data): a learning-rate callback.
LR_CALLBACK = ctypes.CFUNCTYPE(c_float, c_void_p)

# adadelta_dtype
F32, F64, F16, BF16 = 0, 1, 2, 3
# adadelta_slot_kind
SLOT_ACCUMULATED_GRAD, SLOT_ACCUMULATED_DELTA_VAR, SLOT_EMA, SLOT_GRADIENT_ACCUMULATOR = 0, 1, 2, 3
MAX_DIMS = 8
MAX_PIECES = 64


def _libdirs(env):
    dirs = []
    if os.environ.get(env):
        dirs.append(os.environ[env])
    try:
        from . import _paths  # written by make install

        dirs.append(_paths.LIBDIR)
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(os.path.dirname(here))
    dirs += [os.path.join(top, "lib", ".libs"), os.path.join(top, "mpi", ".libs")]
    return dirs


def _find(stem, env):
    """Path (or name) of lib<stem>.so to load."""
    for d in _libdirs(env):
        for name in ["lib%s.so" % stem] + sorted(glob.glob(os.path.join(d, "lib%s.so.[0-9]*" % stem))):
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
    found = ctypes.util.find_library(stem)
    if found:
        return found
    raise ImportError(
        "adadelta: cannot find lib%s.so (looked in %s and the linker's path); "
        "set %s to the folder that holds it" % (stem, ", ".join(_libdirs(env)) or "-", env))


def _declare(lib, table):
    for name, restype, argtypes in table:
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes


_CORE = [
    ("adadelta_version_string", c_char_p, []),
    ("adadelta_status_name", c_char_p, [c_int]),
    ("adadelta_strerror", c_char_p, [c_int]),
    ("adadelta_last_error", c_char_p, []),
    ("adadelta_kernel", c_char_p, []),
    ("adadelta_create_from_json", c_int, [c_char_p, ctypes.POINTER(c_void_p)]),
    ("adadelta_destroy", None, [c_void_p]),
    ("adadelta_get_config", c_void_p, [c_void_p]),
    ("adadelta_config_to_json", c_void_p, [c_void_p]),
    ("adadelta_set_learning_rate_json", c_int, [c_void_p, c_char_p]),
    ("adadelta_set_learning_rate_callback", c_int, [c_void_p, LR_CALLBACK, c_void_p]),
    ("adadelta_add_variable", c_int,
     [c_void_p, c_char_p, c_int, c_void_p, c_int, ctypes.POINTER(c_int64)]),
    ("adadelta_num_variables", c_int, [c_void_p]),
    ("adadelta_find_variable", c_int, [c_void_p, c_char_p]),
    ("adadelta_variable_name", c_char_p, [c_void_p, c_int]),
    ("adadelta_variable_size", c_int64, [c_void_p, c_int]),
    ("adadelta_variable_data", c_void_p, [c_void_p, c_int]),
    ("adadelta_variable_dtype", c_int, [c_void_p, c_int]),
    ("adadelta_build", c_int, [c_void_p]),
    ("adadelta_exclude_from_weight_decay", c_int,
     [c_void_p, ctypes.POINTER(c_int), c_int, ctypes.POINTER(c_char_p), c_int]),
    ("adadelta_uses_weight_decay", c_int, [c_void_p, c_int]),
    # grads: the address of a void *[n] array (passed as an integer)
    ("adadelta_apply", c_int, [c_void_p, c_void_p]),
    ("adadelta_finalize_variable_values", c_int, [c_void_p]),
    ("adadelta_set_threads", c_int, [c_void_p, c_int]),
    ("adadelta_threads", c_int, [c_void_p]),
    ("adadelta_iterations", c_int64, [c_void_p]),
    ("adadelta_current_learning_rate", c_float, [c_void_p]),
    ("adadelta_slot", c_void_p, [c_void_p, c_int, c_int]),
    ("adadelta_dynamic_scale", c_float, [c_void_p]),
    ("adadelta_step_counter", c_int64, [c_void_p]),
    ("adadelta_save", c_int, [c_void_p, c_char_p]),
    ("adadelta_load", c_int, [c_void_p, c_char_p]),
    # schedules (an opaque adadelta_learning_rate buffer)
    ("adadelta_lr_exponential_decay", None, [c_void_p, c_double, c_double, c_double, c_int]),
    ("adadelta_lr_inverse_time_decay", None, [c_void_p, c_double, c_double, c_double, c_int]),
    ("adadelta_lr_polynomial_decay", None,
     [c_void_p, c_double, c_double, c_double, c_double, c_int]),
    ("adadelta_lr_piecewise_constant_decay", c_int,
     [c_void_p, c_int, ctypes.POINTER(c_double), ctypes.POINTER(c_double)]),
    ("adadelta_lr_cosine_decay", None, [c_void_p, c_double, c_double, c_double, c_double, c_double]),
    ("adadelta_lr_cosine_decay_restarts", None,
     [c_void_p, c_double, c_double, c_double, c_double, c_double]),
    ("adadelta_lr_evaluate", c_float, [c_void_p, c_int64]),
]

_MPI = [
    ("adadelta_mpi_wrap_fortran", c_int, [c_int, c_void_p, c_int, ctypes.POINTER(c_void_p)]),
    ("adadelta_mpi_destroy", None, [c_void_p]),
    ("adadelta_mpi_set_learning_rate_json", c_int, [c_void_p, c_char_p]),
    ("adadelta_mpi_set_learning_rate_callback", c_int, [c_void_p, LR_CALLBACK, c_void_p]),
    ("adadelta_mpi_exclude_from_weight_decay", c_int,
     [c_void_p, ctypes.POINTER(c_int), c_int, ctypes.POINTER(c_char_p), c_int]),
    ("adadelta_mpi_check_agreement", c_int, [c_void_p]),
    ("adadelta_mpi_apply", c_int, [c_void_p, c_void_p]),
    ("adadelta_mpi_finalize_variable_values", c_int, [c_void_p]),
    ("adadelta_mpi_begin_step", c_int, [c_void_p]),
    ("adadelta_mpi_grad_ready", c_int, [c_void_p, c_int, c_void_p]),
    ("adadelta_mpi_end_step", c_int, [c_void_p]),
    ("adadelta_mpi_set_bucket_bytes", c_int, [c_void_p, c_int64]),
    ("adadelta_mpi_set_timeout", c_int, [c_void_p, c_double]),
    ("adadelta_mpi_set_compression", c_int, [c_void_p, c_int]),
    ("adadelta_mpi_engine", c_char_p, [c_void_p]),
    ("adadelta_mpi_save", c_int, [c_void_p, c_char_p]),
    ("adadelta_mpi_load", c_int, [c_void_p, c_char_p]),
    ("adadelta_mpi_last_error", c_char_p, []),
    ("adadelta_mpi_core", c_void_p, [c_void_p]),
    ("adadelta_mpi_get_mode", c_int, [c_void_p]),
    ("adadelta_mpi_state_bytes", ctypes.c_size_t, [c_void_p]),
    ("adadelta_mpi_set_threads", c_int, [c_void_p, c_int]),
    ("adadelta_mpi_broadcast_variables", c_int, [c_void_p, c_int]),
    ("adadelta_mpi_set_initial_check", None, [c_void_p, c_int]),
]

LIB_PATH = _find("adadelta", "ADADELTA_LIBDIR")
lib = ctypes.CDLL(LIB_PATH)
_declare(lib, _CORE)

_libc = ctypes.CDLL(None)
_libc.free.restype = None
_libc.free.argtypes = [c_void_p]

_mpi_lib = None


def mpi_lib():
    """libadadelta_mpi, loaded the first time it is needed (after mpi4py
    initialised MPI; RTLD_GLOBAL so Open MPI's plugins see libmpi)."""
    global _mpi_lib
    if _mpi_lib is None:
        path = _find("adadelta_mpi", "ADADELTA_MPI_LIBDIR")
        m = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        _declare(m, _MPI)
        _mpi_lib = m
    return _mpi_lib


def last_error():
    return (lib.adadelta_last_error() or b"").decode("utf-8", "replace")


def check(status):
    """Raises the exception of a negative status; returns it otherwise."""
    if status < 0:
        msg = last_error() or lib.adadelta_strerror(status).decode()
        raise errors.error_for(status, msg)
    return status


def take_string(ptr):
    """A malloc'ed C string as str; frees it."""
    if not ptr:
        raise errors.error_for(errors.ENOMEM, last_error() or "out of memory")
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        _libc.free(ptr)


def version():
    """The C library's version string, e.g. "0.1.0"."""
    return lib.adadelta_version_string().decode()


def kernel():
    """The instruction set of the step's loops: "avx512fp16", "avx512f", "avx2" or
    "default"."""
    return lib.adadelta_kernel().decode()
