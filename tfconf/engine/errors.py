"""The engine's side of ``tc.errors``: the TF1 error types (defined in :mod:`tfconf.errors`, the
leaf every package raises from) and the wrapping of a kernel's exception into one of them."""

from tfconf.errors import (  # noqa: F401 - the engine raises them as errors.X
    FailedPreconditionError, InternalError, InvalidArgumentError, OpError, ResourceExhaustedError,
)


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
