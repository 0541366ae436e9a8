"""Hessian eigenvalues against explicit Hessians of tiny models; flatness radius; restoration."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lth_sweep.analysis.flatness import flatness_radius, hessian_top_eigenvalue, input_hessian_top_eigenvalue


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py


def softmax_regression(seed: int = 0):
    """A linear classifier in float64 on 12 examples of 4 features, 3 classes: the loss is convex
    in (W, b), so the dominant Hessian eigenvalue is the top one."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    images = torch.randn(12, 1, 2, 2, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (12,), generator=generator)
    return model, images, labels


def full_weight_hessian(model, images, labels) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss(theta):
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            size = shape.numel()
            params[name] = theta[offset : offset + size].view(shape)
            offset += size
        return F.cross_entropy(functional_call(model, params, (images,)), labels)

    return torch.autograd.functional.hessian(loss, flat)


def test_weight_hessian_top_eigenvalue_matches_the_explicit_hessian():
    model, images, labels = softmax_regression()
    exact = torch.linalg.eigvalsh(full_weight_hessian(model, images, labels)).max().item()
    estimate = hessian_top_eigenvalue(model, images, labels, iterations=500, tol=1e-12, batch_size=5)
    assert estimate == pytest.approx(exact, rel=1e-6)


def test_masked_directions_are_excluded():
    model, images, labels = softmax_regression(1)
    mask = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        model[1].weight.mul_(mask)  # pruned weights sit at zero, as after pruning
    hessian = full_weight_hessian(model, images, labels)
    kept = torch.cat([mask.flatten(), torch.ones(3, dtype=torch.bool)])  # biases are not masked
    exact = torch.linalg.eigvalsh(hessian[kept][:, kept]).max().item()
    unmasked = torch.linalg.eigvalsh(hessian).max().item()
    assert abs(exact - unmasked) > 1e-3  # the test would be vacuous otherwise
    estimate = hessian_top_eigenvalue(model, images, labels, {"1.weight": mask}, iterations=500, tol=1e-12)
    assert estimate == pytest.approx(exact, rel=1e-6)


def test_input_hessian_matches_per_example_explicit_hessians():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    images = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1])
    tops = []
    for x, y in zip(images, labels):
        def loss(flat, y=y):
            return F.cross_entropy(model(flat.view(1, 1, 2, 2)), y[None])

        tops.append(torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, x.flatten())).max())
    exact = torch.stack(tops).mean().item()
    estimate = input_hessian_top_eigenvalue(model, images, labels, iterations=300, tol=1e-13, batch_size=3)
    assert estimate == pytest.approx(exact, rel=1e-6)
    assert all(p.requires_grad for p in model.parameters())


class Blend(nn.Module):
    """logits = x A^T + x W^T: A is a fixed buffer, W the only weight noise reaches."""

    def __init__(self, a: torch.Tensor, w_share: float):
        super().__init__()
        self.register_buffer("a", a * (1 - w_share))
        self.w = nn.Parameter(a * w_share)

    def forward(self, x):
        x = x.flatten(1)
        return x @ self.a.T + x @ self.w.T


def test_flatness_radius_is_larger_for_a_flatter_model():
    generator = torch.Generator().manual_seed(0)
    centres = 2 * torch.randn(3, 4, generator=generator)
    labels = torch.arange(60) % 3
    images = (centres[labels] + torch.randn(60, 4, generator=generator)).view(60, 1, 2, 2)
    # Same function, but in the flat model the perturbed weight carries 1% of it: the same
    # relative noise moves the logits 100x less.
    # epsilon=0: the additive floor of 1e-3 would be 10% of the flat model's tiny weights.
    sharp, flat = Blend(centres, 1.0), Blend(centres, 0.01)
    options = dict(sigma_max=100.0, bisections=20, draws=8, epsilon=0.0)
    r_sharp = flatness_radius(sharp, images, labels, **options)
    r_flat = flatness_radius(flat, images, labels, **options)
    assert 0 < r_sharp < r_flat
    assert r_flat / r_sharp == pytest.approx(100, rel=0.05)
    assert flatness_radius(sharp, images, labels, **options) == r_sharp


def trained_mlp(seed: int = 0):
    """A 4-16-3 ReLU network trained (full-batch Adam) to 100% accuracy on 90 examples of three
    well-separated Gaussian blobs."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(3, 4, generator=generator)
    labels = torch.arange(90) % 3
    images = (centres[labels] + torch.randn(90, 4, generator=generator)).view(90, 1, 2, 2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    return model, images, labels


def accuracy(model, images, labels) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).double().mean())


def test_the_radius_does_not_shrink_with_confidence():
    """Scaling the last layer by 16 (exact in floating point) keeps every prediction, with or
    without magnitude-aware noise, and only makes the network more confident (its loss drops
    100-fold): the radius must not move. The old radius, a budget of 10% of the network's own loss,
    moved (0.109 -> 0.156 here), and gave well-fit networks almost no budget."""
    model, images, labels = trained_mlp()
    confident = copy.deepcopy(model)
    with torch.no_grad():
        confident[3].weight.mul_(16)
        confident[3].bias.mul_(16)
    assert accuracy(model, images, labels) == accuracy(confident, images, labels) == 1.0
    with torch.no_grad():
        assert F.cross_entropy(confident(images), labels) < F.cross_entropy(model(images), labels) / 100
    radius = flatness_radius(model, images, labels, epsilon=0.0)
    assert 0 < radius < 1
    assert flatness_radius(confident, images, labels, epsilon=0.0) == radius


def test_the_radius_ignores_rescaling_a_relu_layer():
    """Layer 1 x4 and layer 2 x1/4 compute the same function and, under noise proportional to
    each weight, the same perturbed functions (powers of two: exact)."""
    model, images, labels = trained_mlp()
    rescaled = copy.deepcopy(model)
    with torch.no_grad():
        rescaled[1].weight.mul_(4)
        rescaled[1].bias.mul_(4)
        rescaled[3].weight.div_(4)
    assert flatness_radius(rescaled, images, labels, epsilon=0.0) == flatness_radius(model, images, labels, epsilon=0.0)


def test_a_collapsed_network_is_not_ranked():
    """A network whose last layer is pruned away outputs its bias, a constant: noise cannot move its
    accuracy by 0.1, so any radius would be the cap and rank it flattest. It gets NaN instead
    (the old radius gave it a number, above the trained network's)."""
    model, images, labels = trained_mlp()
    collapsed = copy.deepcopy(model)
    masks = {"3.weight": torch.zeros_like(collapsed[3].weight, dtype=torch.bool)}
    with torch.no_grad():
        collapsed[3].weight.zero_()
    assert flatness_radius(model, images, labels) > 0
    assert math.isnan(flatness_radius(collapsed, images, labels, masks))


def test_pruned_weights_stay_zero_under_noise_and_the_model_is_restored():
    model, images, labels = trained_mlp()
    generator = torch.Generator().manual_seed(1)
    masks = {name: torch.rand(p.shape, generator=generator) < 0.7 for name, p in model.named_parameters() if p.ndim == 2}
    with torch.no_grad():
        for name, mask in masks.items():
            dict(model.named_parameters())[name].mul_(mask)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def check(module, inputs):
        pruned = ~masks["1.weight"]
        seen.append((bool((module.weight[pruned] == 0).all()), bool((module.weight != before["1.weight"]).any())))

    handle = model[1].register_forward_pre_hook(check)
    radius = flatness_radius(model, images, labels, masks, draws=2, bisections=4)
    handle.remove()
    assert 0 < radius < 1  # measured: the pruned network still beats chance
    assert all(zero for zero, _ in seen)
    assert any(moved for _, moved in seen)  # the kept weights were perturbed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_radius_is_deterministic_given_the_seed():
    model, images, labels = trained_mlp()
    torch.manual_seed(1)
    first = flatness_radius(model, images, labels, draws=2, bisections=10, seed=3)
    torch.manual_seed(2)  # the global generator plays no part
    assert flatness_radius(model, images, labels, draws=2, bisections=10, seed=3) == first


def test_every_function_restores_the_model_bit_for_bit():
    from lth_sweep.trainables.models import build_model
    from lth_sweep.trainables.specs import ModelSpec

    torch.manual_seed(0)
    model = build_model(ModelSpec(name="conv2", width=4), in_channels=3, image_size=8, num_classes=3)
    images, labels = torch.randn(16, 3, 8, 8), torch.arange(16) % 3
    masks = {name: torch.rand(p.shape) < 0.5 for name, p in model.named_parameters() if name.endswith("weight")}
    with torch.no_grad():
        for name, mask in masks.items():
            dict(model.named_parameters())[name].mul_(mask)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    hessian_top_eigenvalue(model, images, labels, masks, iterations=3)
    input_hessian_top_eigenvalue(model, images, labels, masks, iterations=3)
    radius = flatness_radius(model, images, labels, masks, draws=2, bisections=3)
    assert math.isnan(radius) or 0 <= radius <= 1  # NaN: this untrained network is at chance
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training


def test_resample_weights_equal_repeating_the_images():
    """A bootstrap draw enters as per-image counts: the weighted statistics equal the ones on the
    images repeated that often (weights of 0 drop an image), and weights of 1 change nothing."""
    model, images, labels = softmax_regression(2)
    counts = torch.tensor([2, 0, 1, 3, 1, 0, 1, 1, 2, 0, 1, 0], dtype=torch.float64)
    repeated = torch.repeat_interleave(torch.arange(12), counts.long())
    options = dict(iterations=300, tol=1e-12)
    weighted = hessian_top_eigenvalue(model, images, labels, weights=counts, **options)
    assert weighted == pytest.approx(hessian_top_eigenvalue(model, images[repeated], labels[repeated], **options), rel=1e-6)
    ones = torch.ones(12, dtype=torch.float64)
    assert hessian_top_eigenvalue(model, images, labels, weights=ones, **options) == pytest.approx(
        hessian_top_eigenvalue(model, images, labels, **options), rel=1e-12)

    model, images, labels = trained_mlp(1)
    counts = torch.randint(0, 3, (len(labels),), generator=torch.Generator().manual_seed(0)).double()
    repeated = torch.repeat_interleave(torch.arange(len(labels)), counts.long())
    radius = dict(draws=3, bisections=8, seed=4)
    assert flatness_radius(model, images, labels, weights=counts, **radius) == flatness_radius(
        model, images[repeated], labels[repeated], **radius)
    assert flatness_radius(model, images, labels, weights=torch.ones(len(labels)), **radius) == flatness_radius(
        model, images, labels, **radius)


@pytest.mark.parametrize("weights", [torch.zeros(12), -torch.ones(12), torch.ones(11)])
def test_bad_weights_are_refused(weights):
    model, images, labels = softmax_regression()
    with pytest.raises(ValueError, match="one non-negative weight per image"):
        hessian_top_eigenvalue(model, images, labels, weights=weights)
