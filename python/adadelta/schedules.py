"""Keras's six learning-rate schedules (``keras.optimizers.schedules``).

Each class takes Keras's constructor arguments, ``get_config()`` returns
Keras's config dict and ``from_config()`` reads it back; :func:`serialize`
gives the form Keras stores inside an optimizer's config::

    {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
     "config": {...}, "registered_name": None}

and :func:`deserialize` reads that back. ``schedule(step)`` evaluates the
schedule at a step as a numpy float32, computed by the C library with the
formulas (and float32 roundings) the optimizer itself uses, so it is the
learning rate the optimizer applies at that iteration.

A schedule given as ``learning_rate`` to an optimizer is evaluated inside the
C library at every step (no Python call per step).
"""

import ctypes
import json

import numpy as np

from . import _capi, errors

__all__ = [
    "LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay", "PolynomialDecay",
    "PiecewiseConstantDecay", "CosineDecay", "CosineDecayRestarts", "serialize",
    "deserialize",
]


def _number(name, x):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise errors.invalid("%s must be a number, got %r" % (name, x))
    return x.item() if isinstance(x, np.generic) else x


class LearningRateSchedule:
    """Base class: a schedule maps the iteration count to a learning rate."""

    def __call__(self, step):
        """The learning rate at ``step`` (an int), as a numpy float32."""
        buf = (ctypes.c_double * 512)()  # an adadelta_learning_rate, filled by the helper
        self._fill(buf)
        return np.float32(_capi.lib.adadelta_lr_evaluate(buf, int(step)))

    def _fill(self, buf):
        raise NotImplementedError

    def get_config(self):
        """Keras's config dict (the constructor's arguments)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        """The schedule from ``get_config()``'s dict (or :func:`serialize`'s)."""
        if "class_name" in config and "config" in config:
            return deserialize(config)
        return cls(**config)

    def __repr__(self):
        args = ", ".join("%s=%r" % kv for kv in self.get_config().items())
        return "%s(%s)" % (type(self).__name__, args)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``
    (the exponent floored with ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number("decay_steps", decay_steps)
        self.decay_rate = _number("decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def _fill(self, buf):
        _capi.lib.adadelta_lr_exponential_decay(buf, self.initial_learning_rate,
                                                self.decay_steps, self.decay_rate,
                                                int(self.staircase))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number("decay_steps", decay_steps)
        self.decay_rate = _number("decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def _fill(self, buf):
        _capi.lib.adadelta_lr_inverse_time_decay(buf, self.initial_learning_rate,
                                                 self.decay_steps, self.decay_rate,
                                                 int(self.staircase))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """From ``initial_learning_rate`` to ``end_learning_rate`` over
    ``decay_steps`` along ``(1 - step / decay_steps) ** power``."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001,
                 power=1.0, cycle=False, name="PolynomialDecay"):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number("decay_steps", decay_steps)
        self.end_learning_rate = _number("end_learning_rate", end_learning_rate)
        self.power = _number("power", power)
        self.cycle = bool(cycle)
        self.name = name

    def _fill(self, buf):
        _capi.lib.adadelta_lr_polynomial_decay(buf, self.initial_learning_rate,
                                               self.decay_steps, self.end_learning_rate,
                                               self.power, int(self.cycle))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[i]`` while ``step <= boundaries[i]``; ``values[-1]`` after."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries = [_number("boundaries[]", b) for b in boundaries]
        values = [_number("values[]", v) for v in values]
        if len(values) != len(boundaries) + 1:
            raise errors.invalid(
                "The length of boundaries should be 1 less than the length of values. "
                "Received: boundaries=%r of length %d, and values=%r of length %d."
                % (boundaries, len(boundaries), values, len(values)))
        if len(boundaries) > _capi.MAX_PIECES:
            raise errors.invalid("PiecewiseConstantDecay: at most %d boundaries (got %d)"
                                 % (_capi.MAX_PIECES, len(boundaries)))
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def _fill(self, buf):
        n = len(self.boundaries)
        b = (ctypes.c_double * max(n, 1))(*self.boundaries)
        v = (ctypes.c_double * (n + 1))(*self.values)
        _capi.check(_capi.lib.adadelta_lr_piecewise_constant_decay(buf, n, b, v))

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` (or from ``warmup_target``
    after a linear warm-up of ``warmup_steps``) to ``alpha`` times it."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number("decay_steps", decay_steps)
        self.alpha = _number("alpha", alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else _number("warmup_target",
                                                                         warmup_target)
        self.warmup_steps = _number("warmup_steps", warmup_steps)

    def _fill(self, buf):
        target = float("nan") if self.warmup_target is None else self.warmup_target
        _capi.lib.adadelta_lr_cosine_decay(buf, self.initial_learning_rate, self.decay_steps,
                                           self.alpha, target, self.warmup_steps)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): periods of ``first_decay_steps``
    times ``t_mul`` to the restart number, peaks times ``m_mul``."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.first_decay_steps = _number("first_decay_steps", first_decay_steps)
        self._t_mul = _number("t_mul", t_mul)
        self._m_mul = _number("m_mul", m_mul)
        self.alpha = _number("alpha", alpha)
        self.name = name

    def _fill(self, buf):
        _capi.lib.adadelta_lr_cosine_decay_restarts(buf, self.initial_learning_rate,
                                                    self.first_decay_steps, self._t_mul,
                                                    self._m_mul, self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self._t_mul,
                "m_mul": self._m_mul, "alpha": self.alpha, "name": self.name}


_CLASSES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, PolynomialDecay,
                                    PiecewiseConstantDecay, CosineDecay, CosineDecayRestarts)}


def serialize(schedule):
    """Keras's serialized form of a schedule (as in an optimizer's config)."""
    if not isinstance(schedule, LearningRateSchedule):
        raise errors.invalid("not a learning-rate schedule: %r" % (schedule,))
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config):
    """A schedule from :func:`serialize`'s dict (``module`` and
    ``registered_name`` are optional)."""
    if isinstance(config, str):
        config = json.loads(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise errors.invalid("not a serialized schedule: %r" % (config,))
    cls = _CLASSES.get(config["class_name"])
    if cls is None:
        raise errors.invalid("unknown learning-rate schedule class %r (one of %s)"
                             % (config["class_name"], ", ".join(_CLASSES)))
    return cls(**config.get("config", {}))
