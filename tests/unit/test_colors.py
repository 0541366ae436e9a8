"""Method colours: the labels of a sweep get colours people tell apart in MLflow's UI, which
colours a group of runs by a hash of its tag, and the figures use the same ones."""
from __future__ import annotations

from lth_sweep.analysis.colors import LABEL_KEY, MIN_DISTANCE, _distance, group_color, method_colors, series_key

QUICKSTART = ["imp", "imp@125", "imp+reinit", "omp", "random", "snip"]


def test_mlflow_s_own_grouping_tag_colours_the_quickstart_s_methods_alike():
    """The collisions seen in the UI: imp and random one grey, imp+reinit and omp one red."""
    assert group_color("imp", LABEL_KEY) == group_color("random", LABEL_KEY)
    assert group_color("imp+reinit", LABEL_KEY) == group_color("omp", LABEL_KEY)


def test_six_methods_get_six_colours_apart_and_the_figures_use_them():
    key = series_key(QUICKSTART)
    colors = method_colors(QUICKSTART)
    assert colors == {label: group_color(label, key) for label in QUICKSTART}
    pairs = [(a, b) for i, a in enumerate(QUICKSTART) for b in QUICKSTART[i + 1:]]
    assert min(_distance(colors[a], colors[b]) for a, b in pairs) >= MIN_DISTANCE


def test_a_sweep_whose_labels_already_differ_keeps_the_label_tag_and_the_choice_is_stable():
    assert series_key(["imp", "random"]) == series_key(["random", "imp", "imp"])
    assert series_key(QUICKSTART) == series_key(list(reversed(QUICKSTART)))
