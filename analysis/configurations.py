"""Trunk configurations: everything that defines a trunk but its seed. Verdicts compare one
configuration at a time, and seeds are the only replication unit: pooling conv2, conv4 and conv6
as if they were seeds turns the spread between architectures into "noise between seeds".

A lineage's configuration is read from its run's `trunk.*` params (the flattened TrunkSpec) less
`trunk.seed`; its name is what tells it apart from the sweep's other configurations
(`model.name=conv4`), or `<data>/<model>` when the sweep has one.
"""
from __future__ import annotations

import pandas as pd

CONFIG = "config"
SEED_PARAM = "trunk.seed"


def defining_columns(frame: pd.DataFrame) -> list[str]:
    return sorted(c for c in frame.columns if c.startswith("trunk.") and c != SEED_PARAM)


def _short(column: str) -> str:
    return column.removeprefix("trunk.")


def with_configurations(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with a `config` column naming each row's trunk configuration (kept if present)."""
    if CONFIG in frame.columns or frame.empty:
        return frame
    out = frame.copy()
    columns = defining_columns(out)
    if not columns:
        out[CONFIG] = "all"
        return out
    distinct = out[columns].astype(str).drop_duplicates()
    varying = [c for c in columns if distinct[c].nunique() > 1]
    if varying:
        names = out[varying].astype(str).apply(lambda row: " ".join(f"{_short(c)}={row[c]}" for c in varying), axis=1)
    else:
        head = [c for c in ("trunk.data.name", "trunk.model.name") if c in columns]
        names = out[head].astype(str).agg("/".join, axis=1) if head else pd.Series("all", index=out.index)
    out[CONFIG] = names
    return out
