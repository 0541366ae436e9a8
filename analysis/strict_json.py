"""JSON that strict parsers (JavaScript's JSON.parse, jq, Go, ...) accept: Python's `json` writes
NaN and Infinity, which are not JSON. A value that is not a finite number becomes null."""
from __future__ import annotations

import json
import math


def finite(value):
    """`value` with every non-finite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:  # numpy scalars
        return finite(value.item())
    return value


def dumps(value, **kwargs) -> str:
    return json.dumps(finite(value), allow_nan=False, **kwargs)
