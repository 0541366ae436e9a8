"""Exact pruning properties: how many weights go, which ones, and that they stay gone."""
import pytest
import torch

from lth_sweep.trainables.masks import MaskKeeper, apply_masks, dense_masks, sparsity_report
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.pruning.selection import prune_fraction
from lth_sweep.trainables.specs import ModelSpec


def model_and_masks(seed=0, exclude=None):
    torch.manual_seed(seed)
    model = build_model(ModelSpec(name="conv2", width=4), in_channels=3, image_size=16, num_classes=9)
    return model, dense_masks(model, model.pruned_weights(exclude))


def prune_by_magnitude(weights, masks, fraction, scope):
    """IMP's step: drop round(fraction x remaining) of the smallest-magnitude kept weights."""
    return prune_fraction({name: weights[name].abs() for name in masks}, masks, fraction, scope, allow_collapse=True)[0]


def weights_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_each_round_prunes_exactly_the_fraction_of_the_remaining_weights(scope):
    model, masks = model_and_masks()
    weights = weights_of(model)
    for _ in range(4):
        before = {name: int(mask.sum()) for name, mask in masks.items()}
        masks = prune_by_magnitude(weights, masks, 0.3, scope)
        after = {name: int(mask.sum()) for name, mask in masks.items()}
        if scope == "global":
            assert sum(before.values()) - sum(after.values()) == round(0.3 * sum(before.values()))
        else:
            assert all(before[n] - after[n] == round(0.3 * before[n]) for n in masks)


def test_pruning_never_revives_and_removes_the_smallest_magnitudes():
    model, masks = model_and_masks()
    weights = weights_of(model)
    first = prune_by_magnitude(weights, masks, 0.5, "global")
    second = prune_by_magnitude(weights, first, 0.5, "global")
    for name in masks:
        assert not (second[name] & ~first[name]).any()
    kept = torch.cat([weights[n].abs()[first[n]] for n in masks])
    gone = torch.cat([weights[n].abs()[~first[n]] for n in masks])
    assert gone.max() <= kept.min()


def test_ties_are_broken_the_same_way_every_time():
    weights = {"w": torch.ones(10, 10)}
    masks = {"w": torch.ones(10, 10, dtype=torch.bool)}
    a = prune_by_magnitude(weights, masks, 0.37, "global")["w"]
    b = prune_by_magnitude(weights, masks, 0.37, "global")["w"]
    assert torch.equal(a, b) and int((~a).sum()) == 37


def test_excluded_layers_biases_and_norms_are_never_pruned():
    model, masks = model_and_masks(exclude=("fc.weight",))
    assert "fc.weight" not in masks and not any("bias" in name for name in masks)
    masks = prune_by_magnitude(weights_of(model), masks, 0.9, "global")
    apply_masks(model, masks)
    report = sparsity_report(model, masks, nominal=0.9)
    assert (model.get_parameter("fc.weight") != 0).all()
    assert all((p != 0).all() for n, p in model.named_parameters() if n.endswith("bias"))
    assert report["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert report["sparsity/model"] < report["sparsity"]


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: torch.optim.Adam(p, lr=0.01),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ],
    ids=["sgd-momentum-wd", "adam", "adamw"],
)
def test_masks_survive_optimizer_steps(make_optimizer):
    model, masks = model_and_masks()
    # Momentum built up while dense must not leak into pruned weights afterwards.
    optimizer = make_optimizer(model.parameters())
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 9, (8,))
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    masks = prune_by_magnitude(weights_of(model), masks, 0.8, "global")
    apply_masks(model, masks)
    keeper = MaskKeeper(model, masks)
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        keeper.before_step()
        optimizer.step()
        keeper.after_step()
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert (params[name][~mask] == 0).all()
        assert (params[name][mask] != 0).all()
    assert sparsity_report(model, masks, 0.8)["sparsity"] == 1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def test_the_fused_mask_keeper_trains_bit_for_bit_like_one_multiply_per_layer():
    """The keeper multiplies all layers in one fused call; a keeper doing one multiply per layer
    must give the same weights, bit for bit, signs of zeros included, after SGD with momentum and
    weight decay (where a leak would show)."""

    class PerLayerKeeper:
        def __init__(self, model, masks):
            params = dict(model.named_parameters())
            self.pairs = [(params[name], mask) for name, mask in masks.items()]

        @torch.no_grad()
        def before_step(self):
            for param, mask in self.pairs:
                param.grad.mul_(mask)

        @torch.no_grad()
        def after_step(self):
            for param, mask in self.pairs:
                param.mul_(mask)

    def trained(keeper_class):
        torch.manual_seed(0)
        model, masks = model_and_masks()
        masks = prune_by_magnitude(weights_of(model), masks, 0.7, "global")
        apply_masks(model, masks)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        keeper = keeper_class(model, masks)
        x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 9, (8,))
        for _ in range(10):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            keeper.before_step()
            optimizer.step()
            keeper.after_step()
        return model.state_dict()

    fused, per_layer = trained(MaskKeeper), trained(PerLayerKeeper)
    for name, value in fused.items():
        assert torch.equal(value, per_layer[name]), name
        assert torch.equal(torch.signbit(value), torch.signbit(per_layer[name])), name


def test_every_method_s_hooks_are_declared_on_its_spec_with_their_defaults():
    from lth_sweep.trainables.pruning import PRUNING_METHODS

    for name, module in PRUNING_METHODS.items():
        spec = module.Spec()
        assert spec.retrain_from_trained_weights() is (name == "imp" and spec.lr_rewind)
        assert spec.removes_output_channels is (name == "filter")
        if name != "rigl":
            assert spec.training_callbacks(None, None, {}) == ()
    assert PRUNING_METHODS["imp"].Spec(lr_rewind=True).retrain_from_trained_weights() is True
