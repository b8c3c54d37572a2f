"""Run-time errors, named as in ``tf.errors``. Each names the op it came from where there is one."""


class OpError(Exception):
    def __init__(self, message, op=None):
        super().__init__(message)
        self.message = message
        self.op = op


class InvalidArgumentError(OpError):
    """A value given to an op (a feed, or data met by a kernel) is not valid for it."""


class FailedPreconditionError(OpError):
    """The state is not ready for the op, e.g. reading an uninitialized Variable."""


class InternalError(OpError):
    """A kernel failed for a reason other than its arguments."""


class ResourceExhaustedError(OpError):
    """Out of memory in a kernel."""


def op_error_from(exc: BaseException, op, input_shapes) -> OpError:
    """Wrap an exception raised by a kernel: name the op, its type, input shapes and creation line."""
    from .shapes import fmt

    if isinstance(exc, OpError):
        return exc
    shapes = ", ".join(fmt(s) if s is not None else "?" for s in input_shapes) or "none"
    msg = f"{type(exc).__name__} in {op.describe()} with input shapes ({shapes}): {exc}"
    if isinstance(exc, MemoryError):
        cls = ResourceExhaustedError
    elif isinstance(exc, (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError,
                          FloatingPointError, ArithmeticError)):
        cls = InvalidArgumentError
    else:
        cls = InternalError
    return cls(msg, op)
