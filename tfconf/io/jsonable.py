"""Values made JSON-safe: numpy scalars and arrays as Python numbers and lists, tuples as lists,
keys as strings (snapshot states, sweep status files)."""

from __future__ import annotations

import numpy as np


def jsonable(obj):
    """``obj`` with numpy values replaced by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):  # integers, floats, bools
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
