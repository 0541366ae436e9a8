"""Procedural "coloured shape on a textured background" dataset.

Its purpose is ground truth for explanations: the class is *exactly*
shape x colour, while size, position, background texture and brightness and a
small colour jitter are drawn independently of the class. Every image therefore
comes with its binary concept vector and the object's pixel mask, so an
explanation method can be scored against what truly defines the class.
Nuisance ranges (fractions of the image side): small radius 0.19-0.24, large
0.28-0.35 (equal area across shapes); dark background grey 0.15-0.35, light
0.60-0.80; texture amplitude <= 0.12, well below the object's colour contrast.

OOD split: the same generator with a held-out colour (yellow) on the three
shapes. Its label is the *red* class of that shape ("red circle" for a yellow
circle), i.e. "right shape, wrong colour"; its concept vector has none of
red/green/blue set.

Everything is rendered at 2x resolution and average-pooled (antialiasing);
the mask is the pooled coverage > 0.5. Pixel values are normalised with fixed
constants (mean 0.5, std 0.25) so they never depend on the drawn data.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .describe import Generated, generated
from .splits import Dataset, ImageSplit, make_generator

SHAPES = ["circle", "square", "triangle"]
COLOURS = ["red", "green", "blue"]
TEXTURES = ["stripes", "dots", "noise"]
CONCEPT_NAMES = [*SHAPES, *COLOURS, "large", *TEXTURES, "dark_background"]
CLASS_NAMES = [f"{c} {s}" for s in SHAPES for c in COLOURS]  # label = 3*shape + colour
CLASS_CONCEPTS = [[s, 3 + c] for s in range(3) for c in range(3)]

# Saturated object colours against a greyish background: colour contrast
# (>= ~0.5 in some channel) is well above the texture amplitude (<= 0.12).
RGB = torch.tensor([[0.90, 0.15, 0.15], [0.15, 0.80, 0.15], [0.15, 0.30, 0.95]])
OOD_RGB = torch.tensor([0.90, 0.85, 0.10])  # yellow
MEAN, STD = 0.5, 0.25

# Equal areas across shapes so that pixel count carries no shape information:
# square half-side and triangle circumradius relative to the circle radius.
_SQ = math.sqrt(math.pi) / 2
_TRI = math.sqrt(4 * math.pi / (3 * math.sqrt(3)))
# Extent from the centre per shape: (half-width, up, down), in radii.
_EXTENT = torch.tensor([[1.0, 1.0, 1.0], [_SQ, _SQ, _SQ], [_TRI * math.sqrt(3) / 2, _TRI, _TRI / 2]])


def uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def balanced(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """Cycle 0..k-1 then shuffle: class counts differ by at most one."""
    return (torch.arange(n) % k)[torch.randperm(n, generator=gen)]


def texture_pattern(kind: int, x: torch.Tensor, y: torch.Tensor, p: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Zero-centred texture in [-1, 1], (m, 2S, 2S). ``p``: (m, 4) uniforms for angle/frequency/phases."""
    if kind == 2:  # noise: i.i.d. per low-res pixel, nearest-upsampled
        return (noise * 2 - 1).repeat_interleave(2, 1).repeat_interleave(2, 2)
    theta, freq, pu, pv = (p[:, i, None, None] for i in range(4))
    theta = theta * math.pi
    u = x * theta.cos() + y * theta.sin()
    if kind == 0:  # stripes, period 3.3-6.7 px
        return torch.sin(2 * math.pi * ((0.15 + 0.15 * freq) * u + pu))
    v = -x * theta.sin() + y * theta.cos()  # dots on a rotated lattice, period 2.9-5 px
    freq = 0.20 + 0.15 * freq
    du = torch.frac(u * freq + pu + 100) - 0.5
    dv = torch.frac(v * freq + pv + 100) - 0.5
    return ((du**2 + dv**2) < 0.09).float() * 2 - 1


def _shape(kind: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Object coverage (bool) at hi-res for one shape kind; equal areas for equal r."""
    if kind == 0:
        return dx**2 + dy**2 <= r**2
    if kind == 1:
        return torch.maximum(dx.abs(), dy.abs()) <= _SQ * r
    h = _TRI * r / 2  # equilateral, apex up: three half-planes at the inradius
    s3 = math.sqrt(3) / 2
    return (dy <= h) & (s3 * dx - dy / 2 <= h) & (-s3 * dx - dy / 2 <= h)


def generate(n: int, size: int, gen: torch.Generator, ood: bool = False) -> ImageSplit:
    """Render ``n`` images of ``size`` x ``size``, all at once (loops only over kinds)."""
    hi = 2 * size
    coords = (torch.arange(hi, dtype=torch.float32) + 0.5) / 2  # hi-res centres in low-res px
    y, x = coords[None, :, None], coords[None, None, :]

    if ood:
        shape = balanced(n, 3, gen)
        labels, colour = shape * 3, None  # labelled as the red class of the shape
        rgb = OOD_RGB.expand(n, 3)
    else:
        labels = balanced(n, 9, gen)
        shape, colour = labels // 3, labels % 3
        rgb = RGB[colour]
    rgb = (rgb + uniform(gen, 3 * n, -0.06, 0.06).view(n, 3)).clamp(0, 1)

    # Nuisances: size (small/large bins, continuous inside), position, background.
    large = torch.rand(n, generator=gen) < 0.5
    radius = torch.where(large, uniform(gen, n, 0.28, 0.35), uniform(gen, n, 0.19, 0.24)) * size
    ext = _EXTENT[shape] * radius[:, None]
    cx = ext[:, 0] + torch.rand(n, generator=gen) * (size - 2 * ext[:, 0])
    cy = ext[:, 1] + torch.rand(n, generator=gen) * (size - ext[:, 1] - ext[:, 2])

    texture = balanced(n, 3, gen)
    dark = torch.rand(n, generator=gen) < 0.5
    base = torch.where(dark, uniform(gen, n, 0.15, 0.35), uniform(gen, n, 0.60, 0.80))
    tint = uniform(gen, 3 * n, -0.04, 0.04).view(n, 3)
    amp = uniform(gen, n, 0.06, 0.12)[:, None, None]
    params = torch.rand(n, 4, generator=gen)
    noise = torch.rand(n, size, size, generator=gen)

    # Each kind is rendered only on its own images (3x less work than masking).
    inside = torch.empty(n, hi, hi)
    tex = torch.empty(n, hi, hi)
    for kind in range(3):
        i = (shape == kind).nonzero()[:, 0]
        dx, dy = x - cx[i, None, None], y - cy[i, None, None]
        inside[i] = _shape(kind, dx, dy, radius[i, None, None]).float()
        i = (texture == kind).nonzero()[:, 0]
        tex[i] = texture_pattern(kind, x, y, params[i], noise[i])
    bg = (base[:, None, None] + amp * tex)[:, None] + tint[:, :, None, None]

    cover = inside[:, None]
    img_hi = torch.lerp(bg, rgb[:, :, None, None], cover).clamp_(0, 1)
    images = F.avg_pool2d(img_hi, 2)
    masks = F.avg_pool2d(cover, 2)[:, 0] > 0.5

    concepts = torch.zeros(n, len(CONCEPT_NAMES), dtype=torch.bool)
    idx = torch.arange(n)
    concepts[idx, shape] = True
    if colour is not None:
        concepts[idx, 3 + colour] = True
    concepts[:, 6] = large
    concepts[idx, 7 + texture] = True
    concepts[:, 10] = dark
    return ImageSplit(((images - MEAN) / STD).contiguous(), labels.long(), concepts, masks)


def load(spec: Any) -> Dataset:
    if int(spec.image_size) < 8:
        raise ValueError(f"shapes needs image_size >= 8, got {spec.image_size}")
    return generated_dataset(spec, "shapes", generate, CLASS_NAMES, CONCEPT_NAMES, CLASS_CONCEPTS)


def generated_dataset(spec: Any, name: str, render, class_names, concept_names, class_concepts) -> Dataset:
    """A generated dataset's splits, `render(n, size, generator, ood)` each with its own generator
    derived from ``spec.seed`` and the split's name.

    ``ood_size <= 0`` gives ``ood=None``; a ``validation_size`` > 0 (optional attribute) gives a
    validation split generated apart, so asking for it changes neither train nor test.
    """
    size, seed = int(spec.image_size), int(spec.seed)
    validation_size = int(getattr(spec, "validation_size", 0) or 0)

    def split(n: int, split_name: str, ood: bool = False) -> ImageSplit:
        return render(int(n), size, make_generator(seed, f"{name}/{split_name}"), ood)

    return Dataset(
        name=name,
        train=split(spec.train_size, "train"),
        test=split(spec.test_size, "test"),
        ood=split(spec.ood_size, "ood", True) if int(spec.ood_size) > 0 else None,
        validation=split(validation_size, "validation") if validation_size > 0 else None,
        class_names=list(class_names),
        concept_names=list(concept_names),
        class_concepts=[list(c) for c in class_concepts],
        mean=(MEAN,) * 3,
        std=(STD,) * 3,
    )


# Its validation split is generated apart from train (same distribution, its own images).
DATASET = Generated(load, generated(3, len(CLASS_NAMES)), validation_apart=True)
