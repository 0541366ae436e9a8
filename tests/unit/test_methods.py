"""What defines the magnitude and random methods and the lineage controls, checked exactly."""
import pytest
import torch

from tests.support.tiny import prune_context, shapes_model, tiny_lineage, tiny_trunk
from lth_sweep.trainables.lineage import LayerCollapseError, run_lineage, shuffled
from lth_sweep.trainables.pruning import PRUNING_METHODS, imp, omp, random_pruning
from lth_sweep.trainables.pruning.densities import erk, kept_counts
from lth_sweep.trainables.pruning.selection import prune_to_sparsity
from lth_sweep.trainables.trunk import train_trunk


def context(spec, round_index=1, masks=None, seed=0):
    """The untrained tiny Conv-2 (torch seed `seed`) standing for trained, dense and start weights."""
    return prune_context(spec, shapes_model(seed=seed), round_index, masks=masks, seed=seed)


def kept(masks):
    return sum(int(m.sum()) for m in masks.values())


def total(masks):
    return sum(m.numel() for m in masks.values())


def test_every_registered_method_declares_a_spec_and_next_masks():
    for name, module in PRUNING_METHODS.items():
        assert module.Spec(rate=0.5, rounds=1).method == name and callable(module.next_masks)


@pytest.mark.parametrize("round_index", [1, 3, 6])
def test_one_shot_magnitude_reaches_the_target_in_one_step_from_the_dense_weights(round_index):
    spec = omp.Spec(rate=0.3, rounds=6)
    ctx = context(spec, round_index)
    masks = omp.next_masks(ctx)
    assert total(masks) - kept(masks) == round(spec.target_sparsity(round_index) * total(masks))
    weights = torch.cat([ctx.dense[n].abs()[masks[n]] for n in masks])
    gone = torch.cat([ctx.dense[n].abs()[~masks[n]] for n in masks])
    assert gone.max() <= weights.min()


def test_random_pruning_matches_magnitude_per_layer_counts_at_random_positions():
    spec = random_pruning.Spec(rate=0.5, rounds=3)
    ctx = context(spec, 3)
    masks = random_pruning.next_masks(ctx)
    reference, _ = prune_to_sparsity({n: ctx.dense[n].abs() for n in ctx.masks}, ctx.all_kept(), ctx.target, "global")
    assert {n: int(m.sum()) for n, m in masks.items()} == {n: int(m.sum()) for n, m in reference.items()}
    assert any(not torch.equal(masks[n], reference[n]) for n in masks)
    assert all(torch.equal(a, b) for a, b in zip(masks.values(), random_pruning.next_masks(context(spec, 3)).values()))


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_random_pruning_with_a_density_distribution(distribution):
    spec = random_pruning.Spec(rate=0.5, rounds=2, distribution=distribution)
    ctx = context(spec, 2)
    masks = random_pruning.next_masks(ctx)
    shapes = {n: m.shape for n, m in ctx.masks.items()}
    assert {n: int(m.sum()) for n, m in masks.items()} == kept_counts(shapes, 0.25, distribution)


def test_erk_densities_spend_exactly_the_budget_and_favour_small_layers():
    shapes = {"conv": torch.Size([16, 3, 3, 3]), "wide": torch.Size([256, 1024]), "out": torch.Size([10, 256])}
    densities = erk(shapes, 0.1)
    sizes = {n: torch.Size(s).numel() for n, s in shapes.items()}
    assert sum(densities[n] * sizes[n] for n in shapes) == pytest.approx(0.1 * sum(sizes.values()))
    assert densities["wide"] < densities["out"] <= 1 and densities["conv"] <= 1


def test_imp_prunes_from_the_previous_rounds_masks_and_trained_weights():
    spec = imp.Spec(rate=0.5, rounds=3)
    first = imp.next_masks(context(spec, 1))
    second = imp.next_masks(context(spec, 2, masks=first))
    assert kept(second) == kept(first) - round(0.5 * kept(first))
    assert all(not (second[n] & ~first[n]).any() for n in first)


def test_global_pruning_never_empties_a_layer_unless_allowed():
    spec = omp.Spec(rate=0.999, rounds=1)
    ctx = context(spec)
    ctx.dense["fc.weight"] = ctx.dense["fc.weight"] * 1e-6  # the smallest weights, all in one layer
    masks = omp.next_masks(ctx)
    assert int(masks["fc.weight"].sum()) == 1 and all(m.any() for m in masks.values())
    assert "fc.weight" in " ".join(ctx.notes)
    assert total(masks) - kept(masks) == round(0.999 * total(masks))
    allowed = context(omp.Spec(rate=0.999, rounds=1, allow_layer_collapse=True))
    allowed.dense["fc.weight"] = allowed.dense["fc.weight"] * 1e-6
    assert not omp.next_masks(allowed)["fc.weight"].any()


def test_a_method_that_empties_a_layer_stops_the_lineage_with_a_clear_error(monkeypatch, trained_trunk):
    # The built-in methods guard against collapse themselves; the lineage still checks any method.
    original = random_pruning.next_masks
    monkeypatch.setattr(random_pruning, "next_masks", lambda ctx: {n: torch.zeros_like(m) for n, m in original(ctx).items()})
    with pytest.raises(LayerCollapseError, match="allow_layer_collapse"):
        run_lineage(tiny_lineage(method="random", rounds=1), trained_trunk)


def test_shuffled_masks_keep_per_layer_sparsity_and_move_positions():
    masks = omp.next_masks(context(omp.Spec(rate=0.7, rounds=1)))
    mixed = shuffled(masks, torch.Generator().manual_seed(0))
    assert {n: int(m.sum()) for n, m in mixed.items()} == {n: int(m.sum()) for n, m in masks.items()}
    assert all(not torch.equal(mixed[n], masks[n]) for n in masks)


def test_lineage_controls_and_lr_rewinding_on_real_training():
    trunk = train_trunk(tiny_trunk(epochs=2))
    plain = run_lineage(tiny_lineage(train={"epochs": 2}, rounds=2), trunk)
    shuffle = run_lineage(tiny_lineage(train={"epochs": 2}, rounds=2, shuffle=True), trunk)
    lr = run_lineage(tiny_lineage(train={"epochs": 2}, rounds=2, lr_rewind=True), trunk)
    for a, b in zip(plain, shuffle):
        assert a.metrics["sparsity/masked"] == b.metrics["sparsity/masked"]  # a shuffle may cut a channel off
        assert not all(torch.equal(a.state.masks[n], b.evaluated_masks[n]) for n in a.state.masks)
    # LR rewinding retrains from the trained weights: round 1 starts from the trunk's final weights.
    assert lr[0].metrics["test/acc"] != plain[0].metrics["test/acc"] or not torch.equal(
        lr[0].state.weights["fc.weight"], plain[0].state.weights["fc.weight"]
    )
    assert torch.equal(lr[0].state.masks["fc.weight"], plain[0].state.masks["fc.weight"])
    assert tiny_lineage(lr_rewind=True).pruning.label == "imp-lr"


def test_a_removed_filter_takes_its_bias_and_norm_parameters_with_it(trained_trunk):
    results = run_lineage(tiny_lineage(method="filter", rate=0.5, rounds=1), trained_trunk)
    weights, masks = results[0].state.weights, results[0].state.masks
    removed_somewhere = False
    for name, mask in masks.items():
        gone = ~mask.flatten(1).any(1)
        removed_somewhere |= bool(gone.any())
        bias = weights[name.removesuffix("weight") + "bias"]
        assert (bias[gone] == 0).all() and (bias[~gone] != 0).any()
    assert removed_somewhere


def test_resnet_declares_the_norm_after_each_conv():
    model = shapes_model("resnet20", width=4)
    assert model.channel_companions("blocks.0.conv1.weight") == ["blocks.0.bn1.weight", "blocks.0.bn1.bias"]
    assert model.channel_companions("blocks.3.shortcut.0.weight") == ["blocks.3.shortcut.1.weight", "blocks.3.shortcut.1.bias"]
    assert model.channel_companions("fc.weight") == ["fc.bias"]
    params = dict(model.named_parameters())
    assert all(name in params for conv in model.pruned_weights() for name in model.channel_companions(conv))
