"""What defines SNIP, GraSP and SynFlow, checked exactly against scores computed by hand."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from tests.support.tiny import prune_context, shapes_model, state_of
from lth_sweep.trainables.data import ImageSplit
from lth_sweep.trainables.pruning import grasp, snip, synflow
from lth_sweep.trainables.pruning.selection import prune_to_sparsity

METHODS = {"snip": snip, "grasp": grasp, "synflow": synflow}


def split(n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.randn(n, 3, 16, 16, generator=generator), torch.randint(0, 9, (n,), generator=generator))


def context(spec, round_index=1, target=None, data=None, model_name="conv2"):
    """The start weights come from seed 0; `trained`/`dense` from seed 1, so using them shows."""
    model = shapes_model(model_name, seed=0)
    other = state_of(shapes_model(model_name, seed=1))
    return prune_context(spec, model, round_index, trained=other, dense=other, data=split() if data is None else data,
                         target=target)


def loaded(ctx, train=True):
    model = copy.deepcopy(ctx.model)
    model.load_state_dict(ctx.start)
    return model.train(train)


def count(masks):
    return sum(int(m.sum()) for m in masks.values()), sum(m.numel() for m in masks.values())


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def top_k(scores, ctx):
    return prune_to_sparsity(scores, ctx.all_kept(), ctx.target, ctx.spec.scope)[0]


# ---- all three --------------------------------------------------------------------------------

@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("method", list(METHODS))
def test_one_step_to_the_exact_target_deterministically(method, scope):
    spec = METHODS[method].Spec(rate=0.5, rounds=3, scope=scope, **({} if method == "synflow" else {"batch_size": 32}))
    ctx = context(spec, round_index=3)
    masks = METHODS[method].next_masks(ctx)
    kept, total = count(masks)
    assert spec.method == method and ctx.target == 0.875
    if scope == "global":
        assert kept == round((1 - ctx.target) * total) and total - kept == round(ctx.target * total)
    else:
        assert all(int((~m).sum()) == round(ctx.target * m.numel()) for m in masks.values())
    assert same(masks, METHODS[method].next_masks(context(spec, round_index=3)))


@pytest.mark.parametrize("method", list(METHODS))
def test_batch_norm_model_with_an_excluded_stem(method):
    spec = METHODS[method].Spec(rate=0.5, rounds=2, **({"iterations": 10} if method == "synflow" else {"batch_size": 32}))
    ctx = context(spec, round_index=2, model_name="resnet20")
    masks = METHODS[method].next_masks(ctx)
    kept, total = count(masks)
    assert "conv.weight" not in masks and total - kept == round(0.75 * total)
    assert next(ctx.model.parameters()).dtype == torch.float32


# ---- SNIP -------------------------------------------------------------------------------------

def test_scoring_batches_are_class_balanced_disjoint_and_seeded():
    labels = torch.arange(90) % 9
    data = ImageSplit(torch.arange(90.0).view(90, 1, 1, 1), labels[torch.randperm(90)])
    batches = snip.scoring_batches(data, 18, 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(torch.bincount(y, minlength=9), torch.full((9,), 2)) for _, y in batches)
    seen = torch.cat([x.flatten() for x, _ in batches])
    assert seen.unique().numel() == 54
    again = snip.scoring_batches(data, 18, 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


def test_snip_scores_are_the_summed_gradient_times_the_weight():
    ctx = context(snip.Spec(rate=0.5, rounds=2))
    names = list(ctx.masks)
    batches = [(ctx.data.images[:16], ctx.data.labels[:16]), (ctx.data.images[16:40], ctx.data.labels[16:40])]
    hand = loaded(ctx)
    sum(F.cross_entropy(hand(x), y) for x, y in batches).backward()
    params = dict(hand.named_parameters())
    expected = {n: (params[n].grad * params[n].detach()).abs() for n in names}
    scores = snip.snip_scores(loaded(ctx), batches, names)
    assert all(torch.allclose(scores[n], expected[n], rtol=1e-5, atol=1e-9) for n in names)


def test_snip_keeps_the_top_scores_on_the_start_weights_of_its_sampled_batches():
    spec = snip.Spec(rate=0.5, rounds=3, batch_size=24, batches=2)
    ctx = context(spec, round_index=2)
    masks = snip.next_masks(ctx)
    batches = snip.scoring_batches(ctx.data, 24, 2, ctx.generator())
    hand = loaded(ctx)
    sum(F.cross_entropy(hand(x), y) for x, y in batches).backward()
    params = dict(hand.named_parameters())
    scores = {n: (params[n].grad * params[n].detach()).abs() for n in ctx.masks}
    assert same(masks, top_k(scores, ctx))
    kept = torch.cat([scores[n][masks[n]] for n in masks])
    gone = torch.cat([scores[n][~masks[n]] for n in masks])
    assert gone.max() <= kept.min()


# ---- GraSP ------------------------------------------------------------------------------------

def hessian_gradient_by_hand(model, batches, names, temperature):
    """-θ ⊙ Hg with torch.autograd.functional.hvp on the loss as a function of the named weights."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    theta = tuple(params[n] for n in names)

    def loss(*weights):
        p = {**params, **dict(zip(names, weights))}
        return sum(F.cross_entropy(functional_call(model, p, (x,)) / temperature, y) for x, y in batches)

    g = torch.autograd.functional.jacobian(loss, theta)
    _, hg = torch.autograd.functional.hvp(loss, theta, g)
    return {n: -t * h for n, t, h in zip(names, theta, hg)}


@pytest.mark.parametrize("temperature", [200.0, 1.0])
def test_grasp_scores_are_minus_theta_times_the_hessian_gradient_product(temperature):
    ctx = context(grasp.Spec(rate=0.5, rounds=2))
    model = loaded(ctx).double()
    names = list(ctx.masks)
    images = ctx.data.images.double()
    batches = [(images[:20], ctx.data.labels[:20]), (images[20:48], ctx.data.labels[20:48])]
    expected = hessian_gradient_by_hand(model, batches, names, temperature)
    scores = grasp.grasp_scores(model, batches, names, temperature)
    scale = max(float(e.abs().max()) for e in expected.values())
    assert scale > 0
    assert all(torch.allclose(scores[n], expected[n], rtol=1e-7, atol=1e-9 * scale) for n in names)


def test_grasp_removes_the_highest_scores():
    spec = grasp.Spec(rate=0.5, rounds=2, batch_size=32)
    ctx = context(spec, round_index=2)
    masks = grasp.next_masks(ctx)
    batches = grasp.scoring_batches(ctx.data, 32, 1, ctx.generator())
    scores = grasp.grasp_scores(loaded(ctx), batches, list(ctx.masks), 200.0)
    assert same(masks, top_k({n: -s for n, s in scores.items()}, ctx))
    kept = torch.cat([scores[n][masks[n]] for n in masks])
    gone = torch.cat([scores[n][~masks[n]] for n in masks])
    assert gone.min() >= kept.max()


# ---- SynFlow ----------------------------------------------------------------------------------

def synflow_by_hand(model, state, masks):
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for key, value in net.state_dict().items():
            value.copy_(state[key].abs())
        params = dict(net.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)
    net(torch.ones(1, 3, 16, 16, dtype=torch.float64)).sum().backward()
    return {n: (params[n].grad * params[n].detach()).abs() for n in masks}


def test_one_iteration_synflow_prunes_by_the_flow_score():
    ctx = context(synflow.Spec(rate=0.5, rounds=3, iterations=1), round_index=3)
    masks = synflow.next_masks(ctx)
    assert same(masks, top_k(synflow_by_hand(ctx.model, ctx.start, ctx.all_kept()), ctx))


def test_synflow_rescores_the_masked_network_on_an_exponential_schedule():
    ctx = context(synflow.Spec(rate=0.5, rounds=3, iterations=2), round_index=3)
    masks = synflow.next_masks(ctx)
    half, _ = prune_to_sparsity(synflow_by_hand(ctx.model, ctx.start, ctx.all_kept()), ctx.all_kept(), 1 - 0.125**0.5, "global")
    expected, _ = prune_to_sparsity(synflow_by_hand(ctx.model, ctx.start, half), half, 0.875, "global")
    assert same(masks, expected)


def test_synflow_scores_conserve_flow_layer_by_layer_without_biases():
    model = shapes_model(seed=0)
    state = {k: torch.zeros_like(v) if k.endswith("bias") else v for k, v in state_of(model).items()}
    masks = {n: torch.ones_like(state[n], dtype=torch.bool) for n in model.pruned_weights()}
    totals = torch.stack([s.sum() for s in synflow_by_hand(model, state, masks).values()])
    assert torch.allclose(totals, totals[0].expand_as(totals), rtol=1e-9)


def test_synflow_reads_no_data_and_leaves_the_model_and_start_alone():
    spec = synflow.Spec(rate=0.5, rounds=2)
    no_data = ImageSplit(torch.full((2, 3, 16, 16), float("nan")), labels=None)
    ctx = context(spec, round_index=2, data=no_data)
    start = state_of(ctx.model)
    masks = synflow.next_masks(ctx)
    assert same(masks, synflow.next_masks(context(spec, round_index=2)))
    assert same(ctx.start, start) and next(ctx.model.parameters()).dtype == torch.float32


def test_synflow_avoids_layer_collapse_unless_allowed():
    ctx = context(synflow.Spec(rate=0.5, rounds=2), target=0.999)
    masks = synflow.next_masks(ctx)
    kept, total = count(masks)
    assert kept == round(0.001 * total) == len(masks)  # one weight per layer is all there is
    assert all(m.any() for m in masks.values()) and ctx.notes
    ctx = context(synflow.Spec(rate=0.5, rounds=2, allow_layer_collapse=True), target=0.999)
    masks = synflow.next_masks(ctx)
    assert count(masks)[0] == kept and not all(m.any() for m in masks.values()) and not ctx.notes
