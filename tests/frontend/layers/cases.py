"""Every layer test module's LAYER_CASES in one dict: type → (minimal config, input shapes)."""

import importlib
from pathlib import Path


def _cases():
    out = {}
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        if path.stem == "test_registry":  # the sweep that reads these
            continue
        module = importlib.import_module(f"{__package__}.{path.stem}")
        out.update(getattr(module, "LAYER_CASES", {}))
    return out


CASES = _cases()
