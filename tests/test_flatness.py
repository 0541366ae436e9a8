"""Hessian eigenvalues against explicit Hessians of tiny models; flatness radius; restoration."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from analysis.flatness import flatness_radius, hessian_top_eigenvalue, input_hessian_top_eigenvalue


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    centres = torch.randn(3, 4, generator=generator)
    labels = torch.arange(60) % 3
    images = (centres[labels] + torch.randn(60, 4, generator=generator)).view(60, 1, 2, 2)
    # Same function, but in the flat model the perturbed weight carries 1% of it: the same
    # relative noise moves the logits 100x less.
    sharp, flat = Blend(centres, 1.0), Blend(centres, 0.01)
    r_sharp = flatness_radius(sharp, images, labels, sigma_max=100.0, bisections=20, draws=4)
    r_flat = flatness_radius(flat, images, labels, sigma_max=100.0, bisections=20, draws=4)
    assert 0 < r_sharp < r_flat
    assert r_flat / r_sharp == pytest.approx(100, rel=0.05)
    assert flatness_radius(sharp, images, labels, sigma_max=100.0, bisections=20, draws=4) == r_sharp


def test_every_function_restores_the_model_bit_for_bit():
    from trainables.models import build_model
    from trainables.specs import ModelSpec

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
    assert 0 <= radius <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training
