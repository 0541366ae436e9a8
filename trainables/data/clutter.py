"""Procedural "shape in clutter": the harder built-in dataset, which a dense network does not solve.

`shapes` is solved by every network at 32 px, pruned to 94% at random included (issue 14). Here
the class is still exactly shape x colour of one target object, now 7 shapes x 5 colours = 35
classes, and the target is hidden among nuisances a network has to learn to ignore:
- 7 shapes of equal area (so pixel counts carry no shape), two of them close to the circle (the
  hexagon, the ring); the target is rotated at random and its radius varies 2x (0.15-0.30 of the
  side);
- 5 colours, jittered, scaled in brightness and drawn 60-100% opaque over what lies beneath, so
  red, orange and purple come close on a tinted background;
- 1-3 smaller distractors (radius 0.06-0.13), any shape, in any class colour or a neutral one, lie
  beneath it: the class belongs to the largest object, not to any coloured blob;
- half the images have a grey bar across the target (the occluder, hiding up to about half);
- tinted, stronger background textures and pixel noise.
The ground truth explanations are scored against is kept: `masks` are the target's *visible*
pixels (not the distractors, not what the occluder hides); concepts are the target's shape and
colour, `large` (radius above 0.225), the background's texture and darkness, and `occluded`.

OOD split: a held-out colour (yellow) on the seven shapes, labelled as the red class of that
shape, as in `shapes`. Rendered at 2x and average-pooled like `shapes`; the same normalisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .describe import Generated, generated
from .splits import Dataset, ImageSplit
from .shapes import MEAN, OOD_RGB, STD, TEXTURES, balanced, generated_dataset, texture_pattern, uniform

COLOURS = ["red", "green", "blue", "purple", "orange"]
RGB = torch.tensor([[0.90, 0.15, 0.15], [0.15, 0.80, 0.15], [0.15, 0.30, 0.95], [0.65, 0.15, 0.85], [0.95, 0.55, 0.10]])
NEUTRAL_RGB = torch.tensor([[0.95, 0.95, 0.95], [0.05, 0.05, 0.05], [0.55, 0.45, 0.35]])

TARGET_RADIUS, LARGE_ABOVE = (0.15, 0.30), 0.225  # fractions of the image side
DISTRACTOR_RADIUS, MAX_DISTRACTORS = (0.06, 0.13), 3
OPACITY = (0.6, 1.0)  # of the target over what lies beneath it

# Every shape has the area of a circle of radius r (pixel counts carry no shape): square half-side,
# triangle circumradius, cross arm half-length (arms 0.35 of it wide on each side), ring outer
# radius (inner 0.6 of it), hexagon apothem, star outer radius (inner 0.5 of it).
_SQ = math.sqrt(math.pi) / 2
_TRI = math.sqrt(4 * math.pi / (3 * math.sqrt(3)))
_ARM = math.sqrt(math.pi / (8 * 0.35 - 4 * 0.35**2))
_RING = 1 / math.sqrt(1 - 0.6**2)
_HEX = math.sqrt(math.pi / (2 * math.sqrt(3)))
_STAR = math.sqrt(math.pi / (2.5 * math.sin(math.pi / 5)))


def _circle(u, v, r):
    return u**2 + v**2 <= r**2


def _square(u, v, r):
    return torch.maximum(u.abs(), v.abs()) <= _SQ * r


def _triangle(u, v, r):
    h, s3 = _TRI * r / 2, math.sqrt(3) / 2  # equilateral: three half-planes at the inradius
    return (v <= h) & (s3 * u - v / 2 <= h) & (-s3 * u - v / 2 <= h)


def _cross(u, v, r):
    length, width = _ARM * r, 0.35 * _ARM * r
    return ((u.abs() <= length) & (v.abs() <= width)) | ((v.abs() <= length) & (u.abs() <= width))


def _ring(u, v, r):
    distance = u**2 + v**2
    return (distance <= (_RING * r) ** 2) & (distance >= (0.6 * _RING * r) ** 2)


def _hexagon(u, v, r):
    s3 = math.sqrt(3) / 2
    apothem = _HEX * r
    return (v.abs() <= apothem) & ((s3 * u + v / 2).abs() <= apothem) & ((s3 * u - v / 2).abs() <= apothem)


def _star(u, v, r):
    """Five points: the angle folded into one half point, then the side of its edge."""
    sector = 2 * math.pi / 5
    folded = torch.remainder(torch.atan2(u, v) + sector / 2, sector) - sector / 2  # a point straight up
    rho = torch.sqrt(u**2 + v**2)
    x, y = rho * folded.abs().sin(), rho * folded.cos()  # in the half sector right of the point
    tip, inner = _STAR * r, 0.5 * _STAR * r
    ix, iy = inner * math.sin(sector / 2), inner * math.cos(sector / 2)
    return x * (iy - tip) - (y - tip) * ix >= 0  # on the centre's side of the edge from tip to inner corner


# name -> (coverage at (u, v) in the shape's frame for radius r, radius of the circle around it in r)
ALL_SHAPES = {
    "circle": (_circle, 1.0),
    "square": (_square, _SQ * math.sqrt(2)),
    "triangle": (_triangle, _TRI),
    "cross": (_cross, _ARM * math.hypot(1, 0.35)),
    "ring": (_ring, _RING),
    "hexagon": (_hexagon, _HEX / (math.sqrt(3) / 2)),
    "star": (_star, _STAR),
}
SHAPES = list(ALL_SHAPES)
CONCEPT_NAMES = [*SHAPES, *COLOURS, "large", *TEXTURES, "dark_background", "occluded"]
CLASS_NAMES = [f"{c} {s}" for s in SHAPES for c in COLOURS]  # label = len(COLOURS) * shape + colour
CLASS_CONCEPTS = [[s, len(SHAPES) + c] for s in range(len(SHAPES)) for c in range(len(COLOURS))]
_CHUNK = 1024  # images rendered at once (bounds the 2x-resolution buffers)


def _cover(kind: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Coverage (bool, hi-res) of shape `SHAPES[kind]` centred at (dx, dy) = 0, rotated by `angle`."""
    cos, sin = angle.cos(), angle.sin()
    return ALL_SHAPES[SHAPES[kind]][0](dx * cos + dy * sin, -dx * sin + dy * cos, r)


def _draw(canvas: torch.Tensor, kinds: torch.Tensor, cx, cy, r, angle, rgb, x, y, present=None, opacity=None) -> torch.Tensor:
    """Paints one object per image (where `present`, with `opacity`) onto `canvas` (m, 3, 2S, 2S);
    returns its coverage."""
    cover = torch.zeros(canvas.shape[0], *canvas.shape[2:], dtype=torch.bool)
    for kind in range(len(SHAPES)):
        pick = kinds == kind if present is None else (kinds == kind) & present
        i = pick.nonzero()[:, 0]
        if len(i):
            col = lambda t: t[i, None, None]  # noqa: E731
            cover[i] = _cover(kind, x - col(cx), y - col(cy), col(r), col(angle))
    paint = rgb[:, :, None, None] if opacity is None else torch.lerp(canvas, rgb[:, :, None, None], opacity[:, None, None, None])
    canvas[:] = torch.where(cover[:, None], paint, canvas)
    return cover


def generate(n: int, size: int, gen: torch.Generator, ood: bool = False) -> ImageSplit:
    """Render ``n`` images of ``size`` x ``size``; every random draw is made for all images first,
    so the images do not depend on how rendering is chunked."""
    k = len(COLOURS)
    if ood:
        shape = balanced(n, len(SHAPES), gen)
        labels, colour = shape * k, None
        rgb = OOD_RGB.expand(n, 3)
    else:
        labels = balanced(n, len(CLASS_NAMES), gen)
        shape, colour = labels // k, labels % k
        rgb = RGB[colour]
    rgb = ((rgb + uniform(gen, 3 * n, -0.08, 0.08).view(n, 3)) * uniform(gen, n, 0.8, 1.1)[:, None]).clamp(0, 1)

    radius = uniform(gen, n, *TARGET_RADIUS) * size
    bound = torch.tensor([ALL_SHAPES[name][1] for name in SHAPES])[shape] * radius
    cx = bound + torch.rand(n, generator=gen) * (size - 2 * bound)
    cy = bound + torch.rand(n, generator=gen) * (size - 2 * bound)
    angle = torch.rand(n, generator=gen) * 2 * math.pi
    opacity = uniform(gen, n, *OPACITY)

    count = 1 + torch.randint(MAX_DISTRACTORS, (n,), generator=gen)
    d_shape = torch.randint(len(SHAPES), (n, MAX_DISTRACTORS), generator=gen)
    palette = torch.cat([RGB, NEUTRAL_RGB])
    d_rgb = palette[torch.randint(len(palette), (n, MAX_DISTRACTORS), generator=gen)]
    d_radius = uniform(gen, n * MAX_DISTRACTORS, *DISTRACTOR_RADIUS).view(n, -1) * size
    d_xy = torch.rand(n, MAX_DISTRACTORS, 2, generator=gen) * size
    d_angle = torch.rand(n, MAX_DISTRACTORS, generator=gen) * 2 * math.pi

    occluded_bar = torch.rand(n, generator=gen) < 0.5
    bar_angle = torch.rand(n, generator=gen) * math.pi
    bar_offset = uniform(gen, n, -0.6, 0.6) * radius
    bar_half_width = torch.minimum(uniform(gen, n, 0.04, 0.07) * size, 0.4 * radius)  # hides at most ~half
    bar_grey = uniform(gen, n, 0.25, 0.75)

    texture = balanced(n, len(TEXTURES), gen)
    dark = torch.rand(n, generator=gen) < 0.5
    base = torch.where(dark, uniform(gen, n, 0.10, 0.35), uniform(gen, n, 0.55, 0.85))
    tint = uniform(gen, 3 * n, -0.10, 0.10).view(n, 3)
    amp = uniform(gen, n, 0.08, 0.20)
    params = torch.rand(n, 4, generator=gen)
    noise = torch.rand(n, size, size, generator=gen)
    pixel_noise = torch.randn(n, 3, size, size, generator=gen) * 0.03

    coords = (torch.arange(2 * size, dtype=torch.float32) + 0.5) / 2  # hi-res centres in low-res px
    y, x = coords[None, :, None], coords[None, None, :]
    images = torch.empty(n, 3, size, size)
    masks = torch.empty(n, size, size, dtype=torch.bool)
    occluded = torch.zeros(n, dtype=torch.bool)
    for start in range(0, n, _CHUNK):
        c = slice(start, min(start + _CHUNK, n))
        m = c.stop - c.start
        tex = torch.empty(m, 2 * size, 2 * size)
        for kind in range(len(TEXTURES)):
            i = (texture[c] == kind).nonzero()[:, 0]
            tex[i] = texture_pattern(kind, x, y, params[c][i], noise[c][i])
        canvas = ((base[c, None, None] + amp[c, None, None] * tex)[:, None] + tint[c, :, None, None]).clamp(0, 1)
        for slot in range(MAX_DISTRACTORS):
            present = count[c] > slot
            _draw(canvas, d_shape[c, slot], d_xy[c, slot, 0], d_xy[c, slot, 1], d_radius[c, slot],
                  d_angle[c, slot], d_rgb[c, slot], x, y, present)
        target = _draw(canvas, shape[c], cx[c], cy[c], radius[c], angle[c], rgb[c], x, y, opacity=opacity[c])
        normal = torch.stack([bar_angle[c].cos(), bar_angle[c].sin()], 1)[:, :, None, None]
        across = (x - cx[c, None, None]) * normal[:, 0] + (y - cy[c, None, None]) * normal[:, 1]
        bar = ((across - bar_offset[c, None, None]).abs() <= bar_half_width[c, None, None]) & occluded_bar[c, None, None]
        canvas[:] = torch.where(bar[:, None], bar_grey[c, None, None, None], canvas)
        visible = target & ~bar
        occluded[c] = (target & bar).flatten(1).any(1)
        images[c] = F.avg_pool2d(canvas, 2)
        masks[c] = F.avg_pool2d(visible[:, None].float(), 2)[:, 0] > 0.5
    images = (images + pixel_noise).clamp_(0, 1)

    concepts = torch.zeros(n, len(CONCEPT_NAMES), dtype=torch.bool)
    idx, s, c = torch.arange(n), len(SHAPES), len(COLOURS)
    concepts[idx, shape] = True
    if colour is not None:
        concepts[idx, s + colour] = True
    concepts[:, s + c] = radius > LARGE_ABOVE * size
    concepts[idx, s + c + 1 + texture] = True
    concepts[:, -2] = dark
    concepts[:, -1] = occluded
    return ImageSplit(((images - MEAN) / STD).contiguous(), labels.long(), concepts, masks)


def load(spec: Any) -> Dataset:
    if int(spec.image_size) < 16:
        raise ValueError(f"clutter needs image_size >= 16 (its distractors are 1-2 pixels wide at 16), got {spec.image_size}")
    return generated_dataset(spec, "clutter", generate, CLASS_NAMES, CONCEPT_NAMES, CLASS_CONCEPTS)


# Its validation split is generated apart from train (same distribution, its own images).
DATASET = Generated(load, generated(3, len(CLASS_NAMES)), validation_apart=True)
