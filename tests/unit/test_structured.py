"""Structured pruning (filters, input channels): whole channels go, in exact counts, lowest norms
first, never the class logits or the image's colour channels, never a layer's last channel unless
allowed, and the same way every time."""
import pytest
import torch

from tests.support.tiny import prune_context, shapes_model, state_of, tiny_lineage
from lth_sweep.trainables.data import ImageSplit
from lth_sweep.trainables.lineage import run_lineage
from lth_sweep.trainables.masks import apply_masks, companion_masks, dense_masks, sparsity_report
from lth_sweep.trainables.models.base import PrunableModel
from lth_sweep.trainables.pruning import channel_in, filter_pruning
from lth_sweep.trainables.pruning.selection import prune_to_sparsity
from lth_sweep.trainables.pruning.structured import channel_scores, prune_channels

METHODS = {"filter": (filter_pruning, 0), "channel_in": (channel_in, 1)}  # module, channel dim
MODELS = [("conv2", 8), ("resnet20", 4)]


def build(name="conv2", width=8, exclude=None, seed=0):
    model = shapes_model(name, width, seed)
    return model, state_of(model), dense_masks(model, model.pruned_weights(exclude))


def context(spec, model, masks, trained, dense, round_index=1):
    data = ImageSplit(images=torch.randn(8, 3, 16, 16), labels=torch.randint(0, 9, (8,)))
    return prune_context(spec, model, round_index, masks=masks, trained=trained, dense=dense, start=dense, data=data)


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
    spec = filter_pruning.Spec(rate=0.3, rounds=3, scope="global", norm="l2", allow_layer_collapse=True)
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
    spec = filter_pruning.Spec(rate=0.5, rounds=1, schedule="oneshot", scope="layerwise")
    new = filter_pruning.next_masks(context(spec, model, masks, weights, weights))
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
    target = filter_pruning.Spec(rate=0.9).target_sparsity(3)  # 99.9%
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
    assert filter_pruning.Spec().label == "filter" and channel_in.Spec(scope="layerwise").label == "channel_in/layerwise"
    assert filter_pruning.Spec(schedule="oneshot").label == "filter-oneshot"
    assert channel_in.Spec(norm="l2", schedule="oneshot").label == "channel_in-l2-oneshot"
    with pytest.raises(ValueError):
        filter_pruning.Spec(norm="l3")


# Effective sparsity: weights cut off by a removed channel count as pruned. Conv-2 at width 4 on
# 16 px RGB: features.0 (4, 3, 3, 3) = 108, features.2 (4, 4, 3, 3) = 144, then 2x2 pooling and
# classifier.1 (16, 4 * 8 * 8) = 4096, classifier.3 (16, 16) = 256, fc (9, 16) = 144: 4748 weights.
CONV2_WEIGHTS = 108 + 144 + 4096 + 256 + 144
EXAMPLE = torch.zeros(1, 3, 16, 16)  # only its shape matters


def pruned(model_name, width, removed: dict[str, tuple], companions=True):
    """`model` with the named mask slices (index tuples) removed the way the lineage removes them:
    weights zeroed, and for whole filters (companions=True) their biases and norms too."""
    model, _, masks = build(model_name, width)
    for name, index in removed.items():
        masks[name][index] = False
    apply_masks(model, {**masks, **(companion_masks(model, masks) if companions else {})})
    return model, masks


def test_a_removed_filter_also_removes_the_next_layers_weights_that_read_it():
    # filter 1 of the first conv (27 weights) and filter 2 of the second (36) go, with their biases
    model, masks = pruned("conv2", 4, {"features.0.weight": (1,), "features.2.weight": (2,)})
    report = sparsity_report(model, masks, nominal=0.0, example=EXAMPLE)
    # read by nobody now: the second conv's 3 other filters' slices on input 1 (3 x 9), and the 64
    # flattened 8x8 features of channel 2 in each of the 16 rows of classifier.1 (64 x 16)
    dead = {"features.0.weight": 27, "features.2.weight": 36 + 27, "classifier.1.weight": 1024}
    assert report["sparsity/masked"] == (27 + 36) / CONV2_WEIGHTS
    assert report["sparsity"] == sum(dead.values()) / CONV2_WEIGHTS
    assert report["weights/remaining"] == CONV2_WEIGHTS - sum(dead.values())
    assert report["sparsity/probed"] == 1.0
    for name in masks:
        assert report[f"sparsity/layer/{name}"] == dead.get(name, 0) / masks[name].numel(), name


def test_a_channel_nobody_reads_takes_the_filter_that_writes_it():
    # input channel 1 of the second conv (4 x 9) and input 5 of classifier.3 (16) go
    model, masks = pruned(
        "conv2", 4, {"features.2.weight": (slice(None), 1), "classifier.3.weight": (slice(None), 5)}, companions=False
    )
    report = sparsity_report(model, masks, nominal=0.0, example=EXAMPLE)
    # now written for nobody: filter 1 of the first conv (27) and row 5 of classifier.1 (256)
    assert report["sparsity/masked"] == (36 + 16) / CONV2_WEIGHTS
    assert report["sparsity"] == (36 + 16 + 27 + 256) / CONV2_WEIGHTS


def test_a_zeroed_filter_whose_bias_survives_still_feeds_the_next_layer():
    # what an unstructured method can do: all of a filter's weights gone, its bias kept, so the
    # channel emits a constant that the next layer still reads
    model, masks = pruned("conv2", 4, {"features.0.weight": (1,)}, companions=False)
    report = sparsity_report(model, masks, nominal=0.0, example=EXAMPLE)
    assert report["sparsity"] == report["sparsity/masked"] == 27 / CONV2_WEIGHTS


def test_residual_sums_keep_a_removed_filters_channel_alive_through_the_shortcut():
    # ResNet-20 at width 4, first block: removing filter 2 of conv1 (with bn1's entries) cuts
    # conv2's input channel 2 (4 x 9); removing filter 1 of conv2 (with bn2's) does not cut the next
    # block's input channel 1, which the identity shortcut still carries
    model, masks = pruned("resnet20", 4, {"blocks.0.conv1.weight": (2,), "blocks.0.conv2.weight": (1,)})
    report = sparsity_report(model, masks, nominal=0.0, example=EXAMPLE)
    total = sum(mask.numel() for mask in masks.values())
    assert report["sparsity/masked"] == 72 / total
    assert report["sparsity"] == (72 + 36 - 9) / total  # conv2's weight [1, 2] was already masked
    assert report["sparsity/layer/blocks.1.conv1.weight"] == 0


def test_unstructured_sparsity_is_the_share_of_zero_weights_as_before():
    model, masks = pruned("conv2", 8, {})
    magnitudes = {name: model.get_parameter(name).detach().abs() for name in masks}
    masks, _ = prune_to_sparsity(magnitudes, masks, 0.8, "global")
    apply_masks(model, masks)
    report = sparsity_report(model, masks, nominal=0.8, example=EXAMPLE)
    zeros = sum(int((model.get_parameter(name) == 0).sum()) for name in masks)
    assert report["sparsity"] == report["sparsity/masked"] == zeros / sum(m.numel() for m in masks.values())
    assert report["sparsity"] == pytest.approx(0.8, abs=1e-3) and report["sparsity/probed"] == 1.0


class _WithLayerNorm(PrunableModel):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.LayerNorm(6))
        self.fc = torch.nn.Linear(6, 3)

    def embed(self, x):
        return self.body(x)


def test_a_model_the_probe_cannot_trace_falls_back_to_counting_zeros():
    model = _WithLayerNorm()
    masks = dense_masks(model, model.pruned_weights())
    masks["body.1.weight"][2] = False  # a whole output neuron: dead downstream, were it provable
    apply_masks(model, masks)
    report = sparsity_report(model, masks, nominal=0.0, example=torch.zeros(1, 3, 2, 2))
    assert report["sparsity/probed"] == 0.0
    assert report["sparsity"] == report["sparsity/masked"] == 12 / (72 + 18)


def test_a_filter_lineage_reports_effective_sparsity_and_an_unstructured_one_its_zeros(trained_trunk):
    # Layerwise, rate 0.5: every pruned layer of the tiny Conv-2 loses half its filters (fc keeps its
    # logits). A layer with O outputs, I inputs of k weights each, r removed filters and d dead
    # inputs has r*I*k + (O - r)*d*k dead weights.
    (structured,) = run_lineage(tiny_lineage(method="filter", rate=0.5, rounds=1, scope="layerwise"), trained_trunk)
    masked = 2 * 27 + 2 * 36 + 8 * 256 + 8 * 16
    dead = 2 * 27 + (2 * 36 + 2 * 2 * 9) + (8 * 256 + 8 * 128) + (8 * 16 + 8 * 8) + 9 * 8
    assert structured.metrics["sparsity/masked"] == masked / CONV2_WEIGHTS
    assert structured.metrics["sparsity"] == dead / CONV2_WEIGHTS  # 73.7%, not 48.5%
    (unstructured,) = run_lineage(tiny_lineage(method="imp", rate=0.5, rounds=1), trained_trunk)
    assert unstructured.metrics["sparsity"] == unstructured.metrics["sparsity/masked"]


def test_slim_cuts_exactly_the_methods_that_remove_whole_channels():
    """`lth export --slim`'s method list is kept apart from the registry (the export's errors are
    answered before torch, which the registry imports); this holds the two equal."""
    from lth_sweep.export.request import SLIM_METHODS
    from lth_sweep.trainables.pruning import PRUNING_METHODS
    from lth_sweep.trainables.pruning.structured import StructuredSpec

    assert set(SLIM_METHODS) == {name for name, module in PRUNING_METHODS.items() if issubclass(module.Spec, StructuredSpec)}
