"""Structured pruning (filters, input channels): whole channels go, in exact counts, lowest norms
first, never the class logits or the image's colour channels, never a layer's last channel unless
allowed, and the same way every time."""
import pytest
import torch

from trainables.data import ImageSplit
from trainables.masks import dense_masks
from trainables.models import build_model
from trainables.pruning import channel_in, filter
from trainables.pruning.base import PruneContext
from trainables.pruning.structured import channel_scores, prune_channels
from trainables.specs import ModelSpec

METHODS = {"filter": (filter, 0), "channel_in": (channel_in, 1)}  # module, channel dim
MODELS = [("conv2", 8), ("resnet20", 4)]


def build(name="conv2", width=8, exclude=None, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelSpec(name=name, width=width), in_channels=3, image_size=16, num_classes=9)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model, weights, dense_masks(model, model.pruned_weights(exclude))


def context(spec, model, masks, trained, dense, round_index=1):
    return PruneContext(
        spec=spec, round=round_index, target=spec.target_sparsity(round_index), masks=masks, trained=trained,
        dense=dense, start=dense, model=model, seed=0,
        data=ImageSplit(images=torch.randn(8, 3, 16, 16), labels=torch.randint(0, 9, (8,))),
    )


def retrained(weights, masks, round_index):
    """Stand-in for retraining: other weights, the pruned ones still zero."""
    generator = torch.Generator().manual_seed(round_index)
    return {
        name: (value + 0.1 * torch.randn(value.shape, generator=generator)) * masks[name] if name in masks else value
        for name, value in weights.items()
    }


def channels(mask, dim):
    return mask.movedim(dim, 0).flatten(1)


def kept(mask, dim):
    return int(channels(mask, dim).any(1).sum())


def l1(weight, mask, dim):
    return channels(weight * mask, dim).abs().sum(1)


def run_rounds(spec, model, weights, masks, rounds=3):
    """(masks before, trained weights scored, masks after) for each round of a lineage."""
    history, trained = [], weights
    for r in range(1, rounds + 1):
        ctx = context(spec, model, masks, trained, weights, r)
        new = METHODS[spec.method][0].next_masks(ctx)
        history.append((masks, trained, new))
        masks, trained = new, retrained(weights, new, r)
    return history


@pytest.mark.parametrize("model_name,width", MODELS)
@pytest.mark.parametrize("schedule", ["iterative", "oneshot"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_removed_channels_are_whole(method, schedule, model_name, width):
    module, dim = METHODS[method]
    model, weights, masks = build(model_name, width)
    spec = module.Spec(rate=0.5, rounds=3, schedule=schedule)
    for _, _, new in run_rounds(spec, model, weights, masks):
        for name, mask in new.items():
            rows = channels(mask, dim)
            assert (rows.all(1) | ~rows.any(1)).all(), name
        assert sum(int((~m).sum()) for m in new.values()) > 0


@pytest.mark.parametrize("model_name,width", MODELS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_layerwise_rounds_remove_the_fraction_of_remaining_channels_with_the_lowest_norms(method, model_name, width):
    module, dim = METHODS[method]
    model, weights, masks = build(model_name, width)
    protected = model.prunable_weights()[-1 if dim == 0 else 0]
    spec = module.Spec(rate=0.3, rounds=3, scope="layerwise")
    for before, trained, after in run_rounds(spec, model, weights, masks):
        for name in before:
            assert not (after[name] & ~before[name]).any(), "a pruned weight came back"
            if name == protected:
                assert torch.equal(after[name], before[name])
                continue
            remaining = kept(before[name], dim)
            assert remaining - kept(after[name], dim) == round(0.3 * remaining), name
            scores = l1(trained[name], before[name], dim)
            was, still = channels(before[name], dim).any(1), channels(after[name], dim).any(1)
            if (was & ~still).any():
                assert scores[was & ~still].max() <= scores[still].min(), name


def test_global_rounds_count_channels_over_all_layers_and_compare_size_normalised_norms():
    model, weights, masks = build()
    # collapse allowed: a layer saved from it keeps a channel out of order
    spec = filter.Spec(rate=0.3, rounds=3, scope="global", norm="l2", allow_layer_collapse=True)
    classifier = model.prunable_weights()[-1]
    for before, trained, after in run_rounds(spec, model, weights, masks):
        names = [n for n in before if n != classifier]
        remaining = sum(kept(before[n], 0) for n in names)
        assert remaining - sum(kept(after[n], 0) for n in names) == round(0.3 * remaining)
        # L2 / sqrt(weights per channel): the RMS of a channel's weights
        rms = {n: channels(trained[n] * before[n], 0).pow(2).mean(1).sqrt() for n in names}
        gone = torch.cat([rms[n][channels(before[n], 0).any(1) & ~channels(after[n], 0).any(1)] for n in names])
        still = torch.cat([rms[n][channels(after[n], 0).any(1)] for n in names])
        assert gone.max() <= still.min()


@pytest.mark.parametrize("scope", ["layerwise", "global"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_oneshot_prunes_the_dense_trunk_straight_to_the_target(method, scope):
    module, dim = METHODS[method]
    model, weights, masks = build()
    protected = model.prunable_weights()[-1 if dim == 0 else 0]
    spec = module.Spec(rate=0.3, rounds=4, scope=scope, schedule="oneshot")
    # the previous round's masks and weights must not matter: one shot from the dense trunk
    stale = {n: torch.rand(m.shape) < 0.5 for n, m in masks.items()}
    ctx = context(spec, model, stale, retrained(weights, stale, 9), weights, round_index=4)
    new = module.next_masks(ctx)
    fresh = module.next_masks(context(spec, model, masks, weights, weights, round_index=4))
    assert all(torch.equal(new[n], fresh[n]) for n in masks)
    names = [n for n in masks if n != protected]
    total = {n: masks[n].shape[dim] for n in names}
    removed = {n: total[n] - kept(new[n], dim) for n in names}
    if scope == "layerwise":
        assert removed == {n: round(ctx.target * total[n]) for n in names}
        for n in names:
            scores, still = l1(weights[n], masks[n], dim), channels(new[n], dim).any(1)
            assert scores[~still].max() <= scores[still].min()
    else:
        assert sum(removed.values()) == round(ctx.target * sum(total.values()))


@pytest.mark.parametrize("scope", ["layerwise", "global"])
@pytest.mark.parametrize("model_name,width", MODELS)
def test_class_logits_and_image_channels_are_never_removed(model_name, width, scope):
    model, weights, masks = build(model_name, width)
    first, last = model.prunable_weights()[0], model.prunable_weights()[-1]
    for method, (module, dim) in METHODS.items():
        spec = module.Spec(rate=0.9, rounds=3, scope=scope, schedule="oneshot", allow_layer_collapse=True)
        new = module.next_masks(context(spec, model, masks, weights, weights, round_index=3))
        if method == "filter":
            assert new[last].all(), "a class logit was removed"
        elif first in new:  # ResNet-20 leaves its stem dense by default
            assert channels(new[first], 1).any(1).all(), "an image channel was removed"
        assert any(not mask.any() for mask in new.values()), "collapse allowed, yet no layer emptied"


def test_only_the_models_own_classifier_and_stem_are_exempt():
    model, weights, masks = build(exclude=("fc.weight",))
    spec = filter.Spec(rate=0.5, rounds=1, schedule="oneshot", scope="layerwise")
    new = filter.next_masks(context(spec, model, masks, weights, weights))
    assert kept(new["classifier.3.weight"], 0) == 16  # a hidden layer, now the last pruned one
    model, weights, masks = build("resnet20", 4)  # stem excluded: the first pruned conv reads features
    spec = channel_in.Spec(rate=0.5, rounds=1, schedule="oneshot", scope="layerwise")
    new = channel_in.next_masks(context(spec, model, masks, weights, weights))
    assert kept(new["blocks.0.conv1.weight"], 1) == 2


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_layers_last_channel_goes_only_when_collapse_is_allowed(method):
    module, dim = METHODS[method]
    model, weights, masks = build()
    protected = model.prunable_weights()[-1 if dim == 0 else 0]
    names = [name for name in masks if name != protected]
    target = filter.Spec(rate=0.9).target_sparsity(3)  # 99.9%
    doomed = [name for name in names if round(target * masks[name].shape[dim]) == masks[name].shape[dim]]
    assert doomed
    for scope in ("layerwise", "global"):
        spec = module.Spec(rate=0.9, rounds=3, scope=scope, schedule="oneshot")
        ctx = context(spec, model, masks, weights, weights, round_index=3)
        new = module.next_masks(ctx)
        assert all(kept(new[name], dim) >= 1 for name in names) and ctx.notes
        assert all(note.startswith("layer collapse avoided") for note in ctx.notes)
        if scope == "layerwise":
            assert [note.split()[-1] for note in ctx.notes] == doomed
            for name in doomed:
                strongest = int(l1(weights[name], masks[name], dim).argmax())
                assert kept(new[name], dim) == 1 and channels(new[name], dim)[strongest].all()
        spec = module.Spec(rate=0.9, rounds=3, scope=scope, schedule="oneshot", allow_layer_collapse=True)
        ctx = context(spec, model, masks, weights, weights, round_index=3)
        new = module.next_masks(ctx)
        assert not ctx.notes and any(not new[name].any() for name in names)
        if scope == "layerwise":
            assert all(not new[name].any() for name in doomed)


@pytest.mark.parametrize("schedule", ["iterative", "oneshot"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_inputs_same_masks_even_with_ties(method, schedule):
    module, _ = METHODS[method]
    model, weights, masks = build("resnet20", 4)
    spec = module.Spec(rate=0.5, rounds=3, schedule=schedule)
    a = run_rounds(spec, model, weights, masks)
    b = run_rounds(spec, *build("resnet20", 4)[:2], masks)
    assert all(torch.equal(x[2][n], y[2][n]) for x, y in zip(a, b) for n in masks)
    ones = {name: torch.ones_like(value) for name, value in weights.items()}
    first = module.next_masks(context(spec, model, masks, ones, ones))
    second = module.next_masks(context(spec, model, masks, ones, ones))
    assert all(torch.equal(first[n], second[n]) for n in masks)


def test_channel_scores_are_norms_of_the_masked_weights():
    weight = torch.tensor([[3.0, -4.0], [1.0, 1.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert channel_scores(weight, 0, "l1", mask).tolist() == [7.0, 1.0]
    assert channel_scores(weight, 0, "l2", mask).tolist() == [5.0, 1.0]
    assert channel_scores(weight, 1, "l1").tolist() == [4.0, 5.0]
    with pytest.raises(ValueError):
        prune_channels({"w": weight}, {"w": mask}, dim=0, norm="l1", scope="layerwise")


def test_options_and_labels():
    assert filter.Spec().label == "filter" and channel_in.Spec(scope="layerwise").label == "channel_in/layerwise"
    assert filter.Spec(schedule="oneshot").label == "filter-oneshot"
    assert channel_in.Spec(norm="l2", schedule="oneshot").label == "channel_in-l2-oneshot"
    with pytest.raises(ValueError):
        filter.Spec(norm="l3")
