"""Lineages on real (tiny) training: rewinding, determinism, the reinit control, resume."""
import pytest
import torch

from tests.support.tiny import REWIND, tiny_lineage, tiny_trunk
from lth_sweep.trainables.checkpoint import load_state, save_state
from lth_sweep.trainables.early_stopping import validation_split
from lth_sweep.trainables.lineage import fresh_initialisation, run_lineage
from lth_sweep.trainables.masks import MaskKeeper, apply_masks
from lth_sweep.trainables.training import train
from lth_sweep.trainables.trunk import as_tensors, build_for, cached_dataset, train_trunk


pytestmark = pytest.mark.usefixtures("one_thread")  # retrains bit for bit what the one-thread fixture trained


def equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_trunk_is_reproducible_and_snapshots_are_the_weights_at_iteration_k(trained_trunk):
    spec = tiny_trunk()
    dataset = cached_dataset(spec.data)
    torch.manual_seed(spec.seed)
    model = build_for(spec, dataset)
    assert equal_states(as_tensors(trained_trunk.init), model.state_dict())
    train(model, dataset.train, spec.train, seed=spec.seed, stop_iteration=REWIND)
    assert equal_states(as_tensors(trained_trunk.snapshots[REWIND]), model.state_dict())
    again = train_trunk(spec, rewind_iterations=(REWIND,))
    assert equal_states(as_tensors(again.final), as_tensors(trained_trunk.final))


@pytest.mark.parametrize("rewind", ["init", REWIND])
def test_each_round_rewinds_bit_for_bit_then_retrains_under_the_mask(trained_trunk, rewind):
    spec = tiny_lineage(rounds=1, rewind=rewind)
    (result,) = run_lineage(spec, trained_trunk)
    dataset = cached_dataset(spec.trunk.data)
    model = build_for(spec.trunk, dataset)
    start = as_tensors(trained_trunk.rewind_state(spec.pruning.rewind_iteration))
    model.load_state_dict(start)
    apply_masks(model, result.state.masks)
    for name, mask in result.state.masks.items():
        assert torch.equal(model.state_dict()[name], start[name] * mask)
    train(model, dataset.train, spec.trunk.train, seed=spec.trunk.seed,
          start_iteration=spec.pruning.rewind_iteration, callbacks=(MaskKeeper(model, result.state.masks),))
    assert equal_states(model.state_dict(), result.state.weights)


def test_same_spec_gives_identical_masks_and_metrics(trained_trunk):
    spec = tiny_lineage(rounds=3)
    first, second = run_lineage(spec, trained_trunk), run_lineage(spec, trained_trunk)
    for a, b in zip(first, second):
        assert equal_states(a.state.masks, b.state.masks)
        drop = lambda m: {k: v for k, v in m.items() if not k.startswith("time/")}
        assert drop(a.metrics) == drop(b.metrics)


def test_sparsity_compounds_per_round_and_is_reported_per_layer(trained_trunk):
    results = run_lineage(tiny_lineage(rounds=3, rate=0.5), trained_trunk)
    for round_index, result in enumerate(results, start=1):
        metrics = result.metrics
        assert metrics["sparsity/nominal"] == pytest.approx(1 - 0.5**round_index)
        assert metrics["sparsity"] == pytest.approx(1 - 0.5**round_index, abs=1e-3)
        layers = [k for k in metrics if k.startswith("sparsity/layer/")]
        assert {k.removeprefix("sparsity/layer/") for k in layers} == set(result.state.masks)


def test_reinit_control_trains_a_fresh_init_under_the_tickets_mask(trained_trunk):
    ticket = run_lineage(tiny_lineage(rounds=2), trained_trunk)
    control = run_lineage(tiny_lineage(rounds=2, reinit=True), trained_trunk)
    for t, c in zip(ticket, control):
        assert equal_states(t.state.masks, c.state.masks)  # same masks, by construction
        assert not equal_states(t.evaluated, c.evaluated)
    fresh = fresh_initialisation(tiny_lineage())
    assert not any(torch.equal(fresh[k], as_tensors(trained_trunk.init)[k]) for k in ticket[0].state.masks)


def test_shuffle_control_reports_a_shuffled_network_while_the_lineage_carries_the_ticket(trained_trunk, tmp_path):
    ticket = run_lineage(tiny_lineage(rounds=3), trained_trunk)
    control = run_lineage(tiny_lineage(rounds=3, shuffle=True), trained_trunk)
    for t, c in zip(ticket, control):
        # the state the next round prunes (and a checkpoint saves) is the unshuffled method's, bit for bit
        assert equal_states(t.state.masks, c.state.masks) and equal_states(t.state.weights, c.state.weights)
        assert equal_states(t.evaluated_masks, t.state.masks)
        for name, mask in c.state.masks.items():
            shown = c.evaluated_masks[name]
            assert int(shown.sum()) == int(mask.sum()) and not torch.equal(shown, mask), name  # a permutation
            assert (c.evaluated[name][~shown] == 0).all() and (c.evaluated[name][shown] != 0).any(), name
        assert not equal_states(c.evaluated, c.state.weights)
    save_state(tmp_path, control[0].state, evaluated=control[0].evaluated)
    state, _ = load_state(tmp_path)
    assert equal_states(state.masks, ticket[0].state.masks) and equal_states(state.weights, ticket[0].state.weights)
    resumed = run_lineage(tiny_lineage(rounds=3, shuffle=True), trained_trunk, resume_from=state)
    for a, b in zip(resumed, control[1:]):
        assert equal_states(a.evaluated_masks, b.evaluated_masks) and equal_states(a.evaluated, b.evaluated)


def test_resuming_from_a_checkpoint_continues_exactly(trained_trunk, tmp_path):
    spec = tiny_lineage(rounds=3)
    straight = run_lineage(spec, trained_trunk)
    save_state(tmp_path, straight[0].state)
    state, _ = load_state(tmp_path)
    assert state.round == 1 and equal_states(state.masks, straight[0].state.masks)
    resumed = run_lineage(spec, trained_trunk, resume_from=state)
    assert [r.state.round for r in resumed] == [2, 3]
    for a, b in zip(resumed, straight[1:]):
        assert equal_states(a.state.masks, b.state.masks) and equal_states(a.state.weights, b.state.weights)


def test_a_diverging_recipe_stops_with_a_clear_error():
    from lth_sweep.trainables.training import DivergedError

    with pytest.raises(DivergedError, match="diverged at iteration"):
        train_trunk(tiny_trunk(optimizer="sgd", lr=1e8))


def test_early_stopping_selects_on_a_fixed_sample_of_the_validation_split_and_reports_test_accuracy():
    spec = tiny_lineage(rounds=2)
    data = spec.trunk.data.model_copy(update={"validation_size": 50})
    spec = spec.model_copy(update={"trunk": spec.trunk.model_copy(update={"data": data})})
    assert spec.id == tiny_lineage(rounds=2).id  # shapes generates its validation split apart
    dataset = cached_dataset(data)
    sample = validation_split(dataset, 40)
    assert len(sample) == 40 and torch.equal(sample.images, validation_split(dataset, 40).images)
    assert validation_split(dataset) is dataset.validation and validation_split(dataset, 51) is dataset.validation
    trunk = train_trunk(spec.trunk, rewind_iterations=(REWIND,))
    every, test = 4, len(dataset.test)
    for results in (run_lineage(spec, trunk, validation_every=every, validation_images=40),
                    run_lineage(spec, trunk, validation_every=every)):
        for result in results:
            saturated = result.metrics["train/early_stop_saturated"]
            assert saturated in (0, 1) and ("train/early_stop_iteration" in result.metrics) == (saturated == 0)
            assert result.metrics.get("train/early_stop_iteration", 0) % every == 0
            correct = result.metrics["train/early_stop_acc"] * test  # accuracy on the 128 test images
            assert correct == pytest.approx(round(correct), abs=1e-9)
