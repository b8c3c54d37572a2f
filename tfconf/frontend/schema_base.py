"""The base of every config model, small shared field types, and helpers for located validator errors.

Every section of a config (``solver:``, each layer, ``data:``...) is a :class:`StrictModel`:

* unknown keys are rejected (``extra="forbid"``) and reported with a did-you-mean from the field names
  (plus the model's optional ``__synonyms__``, e.g. ``{"lr": "base_lr"}``);
* values are checked strictly: YAML already typed them, so ``"5"`` is not an integer, ``5.0`` is not an
  integer, ``true`` is not a number, and ``.inf``/``.nan`` are not accepted as floats;
* assignments are validated too (``validate_assignment``), so code that edits a model cannot make it
  invalid.

A validator that finds a problem with a particular field raises :func:`located` (one problem) or
:func:`located_errors` (several): :func:`tfconf.frontend.errors.from_pydantic` then points each message at
that field's line instead of the model's::

    @model_validator(mode="after")
    def _check(self):
        if self.lr_policy.type == "step" and self.stepsize is None:
            raise located(("lr_policy",), "lr_policy 'step' needs stepsize")
        return self

:func:`validate_section` validates one section of a loaded config and raises a located ``ConfigError``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Sequence, TypeVar

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .errors import MISSING, from_pydantic
from .model_lookup import MODELS_BY_NAME

__all__ = [
    "FileName", "FilePrefix", "FiniteFloat", "IntPair", "MAX_INT", "Name", "NonNegFloat", "NonNegInt", "NonNegIntPair", "PositiveFloat",
    "PositiveInt", "PositiveIntPair", "Probability", "StrictModel", "located", "located_errors",
    "validate_section",
]

#: the largest count a config may give (a size, an iteration, a batch): shapes are int32 in places
MAX_INT = 2**31 - 1


class StrictModel(BaseModel):
    """Base of all config models: unknown keys rejected, strict types, finite floats, validated assignment."""

    model_config = ConfigDict(
        extra="forbid", strict=True, validate_assignment=True, allow_inf_nan=False,
        validate_default=False, populate_by_name=True,
    )

    __synonyms__: ClassVar[dict[str, str]] = {}
    """Common wrong names for fields (``{"lr": "base_lr"}``), used for did-you-mean on unknown keys."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # by the title pydantic's errors carry: the class name unless the model declares one
        title = cls.__dict__.get("model_config", {}).get("title") or cls.__name__
        MODELS_BY_NAME.setdefault(title, []).append(cls)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_ints(cls, value: Any) -> Any:
        """No integer of a config (a size, a count, an entry of a shape) beyond ±MAX_INT: checked at
        validation, before anything is built with it."""
        _check_int_bound(value)
        return value


def _check_int_bound(value: Any) -> None:
    if type(value) is int:
        if abs(value) > MAX_INT:
            raise PydanticCustomError("int_bound", "is larger than any size tfconf can build ({limit})",
                                      {"limit": f"{MAX_INT:,}"})
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_int_bound(v)


# ----------------------------------------------------------------------------------------------------
# shared field types

PositiveInt = Annotated[int, Field(gt=0, le=MAX_INT)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_INT)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1)]
Name = Annotated[str, Field(min_length=1)]


def _file_name(value: Any) -> Any:
    """A name that becomes a file or folder name (a net, a snapshot prefix): one plain path
    component, so that no config can make tfconf write outside the run folder."""
    if not isinstance(value, str):
        return value  # the str type check reports it
    bad = None
    if not value:
        bad = "is empty"
    elif value in (".", ".."):
        bad = f"is {value!r}"
    elif "/" in value or "\\" in value:
        bad = "contains a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        bad = "contains a control character"
    elif len(value.encode("utf-8")) > 200:
        bad = f"is {len(value.encode('utf-8'))} bytes long (at most 200)"
    elif value.startswith("-"):
        bad = "starts with '-'"
    if bad:
        raise PydanticCustomError("file_name", "becomes a file name, so it must be one plain name (letters, "
                                  "digits, '_', '-', '.'; no '/'), but it {bad}", {"bad": bad})
    return value


#: a name that becomes a file name: checked when the config validates (see :func:`_file_name`)
FileName = Annotated[str, BeforeValidator(_file_name)]


def _last_component(value: Any) -> Any:
    if isinstance(value, str) and ("/" in value or "\\" in value):
        value = value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return _file_name(value)


#: Caffe's ``snapshot_prefix`` (``examples/mnist/lenet``): a path in Caffe, in tfconf only its last
#: component names the files inside the run folder's snapshots/ (so it can never point elsewhere)
FilePrefix = Annotated[str, BeforeValidator(_last_component)]


def _int_pair(minimum: int | None) -> Any:
    """An int or an ``[h, w]`` pair of ints, normalised to a ``(h, w)`` tuple (Caffe's kernel_size/kernel_h/w)."""
    bound = "" if minimum is None else (" > 0" if minimum == 1 else f" >= {minimum}")
    message = f"must be an integer{bound} or a [h, w] pair of such integers"

    def to_pair(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value, value)
        elif (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            value = tuple(value)
        else:
            raise PydanticCustomError("tfconf_int_pair", message)
        if minimum is not None and min(value) < minimum:
            raise PydanticCustomError("tfconf_int_pair", message)
        return value

    item: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        item["minimum"] = minimum
    schema = {"anyOf": [dict(item), {"type": "array", "items": dict(item), "minItems": 2, "maxItems": 2}]}
    return Annotated[tuple[int, int], BeforeValidator(to_pair), WithJsonSchema(schema)]


IntPair = _int_pair(None)
"""An int or ``[h, w]``; validated to a ``(h, w)`` tuple."""
PositiveIntPair = _int_pair(1)
NonNegIntPair = _int_pair(0)


# ----------------------------------------------------------------------------------------------------
# located validator errors

def located(path: Sequence, message: str, received: Any = MISSING) -> PydanticCustomError:
    """An error for a validator to raise that points at ``path`` (relative to the model being validated).

    ``message`` is a short sentence without a final period (``"must be strictly increasing"``);
    ``received`` is shown as ``Received: ...`` when given.
    """
    ctx: dict[str, Any] = {"tfconf_path": tuple(path)}
    if received is not MISSING:
        ctx["tfconf_received"] = received
    # NOTE: pydantic formats the template with ctx keys ({name}); no ctx key is a word a message would
    # contain in braces, so user text passes through unchanged.
    return PydanticCustomError("tfconf", message, ctx)


def located_errors(title: str, errors: Sequence[PydanticCustomError]) -> ValidationError:
    """Several :func:`located` errors at once, as a ``ValidationError`` a validator may raise."""
    details = [InitErrorDetails(type=err, loc=(), input=None) for err in errors]
    return ValidationError.from_exception_data(title, details)


M = TypeVar("M", bound=BaseModel)


def validate_section(model_cls: type[M], loaded: Any, root_path: Sequence = (), *,
                     default: Any = MISSING) -> M:
    """Validate the value at ``root_path`` of a loaded config with ``model_cls``.

    An absent section validates ``default`` (an empty mapping unless given). Raises a located
    :class:`~tfconf.frontend.errors.ConfigError`.
    """
    root_path = tuple(root_path)
    node: Any = loaded.data
    for part in root_path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = {} if default is MISSING else default
            break
    try:
        return model_cls.model_validate(node)
    except ValidationError as exc:
        raise from_pydantic(exc, loaded, root_path, model=model_cls, data=node) from None
