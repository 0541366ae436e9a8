"""Loss-landscape geometry (Chen et al.'s "flatness" dimension): the top Hessian eigenvalue of the
loss w.r.t. the weights and w.r.t. the inputs, and a flatness radius under weight noise (Jiang et
al.'s magnitude-aware sharpness, on accuracy).

The loss is the mean cross-entropy of `model` (eval mode) on `images`. Every function leaves the
model as it found it: weights bit for bit (perturbations are undone by copying the saved tensors
back), parameters' `.grad`, and train/eval mode. Pruned weights stay out of every direction:
`masks` (weight name -> bool, True = kept) zero the direction on pruned entries.

Images, labels and masks may be on the CPU: they are moved to the model's device
(`analysis.device`) batch by batch; random directions and noise are drawn on the CPU and moved,
so every device starts its power iterations from the same vectors.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lth_sweep.analysis.device import model_device
from lth_sweep.analysis.robustness import eval_mode
from lth_sweep.trainables.masks import Masks



def _parameters(model: nn.Module, masks: Masks | None) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    masks = masks or {}
    unknown = sorted(set(masks) - {name for name, _ in named})
    if unknown:
        raise KeyError(f"masks name parameters the model does not have (or that are frozen): {unknown}")
    return [p for _, p in named], [None if name not in masks else masks[name].to(p.device) for name, p in named]


def _apply(vectors: list[torch.Tensor], masks: list[torch.Tensor | None]) -> list[torch.Tensor]:
    return [v if m is None else v * m for v, m in zip(vectors, masks)]


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _converged(new: float, old: float, tol: float) -> bool:
    return abs(new - old) <= tol * (abs(old) + 1e-12)


def hessian_top_eigenvalue(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: Masks | None = None,
    iterations: int = 20,
    tol: float = 1e-3,
    seed: int = 0,
    batch_size: int = 500,
    weights: torch.Tensor | None = None,
) -> float:
    """Dominant eigenvalue of the Hessian of the mean cross-entropy w.r.t. all trainable
    parameters, with pruned entries removed: the power method on P H P, where P zeroes the entries
    `masks` prune, so the result is the dominant eigenvalue of H restricted to the kept entries
    (and the unmasked parameters: biases, norms).

    Power iteration with Hessian-vector products (double backward, as PyHessian): v_0 ~ N(0, I)
    from a generator seeded with `seed`, masked and normalised; lambda_k = v_k . P H P v_k; stops
    after `iterations` products or once |lambda_k - lambda_{k-1}| <= tol * |lambda_{k-1}|.
    "Dominant" is largest in magnitude: at a trained minimum that is the largest positive one.
    The loss is averaged over all `images` (processed `batch_size` at a time, graphs kept for
    reuse, so memory grows with len(images)). `weights` (one per image, e.g. a bootstrap
    resample's counts) make it the weighted mean sum(w_i loss_i) / sum(w_i); images of weight 0
    are skipped.
    """
    params, pmasks = _parameters(model, masks)
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    unweighted = weights is None
    images, labels, weights = _weighted(images, labels, weights)
    n, total_weight = len(images), float(weights.sum())
    with eval_mode(model):
        grads = []
        for i in range(0, n, batch_size):
            x, y = images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)
            if unweighted:
                loss = F.cross_entropy(model(x), y, reduction="sum") / n
            else:
                w = weights[i : i + batch_size].to(device=device, dtype=x.dtype)
                loss = (F.cross_entropy(model(x), y, reduction="none") * w).sum() / total_weight
            g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            grads.append([torch.zeros_like(p) if d is None else d for p, d in zip(params, g)])

        def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
            total = [torch.zeros_like(p) for p in params]
            for g in grads:
                products = torch.autograd.grad(_dot(g, v), params, retain_graph=True, allow_unused=True)
                total = [t if h is None else t + h.detach() for t, h in zip(total, products)]
            return _apply(total, pmasks)

        v = _apply([torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params], pmasks)
        norm = torch.sqrt(_dot(v, v))
        v = [x / norm for x in v]
        eigenvalue = math.nan
        for _ in range(iterations):
            hv = hvp(v)
            new = float(_dot(v, hv))
            done = not math.isnan(eigenvalue) and _converged(new, eigenvalue, tol)
            eigenvalue = new
            norm = torch.sqrt(_dot(hv, hv))
            if done or norm == 0:
                break
            v = [x / norm for x in hv]
    return eigenvalue


def input_hessian_top_eigenvalue(*args, **options) -> float:
    """Mean over examples of the dominant eigenvalue of the Hessian of example i's cross-entropy
    w.r.t. its own input: the mean of `input_hessian_eigenvalues` (arguments as there)."""
    return float(input_hessian_eigenvalues(*args, **options).mean())


def input_hessian_eigenvalues(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: Masks | None = None,
    iterations: int = 20,
    tol: float = 1e-3,
    seed: int = 0,
    batch_size: int = 500,
) -> torch.Tensor:
    """Per example (float64, CPU): the dominant eigenvalue of the Hessian of example i's
    cross-entropy w.r.t. its own (normalised, as the model sees it) input x_i.

    In eval mode example i's loss depends on x_i only, so the Hessian of the *summed* loss w.r.t.
    the batch is block diagonal with one (CHW x CHW) block per example: one Hessian-vector
    product with a batch of directions (v_1..v_N) returns (H_1 v_1, ..., H_N v_N), and N power
    iterations run at once, each normalised per example. Seeded start as in
    `hessian_top_eigenvalue`; stops after `iterations` or when every example's estimate moved by
    <= tol relatively. For ReLU/max-pool networks f is piecewise linear in x, so each block is
    J^T (diag(p) - p p^T) J, positive semi-definite: the dominant eigenvalue is the top one.
    `masks` is accepted for a uniform signature and ignored (inputs are never pruned).
    """
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    values = []
    params = [p for p in model.parameters() if p.requires_grad]
    with eval_mode(model), _frozen(params):
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].detach().to(device, copy=True).requires_grad_(True)
            y = labels[i : i + batch_size].to(device)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x, create_graph=True)
            v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(device)
            v = v / _per_example_norm(v)
            eigen = torch.full((len(x),), math.nan, dtype=x.dtype, device=device)
            for _ in range(iterations):
                (hv,) = torch.autograd.grad(grad, x, grad_outputs=v, retain_graph=True)
                new = (v * hv).flatten(1).sum(1)
                done = bool((torch.abs(new - eigen) <= tol * (eigen.abs() + 1e-12)).all())
                eigen = new
                norm = _per_example_norm(hv)
                if done or bool((norm == 0).all()):
                    break
                v = torch.where(norm > 0, hv / norm.clamp_min(1e-30), v)
            values.append(eigen.detach().cpu())
    return torch.cat(values).double()


def _weighted(
    images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The images of positive weight and their weights (all ones when `weights` is None)."""
    if weights is None:
        return images, labels, torch.ones(len(images), dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if weights.shape != (len(images),) or bool((weights < 0).any()) or not bool((weights > 0).any()):
        raise ValueError(f"weights: one non-negative weight per image, not all 0 (got shape {tuple(weights.shape)})")
    kept = weights > 0
    return images[kept], labels[kept], weights[kept]


def _per_example_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).view(-1, *[1] * (v.ndim - 1))


@contextlib.contextmanager
def _frozen(params: list[torch.Tensor]) -> Iterator[None]:
    """requires_grad off for the duration (input derivatives need no parameter graph)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    saved = {name: p.detach().clone() for name, p in model.named_parameters()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(saved[name])


@torch.no_grad()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
              weights: torch.Tensor) -> float:
    correct, device = 0.0, model_device(model)
    for i in range(0, len(images), batch_size):
        predicted = model(images[i : i + batch_size].to(device)).argmax(1)
        hits = (predicted == labels[i : i + batch_size].to(device)).cpu()
        correct += float(weights[i : i + batch_size][hits].sum())
    return correct / float(weights.sum())


def best_constant_accuracy(labels: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """Accuracy on `labels` of the best constant classifier: the largest class frequency
    (weighted by `weights` when given)."""
    weights = torch.ones(len(labels), dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
    return float(torch.zeros(int(labels.max()) + 1, dtype=torch.float64).index_add_(0, labels.cpu(), weights).max()) / float(weights.sum())


def radius_resolution(bisections: int, sigma_max: float = 1.0) -> float:
    """How finely `flatness_radius` resolves the radius: the last bisection's interval."""
    return sigma_max / 2**bisections


def flatness_radius(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: Masks | None = None,
    deviation: float = 0.1,
    draws: int = 4,
    sigma_max: float = 1.0,
    bisections: int = 8,
    seed: int = 0,
    batch_size: int = 1000,
    epsilon: float = 1e-3,
    weights: torch.Tensor | None = None,
) -> float:
    """Magnitude-aware flatness radius (higher = flatter): the largest sigma in [0, sigma_max] with
    |E_u[acc(w + u)] - acc(w)| <= `deviation`, found by bisection, where acc is the accuracy on
    (images, labels) and every kept parameter w_i is perturbed by u_i ~ N(0, sigma^2 w_i^2 + epsilon^2).

    Source: Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find Them" (ICLR),
    the magnitude-aware PAC-Bayes sharpness (their measure pacbayes.mag.flatness = 1 / sigma'^2;
    this returns sigma'): noise proportional to each weight's magnitude plus epsilon = 1e-3, and
    sigma' the largest scale whose expected accuracy deviates from the unperturbed one by at most
    the absolute deviation d = 0.1 (their search over sigma in [0, 2], Monte Carlo over draws).
    Because the noise is relative to each weight and the criterion is on accuracy, sigma' does not
    depend on how confident the network is (scaling the logits leaves it unchanged, up to epsilon)
    nor on rescaling a ReLU layer by a and the next by 1/a, unlike a budget relative to the loss.

    As in Jiang et al., all trainable parameters are perturbed (biases and norm affines too);
    entries that `masks` prune get no noise, so pruned weights stay at zero. The expectation is
    the mean over `draws` draws; draw k comes from a CPU generator seeded with (seed, k) and is
    the same standard-normal z at every sigma (common random numbers: the bisection sees a
    deterministic function of sigma). Bisection: `bisections` halvings of [0, sigma_max], the
    lower end (known to pass) is returned; sigma_max itself if it still passes (a cap).

    NaN when acc(w) does not beat the best constant classifier (the largest class frequency in
    `labels`) by more than `deviation`: noise cannot then be guaranteed to move the accuracy by
    `deviation`, so the radius would be the cap and a collapsed (constant-output) network would
    rank as the flattest. Jiang et al. only measure networks that fit their data; NaN keeps such
    a network out of the ranking (verdicts count it as collapsed, summaries leave it out).

    `weights` (one per image, e.g. a bootstrap resample's counts) weight every accuracy, the
    unperturbed one and the best constant classifier's included.
    """
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    masks = masks or {}
    images, labels, weights = _weighted(images, labels, weights)
    with eval_mode(model), _restored(model):
        params = dict(model.named_parameters())
        base = {name: params[name].detach().clone() for name in names}
        accuracy0 = _accuracy(model, images, labels, batch_size, weights)
        if accuracy0 - best_constant_accuracy(labels, weights) <= deviation:
            return math.nan

        def expected_accuracy(sigma: float) -> float:
            total = 0.0
            for draw in range(draws):
                generator = torch.Generator().manual_seed(seed * 1_000_003 + draw)
                with torch.no_grad():
                    for name in names:
                        w = base[name]
                        z = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
                        noise = z * torch.sqrt((sigma * w) ** 2 + epsilon**2)
                        if name in masks:
                            noise = noise * masks[name].to(device=w.device, dtype=w.dtype)
                        params[name].copy_(w + noise)
                total += _accuracy(model, images, labels, batch_size, weights)
            return total / draws

        def passes(sigma: float) -> bool:
            return abs(expected_accuracy(sigma) - accuracy0) <= deviation

        if passes(sigma_max):
            return sigma_max
        low, high = 0.0, sigma_max
        for _ in range(bisections):
            middle = (low + high) / 2
            if passes(middle):
                low = middle
            else:
                high = middle
        return low
