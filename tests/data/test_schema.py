"""The data section's schema: defaults, Caffe names, and short errors at the right place."""

import pytest
from pydantic import ValidationError

from tfconf.data import DataSection, DataSpec


def errors(**section):
    with pytest.raises(ValidationError) as info:
        DataSection(**section)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def test_design_example_parses_with_defaults():
    d = DataSection(
        train={"source": "mnist", "split": "train", "batch_size": 64, "shuffle": True, "scale": 0.00390625},
        test={"source": "mnist", "split": "test", "batch_size": 100, "scale": 0.00390625},
    )
    assert d.train.batch_size == 64 and d.train.shuffle is True and d.train.scale == 0.00390625
    assert d.test.shuffle is None and d.test.crop_size == 0 and d.test.mirror is False
    assert d.for_phase("test") is d.test
    assert DataSection().train is None


def test_config_round_trips():
    spec = DataSpec(source="x.npy", labels="y.npy", mean_value=[1, 2, 3], crop_size=4, mirror=True, seed=3)
    again = DataSpec.model_validate(spec.model_dump(exclude_defaults=True))
    assert again == spec


def test_unknown_key_is_rejected_where_it_is():
    [(loc, msg)] = errors(train={"source": "mnist", "batch_sise": 3})
    assert loc == ("train", "batch_sise") and "Extra inputs" in msg


@pytest.mark.parametrize(
    "spec, loc, text",
    [
        ({"source": "mnist", "batch_size": 0}, ("train", "batch_size"), "greater than or equal to 1"),
        ({"source": "  "}, ("train", "source"), "built-in set"),
        ({"source": "a.npy", "mean_value": []}, ("train", "mean_value"), "non-empty"),
        ({"source": "a.npy", "mean_value": 1, "mean_file": "m.npy"}, ("train",), "not both"),
        ({"source": "mnist", "num_samples": 10}, ("train",), "synthetic"),
        ({"source": "a.csv", "shape": [1, 0]}, ("train", "shape"), "positive"),
        ({"source": "a.npy", "split": "val"}, ("train", "split"), "'train' or 'test'"),
        ({"source": "a.npy", "crop_size": -1}, ("train", "crop_size"), "greater than or equal to 0"),
    ],
)
def test_bad_values_give_short_located_errors(spec, loc, text):
    [(got_loc, msg)] = errors(train=spec)
    assert got_loc == loc and text in msg and len(msg) < 200


def test_test_phase_is_never_shuffled():
    [(loc, msg)] = errors(test={"source": "mnist", "shuffle": True})
    assert loc == ("test",) and "shuffle" in msg
    assert DataSection(test={"source": "mnist", "shuffle": False}).test.shuffle is False


def test_synthetic_parameters_are_accepted_for_synthetic_sets():
    spec = DataSpec(source="spirals", num_samples=30, num_classes=5, noise=0.0)
    assert spec.is_synthetic and spec.is_builtin
    assert not DataSpec(source="blobs", format="npz").is_builtin  # an explicit format means a path
