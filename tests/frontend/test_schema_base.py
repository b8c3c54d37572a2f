"""StrictModel and the shared field types."""

from __future__ import annotations

from typing import Optional

import pytest
from pydantic import ValidationError

from tfconf.frontend import (
    IntPair, NonNegIntPair, PositiveFloat, PositiveInt, PositiveIntPair, Probability, StrictModel, located,
    located_errors, load_config_string, model_at, model_by_name, validate_section,
)


class Pad(StrictModel):
    kernel_size: PositiveIntPair = 3
    pad: NonNegIntPair = 0
    offset: IntPair = 0
    ratio: Probability = 0.5
    lr: Optional[PositiveFloat] = None
    n: PositiveInt = 1


def test_int_pair_accepts_an_int_or_a_pair():
    p = Pad(kernel_size=5, pad=[1, 2], offset=-1)
    assert (p.kernel_size, p.pad, p.offset) == ((5, 5), (1, 2), (-1, -1))
    assert Pad.model_validate({"kernel_size": [3, 1]}).kernel_size == (3, 1)


@pytest.mark.parametrize("field, value", [
    ("kernel_size", 0), ("kernel_size", [3, 0]), ("kernel_size", [1, 2, 3]), ("kernel_size", True),
    ("kernel_size", "3"), ("pad", -1), ("ratio", 1.5), ("n", 2.0), ("n", "2"), ("n", True), ("lr", float("nan")),
    ("lr", float("inf")),
])
def test_strict_values_are_rejected(field, value):
    with pytest.raises(ValidationError):
        Pad.model_validate({field: value})


def test_ints_are_accepted_as_floats():
    assert Pad.model_validate({"lr": 1}).lr == 1.0


def test_int_pair_json_schema():
    schema = Pad.model_json_schema()["properties"]["kernel_size"]
    assert schema["anyOf"][0] == {"type": "integer", "minimum": 1}
    assert schema["anyOf"][1]["minItems"] == schema["anyOf"][1]["maxItems"] == 2


def test_model_lookup():
    assert model_by_name("Pad") is Pad
    assert model_by_name("NoSuchModel") is None

    class Outer(StrictModel):
        pads: list[Pad] = []
        named: dict[str, Pad] = {}
        maybe: Optional[Pad] = None

    assert model_at(Outer, ("pads", 3)) is Pad
    assert model_at(Outer, ("named", "x")) is Pad
    assert model_at(Outer, ("maybe",)) is Pad
    assert model_at(Outer, ()) is Outer
    assert model_at(Outer, ("nothing",)) is None


def test_located_errors_from_a_validator():
    from pydantic import model_validator

    class Pair(StrictModel):
        low: int = 0
        high: int = 1

        @model_validator(mode="after")
        def _check(self):
            if self.low >= self.high:
                raise located_errors("Pair", [located(("low",), f"must be < high ({self.high})", self.low),
                                              located(("high",), "must be > low")])
            return self

    loaded = load_config_string("pair:\n  high: 2\n  low: 5\n", "p.yaml")
    with pytest.raises(Exception) as info:
        validate_section(Pair, loaded, ("pair",))
    assert info.value.lines == ["p.yaml:2:3: pair.high: must be > low",
                                "p.yaml:3:3: pair.low: must be < high (2). Received: 5"]
