"""adadelta - Keras 3's Adadelta optimizer in C (libadadelta), from Python.

Modules:

* ``adadelta`` (this one): :class:`Adadelta` and :class:`LossScaleOptimizer`
  over numpy arrays updated in place, Keras's API (build, apply,
  apply_gradients, iterations, learning_rate, exclude_from_weight_decay,
  finalize_variable_values, get_config/from_config, save/load);
* ``adadelta.schedules``: Keras's six learning-rate schedules;
* ``adadelta.torch``: :class:`adadelta.torch.Adadelta`, a
  ``torch.optim.Optimizer`` with Keras's semantics (needs PyTorch);
* ``adadelta.mpi``: the data-parallel layer (libadadelta_mpi) over an mpi4py
  communicator, for numpy and torch, with the overlapped step;
* ``adadelta.errors``: the exceptions (:class:`AdadeltaError` carries the C
  library's status; invalid arguments are ValueErrors).

Example::

    import numpy as np, adadelta
    w = np.zeros((64, 10), np.float32); b = np.zeros(10, np.float32)
    opt = adadelta.Adadelta(learning_rate=1.0, weight_decay=1e-4)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.build([w, b], names=["dense/kernel", "dense/bias"])
    opt.apply([grad_w, grad_b])          # w and b change in place
"""

from . import errors, schedules
from ._capi import LIB_PATH, kernel, version
from .errors import AdadeltaError, InvalidArgumentError
from .optimizer import KERAS_DEFAULTS, Adadelta, LossScaleOptimizer, from_config

__version__ = version()

__all__ = [
    "Adadelta", "LossScaleOptimizer", "AdadeltaError", "InvalidArgumentError", "schedules",
    "errors", "from_config", "kernel", "version", "KERAS_DEFAULTS", "LIB_PATH",
]
