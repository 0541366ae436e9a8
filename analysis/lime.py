"""LIME fidelity and stability (Chen et al., "You are caught stealing my winning lottery ticket!
... win everything", after Ribeiro et al. 2016, Plumb et al. 2020).

For each image x the explained output f is the softmax probability of its true class. x is cut
into SLIC superpixels; an interpretable sample z' in {0,1}^K keeps the superpixels where z'=1 and
sets the others to 0 in normalised space (the dataset's mean colour). The surrogate is fit as in
the reference `lime_image`: z' ~ Bernoulli(0.5) per superpixel (first sample all ones), weights
sqrt(exp(-d^2 / 0.25^2)) with d the cosine distance of z' to all ones, ridge regression
(alpha=1), through captum's `Lime`.

- fidelity = E_x E_{z'~N_x} (g(z') - f(x'(z')))^2, on fresh samples z' drawn from the same
  neighbourhood distribution but held out from the fit (unweighted, as in the definition).
- stability = E_x mean_k (e(x)_k - e(x~)_k)^2, e = the surrogate's weights, x~ = x plus Gaussian
  noise (`noise` x the images' unit scale), explained with x's superpixels and the *same* z'
  samples, so the score measures how the explanation moves rather than LIME's sampling noise.

Lower is better for both. Everything is seeded: same inputs and seed => same numbers. The model
runs on its own device (`analysis.device`); images, superpixels, the samples z' and the noise stay
on the CPU (drawn from a CPU generator), and probabilities come back there for the ridge fits.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import Lime
from torch import Tensor, nn

from lth_sweep.analysis.device import model_device

KERNEL_WIDTH = 0.25  # lime_image's default


def superpixels(image: Tensor, segments: int = 16) -> Tensor:
    """SLIC segments of one image (C, H, W), labelled 0..K-1 as a long (H, W) tensor. The image is
    min-max scaled first, so any normalisation works; grey images are segmented on intensity."""
    from skimage.segmentation import slic

    x = image.detach().double()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-12)
    if x.shape[0] == 3:
        labels = slic(x.permute(1, 2, 0).numpy(), n_segments=segments, compactness=10, start_label=0, channel_axis=-1)
    else:
        labels = slic(x.mean(0).numpy(), n_segments=segments, compactness=0.1, start_label=0, channel_axis=None)
    _, dense = np.unique(labels, return_inverse=True)
    return torch.from_numpy(dense.reshape(labels.shape)).long()


def _kernel(_original, _perturbed, z: Tensor, **_) -> float:
    cos = math.sqrt(int(z.sum()) / z.numel())  # cosine of a binary z with all ones
    return math.sqrt(math.exp(-((1 - cos) ** 2) / KERNEL_WIDTH**2))


def _fit(probability, image: Tensor, target: int, mask: Tensor, z: Tensor) -> tuple[Tensor, float]:
    """Surrogate weights (K,) and intercept for `image`, fit on the given samples `z` (S, K)."""

    def perturb(_inputs, **_):
        yield from (row[None] for row in z)

    lime = Lime(probability, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_kernel, perturb_func=perturb)
    weights = lime.attribute(
        image[None],
        target=target,
        baselines=0.0,
        feature_mask=mask[None, None].expand(1, image.shape[0], *mask.shape),
        n_samples=z.shape[0],
        perturbations_per_eval=z.shape[0],
        return_input_shape=False,
    )
    return weights.reshape(-1).double(), float(lime.interpretable_model.bias())


def _samples(n: int, k: int, generator: torch.Generator, include_full: bool) -> Tensor:
    z = (torch.rand(n, k, generator=generator) < 0.5).long()
    if include_full:
        z[0] = 1
    return z


def lime_per_image(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    samples: int = 100,
    held_out: int = 100,
    images_limit: int = 32,
    segments: int = 16,
    noise: float = 0.05,
    seed: int = 0,
) -> dict[str, Tensor]:
    """`lime_fidelity` and `lime_stability` of each of the first `images_limit` images, (n,)
    float64: the units their sampling errors resample."""
    if samples < 2 or held_out < 1:
        raise ValueError(f"need samples >= 2 and held_out >= 1, got {samples} and {held_out}")
    targets = torch.as_tensor(targets, dtype=torch.long)
    n = min(images_limit, images.shape[0])
    if n == 0:
        return {"lime_fidelity": torch.zeros(0, dtype=torch.float64), "lime_stability": torch.zeros(0, dtype=torch.float64)}
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    was_training = model.training
    model.eval()

    def probability(x: Tensor) -> Tensor:
        return F.softmax(model(x.to(device)), dim=1).to(x.device)

    fidelity, stability = [], []
    try:
        with torch.no_grad():
            for i in range(n):
                image, target = images[i].detach().cpu(), int(targets[i])
                mask = superpixels(image, segments)
                k = int(mask.max()) + 1
                z = _samples(samples, k, generator, include_full=True)
                weights, bias = _fit(probability, image, target, mask, z)

                z_test = _samples(held_out, k, generator, include_full=False)
                keep = z_test[:, mask].unsqueeze(1).to(image.dtype)  # (S, 1, H, W)
                truth = probability(image[None] * keep)[:, target].double()
                fidelity.append(((z_test.double() @ weights + bias - truth) ** 2).mean())

                nudged = image + noise * torch.randn(image.shape, generator=generator, dtype=image.dtype)
                nudged_weights, _ = _fit(probability, nudged, target, mask, z)
                stability.append(((weights - nudged_weights) ** 2).mean())
    finally:
        model.train(was_training)
    return {"lime_fidelity": torch.stack(fidelity), "lime_stability": torch.stack(stability)}


def lime_scores(model: nn.Module, images: Tensor, targets: Tensor, **options) -> dict[str, float]:
    """`lime_fidelity` and `lime_stability` averaged over the first `images_limit` images (NaN
    for none); `options` as `lime_per_image`."""
    return {key: float(values.mean()) if len(values) else float("nan") for key, values in
            lime_per_image(model, images, targets, **options).items()}


__all__ = ["lime_per_image", "lime_scores", "superpixels"]
