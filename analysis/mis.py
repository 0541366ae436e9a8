"""Machine/Mechanistic Interpretability Score (MIS; Zimmermann, Klein & Brendel 2024, "Measuring
mechanistic interpretability at scale without humans"), as von Rad & Seuffert use it on pruned
GoogLeNets.

What is implemented. A unit is one channel of `layer_module`'s output, its activation on an image
the spatial mean of that channel (the plain value for a (N, C) output). Images are ranked by it
(stable sort, ties by index). For each of `tasks_per_unit` 2-AFC tasks t:
  - queries: the t-th most activating image q+ and the t-th least activating image q-;
  - references: `references` images drawn (seeded, without replacement) from the next
    2 x `references` most activating images (R+) and, likewise, least activating ones (R-),
    so queries never double as references;
  - the perceptual model answers by similarity: with s = cosine similarity of its features,
    D = [s(q+, R+) - s(q+, R-)] - [s(q-, R+) - s(q-, R-)] (means over references), and the
    probability of the correct answer ("q+ goes with R+") is sigmoid(sharpness * D / spread),
    spread = the standard deviation of D over tasks of random images from the pool (D's chance
    level), so D is read as evidence in units of what chance produces.
MIS of a unit = mean over its tasks; the score = mean over `units` units sampled (seeded) from the
layer's live units. Dead units (constant activation on the pool, e.g. removed filters) have no
most/least activating images and are left out; `mis_units` says how many were scored.

Where it deviates from the paper. The paper's images are ImageNet validation images ranked over
the whole set, its perceptual model is DreamSim, and the sigmoid's sharpness was fitted so that
MIS matches human 2-AFC answers. Here the pool is whatever images the caller passes (a test split
of tens to thousands of images, so "most activating" means within that pool), the sharpness is a
fixed constant applied to D measured in units of its chance spread (which makes the constant
meaningful for any feature space: the default 1.0 reads D as a z-score of evidence, not tuned to
any data), and the perceptual model is pluggable. Like the paper's (von Rad & Seuffert found
high MIS for networks at 0.1% accuracy), this MIS is high for most conv units, random ones
included: on the built-in dataset a Conv-4's units score ~0.99 trained or not, because they key on
colour and brightness, which the perceptual model sees too. Compare rounds by small differences
and by `mis_std`, or lower `sharpness` to spread the values. The default,
`handcrafted` (colour histogram + gradient-orientation histogram + thumbnail, no weights), makes
MIS comparable across the rounds and methods of lth-sweep only, never with the paper's DreamSim
numbers; `dreamsim` (with local weights) is the paper's model, `open_clip` a learned alternative.

Perceptual features depend only on the images: compute them once with `image_features` and pass
them as `features=` to every round's `mis_score`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lth_sweep.analysis.device import model_device


class PerceptualModel(Protocol):
    def features(self, pixels: Tensor) -> Tensor:
        """(N, 3, H, W) pixels in [0, 1] -> (N, D) features; compared by cosine similarity."""
        ...


class HandcraftedFeatures:
    """Weight-free features: a joint RGB histogram (colour), a magnitude-weighted histogram of
    gradient orientations per spatial cell (edges and shape), and a mean-centred thumbnail
    (layout). Each block is unit-normalised, so each weighs equally in the cosine."""

    def __init__(self, colour_bins: int = 4, orientation_bins: int = 8, cells: int = 2, thumbnail: int = 4):
        self.colour_bins, self.orientation_bins = colour_bins, orientation_bins
        self.cells, self.thumbnail = cells, thumbnail

    def features(self, pixels: Tensor) -> Tensor:
        x = pixels.float().clamp(0, 1)
        n = x.shape[0]
        bins = self.colour_bins
        q = (x * bins).long().clamp(max=bins - 1)
        joint = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
        colour = F.one_hot(joint.reshape(n, -1), bins**3).float().mean(1).sqrt()

        grey = x.mean(1, keepdim=True)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        gx = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), sobel[None, None])
        gy = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), sobel.T[None, None])
        magnitude = (gx**2 + gy**2).sqrt()
        angle = torch.atan2(gy, gx) % math.pi  # unsigned orientation
        index = (angle / math.pi * self.orientation_bins).long().clamp(max=self.orientation_bins - 1)
        votes = F.one_hot(index[:, 0], self.orientation_bins).permute(0, 3, 1, 2) * magnitude
        orientation = F.adaptive_avg_pool2d(votes, self.cells).reshape(n, -1)

        thumb = F.adaptive_avg_pool2d(x, self.thumbnail).reshape(n, -1)
        thumb = thumb - thumb.mean(1, keepdim=True)
        blocks = [F.normalize(block, dim=1) for block in (colour, orientation, thumb)]
        return torch.cat(blocks, 1) / math.sqrt(len(blocks))


class OpenClipFeatures:
    """Image embeddings of an open_clip model. `pretrained` is a local checkpoint file or None
    (random weights, for tests); pretrained tags and hf-hub names would download and are refused."""

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | None = None):
        import open_clip

        if ":" in model_name:
            raise ValueError(f"open_clip model {model_name!r}: schemas such as hf-hub: download; use a config name")
        if pretrained is not None and not Path(pretrained).expanduser().is_file():
            raise FileNotFoundError(
                f"open_clip weights must be a local file (nothing is downloaded), no such file: {pretrained}"
            )
        pretrained = None if pretrained is None else str(Path(pretrained).expanduser().resolve())
        self.model = open_clip.create_model(
            model_name, pretrained=pretrained, pretrained_image=False, pretrained_text=False
        ).eval()
        config = open_clip.get_model_preprocess_cfg(self.model)
        size = config.get("size", self.model.visual.image_size)
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.mean = torch.tensor(config.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        self.std = torch.tensor(config.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)

    @torch.no_grad()
    def features(self, pixels: Tensor) -> Tensor:
        x = F.interpolate(pixels.float(), size=self.size, mode="bicubic", align_corners=False).clamp(0, 1)
        return self.model.encode_image((x - self.mean) / self.std).float()


class DreamSimFeatures:
    """DreamSim (Fu et al. 2023) embeddings, the paper's perceptual model. Needs the `dreamsim`
    package and its checkpoints already in `weights_dir` (DreamSim would download missing ones)."""

    def __init__(self, weights_dir: str | None = None, dreamsim_type: str = "ensemble"):
        try:
            from dreamsim import dreamsim
        except ImportError as error:
            raise ImportError(
                "the 'dreamsim' perceptual model needs the dreamsim package (pip install dreamsim) and "
                "weights_dir=<local directory holding the DreamSim checkpoints>; nothing is downloaded"
            ) from error
        directory = Path(weights_dir).expanduser() if weights_dir else None
        if directory is None or not directory.is_dir() or not any(directory.iterdir()):
            raise FileNotFoundError(
                f"dreamsim needs weights_dir=<local directory holding its checkpoints>; got {weights_dir!r}"
            )
        self.model, _ = dreamsim(pretrained=True, cache_dir=str(directory), device="cpu", dreamsim_type=dreamsim_type)
        self.model.eval()

    @torch.no_grad()
    def features(self, pixels: Tensor) -> Tensor:
        x = F.interpolate(pixels.float(), size=(224, 224), mode="bicubic", align_corners=False).clamp(0, 1)
        return self.model.embed(x).float()


PERCEPTUAL_MODELS: dict[str, type] = {
    "handcrafted": HandcraftedFeatures,
    "open_clip": OpenClipFeatures,
    "dreamsim": DreamSimFeatures,
}


def build_perceptual(name: str, **options) -> PerceptualModel:
    try:
        factory = PERCEPTUAL_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown perceptual model {name!r}; known: {', '.join(sorted(PERCEPTUAL_MODELS))}") from None
    return factory(**options)


@torch.no_grad()
def image_features(perceptual: PerceptualModel, pixels: Tensor, batch_size: int = 256) -> Tensor:
    """Features (N, D) of pixel images in [0, 1]; grey images are repeated to three channels."""
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    if pixels.shape[1] != 3:
        raise ValueError(f"perceptual models take 1 or 3 channels, got {pixels.shape[1]}")
    chunks = [perceptual.features(pixels[i : i + batch_size]) for i in range(0, pixels.shape[0], batch_size)]
    return torch.cat(chunks).float()


@torch.no_grad()
def unit_activations(model: nn.Module, layer_module: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """(N, C) on the CPU: each channel of `layer_module`'s output, averaged over space, computed
    on the model's device (`analysis.device`)."""
    device = model_device(model)
    captured: list[Tensor] = []
    handle = layer_module.register_forward_hook(lambda _m, _i, output: captured.append(output.detach()))
    was_training = model.training
    model.eval()
    try:
        rows = []
        for start in range(0, images.shape[0], batch_size):
            captured.clear()
            model(images[start : start + batch_size].to(device))
            if not captured:
                raise ValueError(f"layer_module {type(layer_module).__name__} is not used by the model's forward")
            output = captured[-1]
            rows.append((output.flatten(2).mean(2) if output.dim() > 2 else output).cpu())
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(rows).double()


def _decision(similarity: Tensor, queries: Tensor, ref_pos: Tensor, ref_neg: Tensor) -> Tensor:
    """D per task: how much more q+ than q- leans towards R+ rather than R- (batched over tasks)."""
    rows = similarity[queries]  # (T, 2, N)
    pos = rows.gather(2, ref_pos[:, None].expand(-1, 2, -1)).mean(2)
    neg = rows.gather(2, ref_neg[:, None].expand(-1, 2, -1)).mean(2)
    leaning = pos - neg
    return leaning[:, 0] - leaning[:, 1]


def _chance_spread(similarity: Tensor, references: int, generator: torch.Generator, tasks: int = 2000) -> float:
    """Standard deviation of D over tasks built from random images: the evidence a unit with no
    preference would produce by chance."""
    n = similarity.shape[0]
    picks = torch.stack([torch.randperm(n, generator=generator)[: 2 + 2 * references] for _ in range(tasks)])
    d = _decision(similarity, picks[:, :2], picks[:, 2 : 2 + references], picks[:, 2 + references :])
    return float(d.std()) or 1.0


def mis_units(
    model: nn.Module,
    layer_module: nn.Module,
    images: Tensor,
    pixels: Tensor | None,
    perceptual: PerceptualModel | None,
    *,
    units: int = 8,
    tasks_per_unit: int = 10,
    references: int = 9,
    sharpness: float = 1.0,
    seed: int = 0,
    features: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(channels, scores): the live units sampled (seeded) and the MIS of each, as `mis_score`
    describes; both empty when no unit is live. The scores are the units the sampling error of
    the MIS resamples, the channels what pairs them with another network's."""
    n = images.shape[0]
    pool = 2 * references
    if n < 2 * (tasks_per_unit + pool):
        raise ValueError(
            f"MIS with {tasks_per_unit} tasks and {references} references per side needs at least "
            f"{2 * (tasks_per_unit + pool)} images, got {n}"
        )
    if features is None:
        if perceptual is None or pixels is None:
            raise ValueError("mis_score needs either features= or both pixels and a perceptual model")
        features = image_features(perceptual, pixels)
    if features.shape[0] != n:
        raise ValueError(f"{features.shape[0]} feature rows for {n} images")

    unit = F.normalize(features.double(), dim=1)
    similarity = unit @ unit.T
    spread = _chance_spread(similarity, references, torch.Generator().manual_seed(seed))

    activations = unit_activations(model, layer_module, images)
    live = ((activations.max(0).values - activations.min(0).values) > 1e-8).nonzero()[:, 0]
    if live.numel() == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    chosen = live[torch.randperm(live.numel(), generator=generator)[:units]]

    scores = []
    for channel in chosen.tolist():
        column = activations[:, channel]
        top = torch.sort(column, descending=True, stable=True).indices[: tasks_per_unit + pool]
        bottom = torch.sort(column, stable=True).indices[: tasks_per_unit + pool]
        draws = [torch.randperm(pool, generator=generator)[:references] for _ in range(2 * tasks_per_unit)]
        ref_pos = top[tasks_per_unit + torch.stack(draws[:tasks_per_unit])]
        ref_neg = bottom[tasks_per_unit + torch.stack(draws[tasks_per_unit:])]
        queries = torch.stack([top[:tasks_per_unit], bottom[:tasks_per_unit]], 1)
        evidence = _decision(similarity, queries, ref_pos, ref_neg) / spread
        scores.append(torch.sigmoid(sharpness * evidence).mean())
    return chosen, torch.stack(scores)


def mis_score(*args, **options) -> dict[str, float]:
    """`mis` (mean over units), `mis_std` (spread over units) and `mis_units` (units scored).
    `images` are the model's inputs, `pixels` the same images in [0, 1] for the perceptual model;
    or pass their `features` (from `image_features`) and `pixels=perceptual=None`. The pool is
    compared all-pairs (N x N), so keep it to a few thousand images. Arguments as `mis_units`."""
    _, per_unit = mis_units(*args, **options)
    if per_unit.numel() == 0:
        return {"mis": float("nan"), "mis_std": float("nan"), "mis_units": 0.0}
    return {
        "mis": float(per_unit.mean()),
        "mis_std": float(per_unit.std()) if per_unit.numel() > 1 else 0.0,
        "mis_units": float(per_unit.numel()),
    }


__all__ = [
    "PERCEPTUAL_MODELS",
    "DreamSimFeatures",
    "HandcraftedFeatures",
    "OpenClipFeatures",
    "PerceptualModel",
    "build_perceptual",
    "image_features",
    "mis_score",
    "mis_units",
    "unit_activations",
]
