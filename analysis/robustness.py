"""Generalisation beyond the test set: out-of-distribution detection (AUROC of the maximum softmax
probability), adversarial accuracy (FGSM, PGD, L-infinity in pixel space) and the validation
record Frankle & Carbin's early-stopping iteration is read from.

Attacks take `to_pixels`/`from_pixels` (the dataset's `Dataset.to_pixels/from_pixels`): epsilons
are in pixel units ([0, 1]; 8/255 is the usual CIFAR budget) and adversarial images are clamped to
[0, 1] in pixel space, whatever normalisation the model was trained with. Images and labels may
be on the CPU: each batch is moved to the model's device (`analysis.device`), and random starts are
drawn on the CPU, so every device attacks from the same points.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from lth_sweep.analysis.device import model_device

Transform = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (batch norm on running statistics, so nothing the metric does updates them),
    then the mode the model had before."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits on the CPU, computed on the model's device."""
    device = model_device(model)
    with eval_mode(model):
        return torch.cat([model(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])


def ood_auroc(in_probs, out_probs) -> float:
    """AUROC of telling in-distribution (positive) from OOD examples by the maximum softmax
    probability (Hendrycks & Gimpel 2017): the probability that a random in-distribution example
    is more confident than a random OOD one (ties count one half). 0.5 = chance, 1 = separable."""
    scores_in = torch.as_tensor(in_probs).max(1).values
    scores_out = torch.as_tensor(out_probs).max(1).values
    scores = torch.cat([scores_in, scores_out]).double().numpy()
    truth = [1] * len(scores_in) + [0] * len(scores_out)
    return float(roc_auc_score(truth, scores))


def gaussian_noise_images(
    images: torch.Tensor, to_pixels: Transform, from_pixels: Transform, n: int | None = None, seed: int = 0
) -> torch.Tensor:
    """A synthetic OOD set: `n` (default len(images)) images of i.i.d. Gaussian pixels with the
    per-channel pixel mean and std of `images`, clamped to [0, 1], returned normalised."""
    pixels = to_pixels(images)
    mean = pixels.mean((0, 2, 3), keepdim=True)
    std = pixels.std((0, 2, 3), keepdim=True)
    n = len(images) if n is None else n
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *images.shape[1:]), generator=generator, dtype=images.dtype)
    return from_pixels((mean + std * noise).clamp(0, 1))


def _pixel_gradient(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, from_pixels: Transform):
    """Gradient of the summed cross-entropy w.r.t. the pixels, and the logits it was taken at.
    Only the input gradient is computed: parameters' `.grad` stay untouched."""
    pixels = pixels.detach().requires_grad_(True)
    logits = model(from_pixels(pixels))
    loss = F.cross_entropy(logits, labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, pixels)
    return grad, logits.detach()


def fgsm_correct(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    to_pixels: Transform,
    from_pixels: Transform,
    eps: float = 8 / 255,
    batch_size: int = 500,
) -> torch.Tensor:
    """Per image (bool, on the CPU): classified correctly after FGSM (Goodfellow et al. 2015),
    x_adv = clamp(x + eps * sign(grad_x CE(f(x), y)), 0, 1) in pixel space."""
    correct = []
    device = model_device(model)
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            pixels, y = to_pixels(images[i : i + batch_size].to(device)), labels[i : i + batch_size].to(device)
            grad, _ = _pixel_gradient(model, pixels, y, from_pixels)
            adversarial = (pixels + eps * grad.sign()).clamp(0, 1)
            with torch.no_grad():
                correct.append((model(from_pixels(adversarial)).argmax(1) == y).cpu())
    return torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool)


def fgsm_accuracy(*args, **options) -> float:
    """Accuracy on FGSM images, as Chen et al. report it: the mean of `fgsm_correct`."""
    correct = fgsm_correct(*args, **options)
    return int(correct.sum()) / len(correct)


def pgd_robust(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    to_pixels: Transform,
    from_pixels: Transform,
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 500,
) -> torch.Tensor:
    """Per image (bool, on the CPU): robust under L-infinity PGD (Madry et al. 2018) in pixel space.

    From x (or x + U(-eps, eps) with `random_start`, drawn from a generator seeded with `seed`),
    `steps` times: x <- clamp(proj_eps(x + step_size * sign(grad)), 0, 1); step_size defaults to
    2.5 * eps / steps. An example counts as robust only if it is classified correctly clean and at
    every iterate: the attacker keeps the first adversarial point it finds. So the result never
    exceeds clean accuracy, and does not get worse with more steps because a later step wandered
    back to the right class.
    """
    step_size = 2.5 * eps / steps if step_size is None else step_size
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    robust = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            clean, y = to_pixels(images[i : i + batch_size].to(device)), labels[i : i + batch_size].to(device)
            x = clean
            if random_start:
                noise = torch.rand(clean.shape, generator=generator, dtype=clean.dtype).to(device)
                x = (clean + (2 * noise - 1) * eps).clamp(0, 1)
            alive = torch.ones(len(y), dtype=torch.bool, device=device)
            for _ in range(steps):
                grad, logits = _pixel_gradient(model, x, y, from_pixels)
                alive &= logits.argmax(1) == y
                x = x + step_size * grad.sign()
                x = torch.minimum(torch.maximum(x, clean - eps), clean + eps).clamp(0, 1)
            with torch.no_grad():
                alive &= model(from_pixels(x)).argmax(1) == y
                alive &= model(from_pixels(clean)).argmax(1) == y
            robust.append(alive.cpu())
    return torch.cat(robust) if robust else torch.zeros(0, dtype=torch.bool)


def pgd_accuracy(*args, **options) -> float:
    """Robust accuracy under L-infinity PGD: the mean of `pgd_robust`."""
    robust = pgd_robust(*args, **options)
    return int(robust.sum()) / len(robust)


def corruption_correct(
    model: nn.Module, labels: torch.Tensor, inputs: dict[tuple[str, int], torch.Tensor], batch_size: int = 1000
) -> dict[tuple[str, int], torch.Tensor]:
    """Per (corruption, severity) of `inputs` (`analysis.corruptions.corrupted_inputs`): which
    images the model still classifies correctly (bool, CPU). `corruption_errors` from the same
    predictions: `corruption_errors_of`."""
    return {key: predict_logits(model, corrupted, batch_size).argmax(1) == labels.cpu() for key, corrupted in inputs.items()}


def corruption_errors_of(correct: dict[tuple[str, int], torch.Tensor]) -> dict[tuple[str, int], float]:
    """The error rates `analysis.corruptions.corruption_errors` returns, from `corruption_correct`."""
    return {key: float((~hits).float().mean()) for key, hits in correct.items()}


def auroc_se(auroc: float, positives: int, negatives: int) -> float:
    """Standard error of an AUROC from its sample sizes (Hanley & McNeil 1982, eq. 2):
    SE^2 = (A(1-A) + (n_p - 1)(Q1 - A^2) + (n_n - 1)(Q2 - A^2)) / (n_p n_n), Q1 = A/(2-A), Q2 = 2A^2/(1+A)."""
    a = auroc
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    return max(variance, 0.0) ** 0.5


def binomial_se(proportion: float, count: int) -> float:
    """Standard error of a proportion measured on `count` independent images."""
    return (proportion * (1 - proportion) / count) ** 0.5 if count else float("nan")
