"""Common corruptions (Hendrycks & Dietterich 2019) on batches of pixel images, and the mean
corruption error (mCE) against a reference network.

Every corruption is `fn(pixels, severity, generator) -> pixels`: (N, C, H, W) float in [0, 1],
C = 1 or 3, severity 1..5, same shape and range out, on the pixels' device. Random ones draw only
from `generator`, a CPU generator, and move the draws to the pixels' device, so a seed fixes the
result on every device. Parameters are those of Hendrycks' CIFAR-10-C script
(`ImageNet-C/create_c/make_cifar_c.py`, 32 px images), not ImageNet-C's, because our images are
CIFAR-sized or smaller. Spatial parameters (blur sigmas, defocus radii) are in CIFAR pixels and
scaled by H/32, so a 16 px image gets the blur a 32 px one would show at half the resolution;
pixelate is already relative to the size and JPEG works on 8x8 blocks at any size. Departures:
defocus blur uses an area-antialiased disk (the reference's aliased disk is a single pixel below
radius 1, which after scaling would make severity 4 milder than 1); pixelate is box down-sampling
then nearest up-sampling (Pillow's BOX up-sampling at these sizes is nearly nearest); results are
not quantised to 8 bits except by JPEG.
"""
from __future__ import annotations

import hashlib
import io
import math
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lth_sweep.analysis.robustness import Transform, predict_logits

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 32  # CIFAR-10-C


def _level(values: tuple, severity: int):
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be in 1..5, got {severity}")
    return values[severity - 1]


def _spatial_scale(pixels: torch.Tensor) -> float:
    return pixels.shape[-2] / REFERENCE_SIZE


def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.04, 0.06, 0.08, 0.09, 0.10), severity)
    return (x + c * _draw(torch.randn, x, generator)).clamp(0, 1)


def _draw(sampler, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`sampler(x.shape)` from the CPU `generator`, as x's dtype on x's device."""
    return sampler(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((500, 250, 100, 75, 50), severity)
    counts = torch.poisson((x * c).cpu(), generator=generator).to(x.device)  # the generator is the CPU's
    return (counts / c).clamp(0, 1)


def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: each value (per channel, as skimage's 's&p') is replaced with probability
    c, by 1 or 0 with equal odds."""
    c = _level((0.01, 0.02, 0.03, 0.05, 0.07), severity)
    hit = torch.rand(x.shape, generator=generator).to(x.device) < c
    salt = torch.rand(x.shape, generator=generator).to(x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def speckle_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.06, 0.10, 0.12, 0.16, 0.20), severity)
    return (x + x * c * _draw(torch.randn, x, generator)).clamp(0, 1)


def _filter(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Same 2-D kernel on every channel (depthwise), padded with `mode`."""
    channels, k = x.shape[1], kernel.shape[-1]
    pad = k // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    weight = kernel.to(x.device, x.dtype).expand(channels, 1, k, k)
    return F.conv2d(padded, weight, groups=channels)


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = max(1, int(truncate * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """skimage.filters.gaussian as in the reference: truncate 4 sigma, edge pixels repeated."""
    sigma = _level((0.4, 0.6, 0.7, 0.8, 1.0), severity) * _spatial_scale(x)
    return _filter(x, _gaussian_kernel(sigma), "replicate").clamp(0, 1)


def _disk_kernel(radius: float, alias_blur: float, supersample: int = 16) -> torch.Tensor:
    """Normalised disk of `radius` pixels, each pixel weighted by the share of its area inside
    (supersampled), then blurred by a Gaussian of sigma `alias_blur` as the reference does."""
    half = int(math.ceil(radius + 3 * alias_blur)) + 1
    offsets = (torch.arange(supersample, dtype=torch.float64) + 0.5) / supersample - 0.5
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    fine = (grid[:, None] + offsets[None, :]).flatten()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2 <= radius**2).double()
    size = len(grid)
    area = inside.view(size, supersample, size, supersample).mean((1, 3))
    if area.sum() == 0:  # radius far below a pixel: a point
        area[half, half] = 1
    disk = (area / area.sum())[None, None]
    blur = _gaussian_kernel(alias_blur, truncate=3.0)
    pad = blur.shape[-1] // 2
    return F.conv2d(F.pad(disk, (pad,) * 4), blur)


def defocus_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    radius, alias = _level(((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)), severity)
    scale = _spatial_scale(x)
    kernel = _disk_kernel(radius * scale, alias * scale)
    mode = "reflect" if kernel.shape[-1] // 2 < min(x.shape[-2:]) else "replicate"
    return _filter(x, kernel, mode).clamp(0, 1)  # cv2.filter2D's default border: reflect-101


def contrast(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.75, 0.5, 0.4, 0.3, 0.15), severity)
    means = x.mean((2, 3), keepdim=True)  # per image and channel, as the reference
    return ((x - means) * c + means).clamp(0, 1)


def brightness(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """The reference adds c to HSV's value V = max over channels (clipped to 1) at constant hue and
    saturation, which is scaling the pixel by V'/V (a black pixel becomes grey V')."""
    c = _level((0.05, 0.10, 0.15, 0.20, 0.30), severity)
    value = x.amax(1, keepdim=True)
    lifted = (value + c).clamp(0, 1)
    return torch.where(value > 0, x * lifted / value.clamp_min(1e-12), lifted.expand_as(x)).clamp(0, 1)


def saturate(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation S <- clip(S * a + b) at constant hue and value: each channel moves along
    V - (V - x) * S'/S. Identity on grey images (one channel, or S = 0 with b = 0)."""
    a, b = _level(((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)), severity)
    if x.shape[1] == 1:
        return x.clone()
    value = x.amax(1, keepdim=True)
    low = x.amin(1, keepdim=True)
    saturation = torch.where(value > 0, (value - low) / value.clamp_min(1e-12), torch.zeros_like(value))
    target = (saturation * a + b).clamp(0, 1)
    # Grey pixels have no hue; skimage's hsv2rgb then treats hue as 0 (red).
    ratio = torch.where(saturation > 0, target / saturation.clamp_min(1e-12), torch.zeros_like(value))
    out = value - (value - x) * ratio
    grey = (saturation == 0) & (target > 0)
    if grey.any():
        red = torch.cat([value, value * (1 - target), value * (1 - target)], 1)
        out = torch.where(grey, red, out)
    return out.clamp(0, 1)


def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.95, 0.9, 0.85, 0.75, 0.65), severity)
    h, w = x.shape[-2:]
    small = F.adaptive_avg_pool2d(x, (max(1, int(h * c)), max(1, int(w * c))))
    return F.interpolate(small, size=(h, w), mode="nearest")


def jpeg_compression(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Pillow's JPEG encoder at the reference qualities, one image at a time."""
    quality = _level((80, 65, 58, 50, 40), severity)
    array = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for image in array:
        pil = Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image, "RGB")
        buffer = io.BytesIO()
        pil.save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer).convert(pil.mode), dtype=np.uint8)
        out.append(decoded.reshape(image.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "defocus_blur": defocus_blur,
    "contrast": contrast,
    "brightness": brightness,
    "saturate": saturate,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}


def corruption_seed(seed: int, name: str, severity: int) -> int:
    """One stream per (seed, corruption, severity): a result does not depend on which other
    corruptions ran, or in what order."""
    digest = hashlib.sha256(f"{int(seed)}:{name}:{int(severity)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def corrupt(pixels: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    try:
        fn = CORRUPTIONS[name]
    except KeyError:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}") from None
    return fn(pixels, severity, torch.Generator().manual_seed(corruption_seed(seed, name, severity)))


def corrupted_inputs(
    images: torch.Tensor,
    to_pixels: Transform,
    from_pixels: Transform,
    names: Iterable[str] | None = None,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
) -> dict[tuple[str, int], torch.Tensor]:
    """(corruption, severity) -> the corrupted, normalised `images`. A function of the images and
    the seed only, so an analysis actor computes it once for the fixed sample and reuses it."""
    pixels = to_pixels(images)
    return {
        (name, int(severity)): from_pixels(corrupt(pixels, name, severity, seed))
        for name in (CORRUPTIONS if names is None else names)
        for severity in severities
    }


def corruption_errors(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    to_pixels: Transform,
    from_pixels: Transform,
    names: Iterable[str] | None = None,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 1000,
    inputs: dict[tuple[str, int], torch.Tensor] | None = None,
) -> dict[tuple[str, int], float]:
    """Top-1 error of `model` (eval mode) on every (corruption, severity) of the normalised
    `images`; `names` defaults to all of CORRUPTIONS. Same seed => same corrupted images, so a
    sparse network and its dense reference see exactly the same inputs. `inputs`: those images,
    from `corrupted_inputs`, when already at hand."""
    if inputs is None:
        inputs = corrupted_inputs(images, to_pixels, from_pixels, names, severities, seed)
    errors = {}
    for key, corrupted in inputs.items():
        predicted = predict_logits(model, corrupted, batch_size).argmax(1)
        errors[key] = float((predicted != labels.cpu()).float().mean())
    return errors


#: Fewer trunk mistakes than this (pooled over every corruption and severity) leave the mCE
#: undefined. The mCE divides by a count of mistakes D; as a Poisson count its relative standard
#: error is about 1/sqrt(D) and E[1/D] exceeds 1/E[D] by about 1/D, so at D = 10 the denominator
#: alone carries ~32% noise and ~10% bias: any fewer and the ratio says more about which images
#: the sample drew than about the network.
MIN_TRUNK_MISTAKES = 10


def mistakes(errors: dict[tuple[str, int], float], images: int) -> int:
    """Misclassified (image, corruption, severity) evaluations behind `errors`, the error rates of
    `corruption_errors` on a sample of `images` images."""
    return round(sum(errors.values()) * images)


def corruption_ces(errors: dict[tuple[str, int], float], reference_errors: dict[tuple[str, int], float]) -> dict[str, float]:
    """Hendrycks & Dietterich's (2019) per-corruption error, CE_c = sum_s E(c, s) / sum_s E_ref(c, s),
    for every corruption c among the (corruption, severity) keys of `errors` (the reference must have
    them all); NaN where the reference never errs on c. A diagnostic: on the small samples an analysis
    uses a strong trunk makes one or two mistakes per corruption, so these ratios are noisy, and
    `mce` does not average them."""
    _check_reference(errors, reference_errors)
    ces = {}
    for name in sorted({name for name, _ in errors}):
        keys = [key for key in errors if key[0] == name]
        ces[name] = _ratio(sum(errors[k] for k in keys), sum(reference_errors[k] for k in keys))
    return ces


def _check_reference(errors: dict, reference_errors: dict) -> None:
    missing = sorted(set(errors) - set(reference_errors))
    if missing:
        raise KeyError(f"reference errors lack {missing}")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def mce(errors: dict[tuple[str, int], float], reference_errors: dict[tuple[str, int], float]) -> float:
    """Pooled mean corruption error: sum_{c,s} E(c, s) / sum_{c,s} E_ref(c, s) over every
    (corruption, severity) key of `errors`; NaN when the reference never errs.

    Hendrycks & Dietterich (2019, ImageNet-C metrics) define mCE = mean_c CE_c with CE_c = sum_s E(c, s) /
    sum_s E_AlexNet(c, s), and normalise by AlexNet. Two departures:
    - the reference is the lineage's dense trunk, so the trunk's own mCE is exactly 1 and < 1 means
      "more robust than its dense parent";
    - one pooled denominator instead of one per corruption. This is the mean of the CE_c weighted
      by the trunk's errors on c. The paper's per-corruption ratios rest on thousands of ImageNet-C
      images; on an analysis sample (64 images in the quickstart) the trunk makes one or two
      mistakes per corruption, each ratio swings by a factor of two on a single image, and a
      corruption the trunk never errs on has no ratio at all, so different seeds averaged different
      corruption sets. Pooled, every corruption always counts (a network failing where the trunk
      never does raises the mCE instead of vanishing from it) and the one denominator holds every
      trunk mistake. Callers should leave the mCE undefined when the trunk made fewer than
      MIN_TRUNK_MISTAKES mistakes (see `mistakes`).
    """
    _check_reference(errors, reference_errors)
    return _ratio(sum(errors.values()), sum(reference_errors[k] for k in errors))
