"""Every registered method through a real lineage: masks hold through training, runs repeat
exactly, and the sweep config accepts each one."""
import pytest
import torch

from tests.support.tiny import tiny_lineage
from lth_sweep.trainables.lineage import run_lineage
from lth_sweep.trainables.pruning import PRUNING_METHODS

STRUCTURED = {"filter", "channel_in"}


@pytest.mark.parametrize("method", sorted(PRUNING_METHODS))
def test_masks_hold_through_training_and_runs_repeat_exactly(trained_trunk, method):
    spec = tiny_lineage(method=method, rate=0.5, rounds=2)
    first, second = run_lineage(spec, trained_trunk), run_lineage(spec, trained_trunk)
    for a, b in zip(first, second):
        assert all(torch.equal(a.state.masks[n], b.state.masks[n]) for n in a.state.masks)
        assert a.metrics["test/acc"] == b.metrics["test/acc"]
        for name, mask in a.state.masks.items():
            assert (a.state.weights[name][~mask] == 0).all(), name
            assert (a.evaluated[name][~mask] == 0).all(), name
    nominal = [r.metrics["sparsity/nominal"] for r in first]
    realised = [r.metrics["sparsity"] for r in first]
    assert nominal == pytest.approx([0.5, 0.75])
    if method in STRUCTURED:  # counted in channels: weight sparsity follows, not exactly
        assert 0 < realised[0] < realised[1] < 1
    else:
        assert realised == pytest.approx(nominal, abs=0.01)
