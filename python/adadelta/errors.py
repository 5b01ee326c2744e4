"""Exceptions raised by the adadelta package.

Every failure of the C library becomes an :class:`AdadeltaError` carrying the
library's status (``.status``, a negative ``ADADELTA_E*`` value), its name
(``.status_name``, e.g. ``"ADADELTA_EINVAL"``) and the library's message.
Where Python has a matching built-in exception the raised class derives from
both, so ``except ValueError`` works as it does with Keras:

=====================  ========================================  ====================
status                 meaning                                   class
=====================  ========================================  ====================
ADADELTA_EINVAL        invalid argument or config value          InvalidArgumentError
ADADELTA_EMISMATCH     inputs disagree (names, shapes, dtypes)   InvalidArgumentError
ADADELTA_ENOGRAD       no gradient for any variable              InvalidArgumentError
ADADELTA_ENONFINITE    non-finite gradient (check_finite)        InvalidArgumentError
ADADELTA_ENOTFOUND     no such variable, slot or key             NotFoundError
ADADELTA_ENOMEM        out of memory                             AdadeltaMemoryError
ADADELTA_EIO           a file could not be read or written       AdadeltaIOError
ADADELTA_EFORMAT       a file is malformed or corrupted          FormatError
ADADELTA_ESTATE        call not allowed in this state            StateError
=====================  ========================================  ====================

Arguments refused by the Python layer itself (a wrong dtype, a
non-contiguous array, mismatched shapes, an unknown keyword) raise
:class:`InvalidArgumentError` with status ``ADADELTA_EINVAL`` too, so one
``except ValueError`` catches every refused input.
"""

OK = 0
EINVAL = -1
ENOMEM = -2
EIO = -3
EFORMAT = -4
EMISMATCH = -5
ENOGRAD = -6
ESTATE = -7
ENONFINITE = -8
ENOTFOUND = -9

STATUS_NAMES = {
    OK: "ADADELTA_OK",
    EINVAL: "ADADELTA_EINVAL",
    ENOMEM: "ADADELTA_ENOMEM",
    EIO: "ADADELTA_EIO",
    EFORMAT: "ADADELTA_EFORMAT",
    EMISMATCH: "ADADELTA_EMISMATCH",
    ENOGRAD: "ADADELTA_ENOGRAD",
    ESTATE: "ADADELTA_ESTATE",
    ENONFINITE: "ADADELTA_ENONFINITE",
    ENOTFOUND: "ADADELTA_ENOTFOUND",
}


class AdadeltaError(RuntimeError):
    """A failure reported by libadadelta (or refused by this package).

    Attributes: ``status`` (int, negative), ``status_name`` (str) and
    ``message`` (the library's text, as ``str(exc)``).
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.status_name = STATUS_NAMES.get(status, "ADADELTA_E%d" % -status)
        self.message = message

    def __str__(self):
        return "%s (%s)" % (self.message, self.status_name)

    def __reduce__(self):
        return (type(self), (self.status, self.message))


class InvalidArgumentError(AdadeltaError, ValueError):
    """An invalid argument: EINVAL, EMISMATCH, ENOGRAD, ENONFINITE."""


class NotFoundError(AdadeltaError, KeyError):
    """ENOTFOUND: no such variable, slot or key."""

    __str__ = AdadeltaError.__str__


class AdadeltaMemoryError(AdadeltaError, MemoryError):
    """ENOMEM."""


class AdadeltaIOError(AdadeltaError, OSError):
    """EIO: a file could not be opened, read or written."""

    def __init__(self, status, message):
        OSError.__init__(self, message)
        self.status = status
        self.status_name = STATUS_NAMES.get(status, "ADADELTA_E%d" % -status)
        self.message = message

    __str__ = AdadeltaError.__str__


class FormatError(AdadeltaError):
    """EFORMAT: a state file is truncated, corrupted or malformed."""


class StateError(AdadeltaError):
    """ESTATE: the call is not allowed now (e.g. a variable added after build)."""


_CLASSES = {
    EINVAL: InvalidArgumentError,
    EMISMATCH: InvalidArgumentError,
    ENOGRAD: InvalidArgumentError,
    ENONFINITE: InvalidArgumentError,
    ENOTFOUND: NotFoundError,
    ENOMEM: AdadeltaMemoryError,
    EIO: AdadeltaIOError,
    EFORMAT: FormatError,
    ESTATE: StateError,
}


def error_for(status, message):
    """The exception object for a library status and message."""
    return _CLASSES.get(status, AdadeltaError)(status, message)


def invalid(message, status=EINVAL):
    """An InvalidArgumentError raised by the Python layer."""
    return error_for(status, message)
