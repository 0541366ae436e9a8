"""The sweep's figures on the curves real sweeps produce: a round that pruned every weight, a value
MLflow stored as infinite, a sweep with no finished round. Each is drawn without a warning."""
from __future__ import annotations

import warnings

import matplotlib.image
import pandas as pd
import pytest

import numpy as np

from lth_sweep.analysis.plots import accuracy_vs_sparsity, metrics_vs_sparsity, spread_ticks


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_a_round_with_no_weights_left_is_left_out_of_the_log_axis(tmp_path):
    rows = [
        {"method": "random", "dense_acc": 0.48, "curve": [(0.97, 0.37), (0.9991, 0.12), (1.0, 0.1)]},
        {"method": "imp", "dense_acc": 0.48, "curve": [(0.2, 0.5), (0.36, 0.49)]},
    ]
    path = accuracy_vs_sparsity(rows, tmp_path / "acc.png", "t")
    assert matplotlib.image.imread(path).shape[:2] == (540, 840)


def test_a_sweep_with_no_finished_round_still_gets_its_figure(tmp_path):
    rows = [{"method": "imp", "dense_acc": float("nan"), "curve": []}]
    assert accuracy_vs_sparsity(rows, tmp_path / "acc.png", "t").stat().st_size > 0


def test_the_dimension_figure_skips_infinite_values_and_emptied_networks(tmp_path):
    frame = pd.DataFrame({
        "label": ["random"] * 3 + ["imp"] * 3,
        "seed": [0, 0, 0, 0, 0, 0],
        "trunk": ["t"] * 6,
        "round": [1, 2, 3, 1, 2, 3],
        "sparsity": [0.97, 0.9991, 1.0, 0.2, 0.36, 0.488],
        "corrupt/mce": [1.1, 1.8e308, 2.0, 0.9, 1.0, 1.05],
        "dense/corrupt/mce": [1.0] * 6,
    })
    path = metrics_vs_sparsity(frame, ["corrupt/mce", "calib/ece"], tmp_path / "g.png", "t")
    assert path is not None and matplotlib.image.imread(path).shape[2] == 4
    assert metrics_vs_sparsity(frame, ["calib/ece"], tmp_path / "none.png", "t") is None


def test_ticks_keep_both_ends_and_never_crowd_on_the_log_axis():
    remaining = [100.0, 80.0, 64.0] + [100 * 0.8 ** i for i in range(3, 20)] + [0.0]
    ticks = spread_ticks(remaining, 8)
    assert ticks[0] == 100.0 and ticks[-1] == 1.44  # 0 % has no place on a log axis
    gaps = -np.diff(np.log10(ticks))
    assert gaps.min() >= (np.log10(100) - np.log10(1.44)) / 8
    assert 80.0 not in ticks and len(ticks) <= 9
    assert spread_ticks([100.0, 50.0, 50.0001], 8) == [100.0, 50.0]
