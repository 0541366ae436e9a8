"""One colour per method label, the same in the static figures and in MLflow's UI.

MLflow 3's UI colours a group of runs by a hash of the group's id (`tag.<key>.<value>`) into its
own palette, ignoring the runs' `mlflow.runColor`; with the grouping tag `lth.label`, imp and
random came out one grey, imp+reinit and omp one red. So the sweep picks the tag its lineages are
grouped by (`series_key`): `lth.label` where that gives every label a colour of its own, else the
first of `lth.series`, `lth.series.2`, ... that does (each lineage run carries it, its value the
label), and the figures use those same colours (`method_colors`).
"""
from __future__ import annotations

from collections.abc import Iterable

#: MLflow's UI palette (mlflow/server/js: its run colours), in its order
MLFLOW_PALETTE = (
    "#a6630c", "#c83243", "#b45091", "#8a63bf", "#434a93", "#137dae", "#04867d", "#308613", "#facb66", "#1f272d",
    "#445461", "#5f7281", "#8396a5", "#93320b", "#be501e", "#de7921", "#f2be88", "#115026", "#277c43", "#3ba65e",
    "#8ddda8", "#9e102c", "#c82d4c", "#e65b77", "#f792a6", "#0e538b", "#2272b4", "#4299e0", "#8acaff",
)
LABEL_KEY = "lth.label"  # trainables.record.LABEL
SERIES_KEY = "lth.series"
MIN_DISTANCE = 90.0  #: between two labels' colours (RGB, 0-255 each): below it, shades people confuse
MAX_KEYS = 200


def group_color(value: str, key: str = LABEL_KEY) -> str:
    """The colour MLflow's UI gives the group of runs whose tag `key` is `value` (its stable hash
    of the group id `tag.<key>.<value>`), unless a browser was told another one."""
    first = second = 0
    for char in f"tag.{key}.{value}":
        first = (first + ord(char)) % 255
        second = (second + first) % 255
    return MLFLOW_PALETTE[(first | second << 8) % len(MLFLOW_PALETTE)]


def _distance(a: str, b: str) -> float:
    rgb = lambda color: [int(color[i : i + 2], 16) for i in (1, 3, 5)]  # noqa: E731
    return sum((x - y) ** 2 for x, y in zip(rgb(a), rgb(b))) ** 0.5


def distinct(colors: Iterable[str]) -> bool:
    colors = list(colors)
    return all(_distance(a, b) >= MIN_DISTANCE for i, a in enumerate(colors) for b in colors[i + 1 :])


def series_key(labels: Iterable[str]) -> str:
    """The tag to group a sweep's lineages by: the first whose colours tell every label apart
    (more labels than the palette holds apart: the one whose closest pair is farthest)."""
    labels = sorted(set(labels))
    candidates = [LABEL_KEY, SERIES_KEY, *(f"{SERIES_KEY}.{n}" for n in range(2, MAX_KEYS))]
    best, best_gap = LABEL_KEY, -1.0
    for key in candidates:
        colors = [group_color(label, key) for label in labels]
        if distinct(colors):
            return key
        gap = min((_distance(a, b) for i, a in enumerate(colors) for b in colors[i + 1 :]), default=0.0)
        if gap > best_gap:
            best, best_gap = key, gap
    return best


def method_colors(labels: Iterable[str]) -> dict[str, str]:
    """Label -> its colour: MLflow's colour of its group under the sweep's `series_key`."""
    labels = sorted(set(labels))
    key = series_key(labels)
    return {label: group_color(label, key) for label in labels}
