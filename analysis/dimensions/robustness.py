"""Robustness: accuracy under FGSM and PGD attacks and under common corruptions (Hendrycks &
Dietterich; mCE against the trunk), and how well max-softmax tells test images from held-out
classes and from Gaussian noise (AUROC)."""
from __future__ import annotations

from pydantic import Field, field_validator

from lth_sweep.analysis.dimension import Cost, Dimension, Network, Reference
from lth_sweep.analysis.metric import UNIT, Metric
from lth_sweep.trainables.canonical import Spec

#: A cheap, representative set: noise, blur, digital and photometric corruptions.
DEFAULT_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "contrast", "brightness", "pixelate", "jpeg_compression",
)


class RobustnessSpec(Spec):
    enabled: bool = True
    images: int = Field(200, ge=10, description="test images attacked and corrupted")
    fgsm_eps: float = Field(8 / 255, ge=0, le=1, description="L-inf radius in pixel units ([0, 1]), for FGSM and PGD")
    pgd_steps: int = Field(5, ge=0, description="0 turns PGD off")
    corruptions: tuple[str, ...] = Field(
        DEFAULT_CORRUPTIONS, description="common corruptions to apply; ['all'] for every registered one"
    )
    severities: tuple[int, ...] = Field((1, 3, 5), description="of 1..5 (Hendrycks & Dietterich)")
    ood_noise: bool = Field(True, description="Gaussian-noise images as an out-of-distribution set")

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from lth_sweep.analysis.corruptions import CORRUPTIONS

        unknown = [name for name in names if name not in CORRUPTIONS and names != ("all",)]
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; known: {', '.join(CORRUPTIONS)} (or 'all')")
        return names

    @field_validator("severities")
    @classmethod
    def _severity_range(cls, severities: tuple[int, ...]) -> tuple[int, ...]:
        if not severities or any(s not in range(1, 6) for s in severities):
            raise ValueError("severities are between 1 and 5")
        return severities


def measure(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import robustness
    from lth_sweep.analysis.corruptions import CORRUPTIONS, MIN_TRUNK_MISTAKES, corrupted_inputs, mce, mistakes
    import torch

    from lth_sweep.analysis.measure_tools import CACHE_BYTES, probabilities, sample

    spec, data = net.spec.robustness, net.dataset
    own = {}  # this network's part of its Reference
    units = {}  # its per-image quantities, for the rounds' se_diff/
    test = sample(data.test, spec.images, net.spec.seed, "robustness")
    in_probs = probabilities(net.model, test.images)
    units["ood/in_confidence"] = in_probs.max(1).values
    if data.ood is not None:
        out_probs = probabilities(net.model, sample(data.ood, spec.images, net.spec.seed, "ood").images)
        metrics["ood/auroc_heldout"] = float(robustness.ood_auroc(in_probs, out_probs))
        metrics["se/ood/auroc_heldout"] = robustness.auroc_se(metrics["ood/auroc_heldout"], len(in_probs), len(out_probs))
        units["ood/auroc_heldout"] = out_probs.max(1).values
    if spec.ood_noise:
        noise = robustness.gaussian_noise_images(test.images, data.to_pixels, data.from_pixels, seed=net.spec.seed)
        noise_probs = probabilities(net.model, noise)
        metrics["ood/auroc_noise"] = float(robustness.ood_auroc(in_probs, noise_probs))
        metrics["se/ood/auroc_noise"] = robustness.auroc_se(metrics["ood/auroc_noise"], len(in_probs), len(noise))
        units["ood/auroc_noise"] = noise_probs.max(1).values
    if spec.fgsm_eps > 0:
        attack = (net.model, test.images, test.labels, data.to_pixels, data.from_pixels)
        units["adv/fgsm_acc"] = robustness.fgsm_correct(*attack, eps=spec.fgsm_eps)
        if spec.pgd_steps:
            units["adv/pgd_acc"] = robustness.pgd_robust(
                *attack, eps=spec.fgsm_eps, steps=spec.pgd_steps, seed=net.spec.seed
            )
        for key in [k for k in ("adv/fgsm_acc", "adv/pgd_acc") if k in units]:
            metrics[key] = int(units[key].sum()) / len(test)
            metrics[f"se/{key}"] = robustness.binomial_se(metrics[key], len(test))
    names = list(CORRUPTIONS if spec.corruptions == ("all",) else spec.corruptions)
    if names:
        # The corrupted sample depends on the images and the seed only: computed once per actor on
        # the CPU (the same draws and rounding on every device; JPEG is Pillow's anyway), unless it
        # would take much memory (large images), then every round. The model reads it on its device.
        key = ("corrupted", net.data_id, len(test), tuple(names), spec.severities, net.spec.seed)
        inputs = net.cache.get(key)
        if inputs is None:
            inputs = corrupted_inputs(test.images, data.to_pixels, data.from_pixels, names, spec.severities, net.spec.seed)
            if sum(t.numel() * t.element_size() for t in inputs.values()) <= CACHE_BYTES:
                net.cache[key] = inputs
        correct = robustness.corruption_correct(net.model, test.labels, inputs)
        errors = robustness.corruption_errors_of(correct)
        accuracy = 1 - sum(errors.values()) / len(errors)
        metrics["corrupt/acc"] = accuracy
        # Binomial with N the distinct images, not every (image, corruption, severity): one image's
        # evaluations are correlated, and the variance of its mean accuracy over them is at most
        # p(1 - p) whatever the correlation, so this bounds the standard error from above.
        metrics["se/corrupt/acc"] = robustness.binomial_se(accuracy, len(test))
        units["corrupt/acc"] = torch.stack(list(correct.values())).double().mean(0)  # per image, over (c, s)
        for name in names:
            per_name = [errors[(name, s)] for s in spec.severities]
            metrics[f"corrupt/error/{name}"] = sum(per_name) / len(per_name)
        own["corruption_errors"] = errors
        trunk_errors = errors if dense is None else dense.corruption_errors
        trunk_mistakes = mistakes(trunk_errors, len(test))
        metrics["corrupt/mce_corruptions"] = len(names)  # pooled: every corruption always counts
        metrics["corrupt/mce_trunk_errors"] = trunk_mistakes  # the mCE's denominator, in mistakes
        if trunk_mistakes >= MIN_TRUNK_MISTAKES:  # fewer: undefined, not logged
            metrics["corrupt/mce"] = mce(errors, trunk_errors)
    differences(net, dense, metrics, units)
    return own | {"per_unit": units}


def differences(net: Network, dense: Reference | None, metrics: dict, units: dict) -> None:
    """se_diff/ of the robustness metrics: paired per image for the accuracies (McNemar; the
    per-image mean over corruptions for corrupt/acc), a paired stratified bootstrap for the AUROCs."""
    from lth_sweep.analysis import sampling_error
    from lth_sweep.analysis.measure_tools import paired_se, put, trunk_units

    for key in ("adv/fgsm_acc", "adv/pgd_acc", "corrupt/acc"):
        if key in units:
            paired_se(metrics, dense, key, units[key])
    in_scores = units["ood/in_confidence"]
    dense_in = trunk_units(dense, "ood/in_confidence", len(in_scores))
    for key in ("ood/auroc_heldout", "ood/auroc_noise"):
        dense_out = None if key not in units else trunk_units(dense, key, len(units[key]))
        if dense_in is not None and dense_out is not None:
            put(metrics, f"se_diff/{key}", sampling_error.paired_auroc_se(
                in_scores, units[key], dense_in, dense_out, sampling_error.bootstrap_seed(net.spec.seed, f"se_diff/{key}")
            ))



def work(options: RobustnessSpec, data, ood: int) -> tuple[float, int]:
    from lth_sweep.analysis.corruptions import CORRUPTIONS

    n = min(options.images, data.test)
    corruptions = (len(CORRUPTIONS) if options.corruptions == ("all",) else len(options.corruptions)) * len(options.severities)
    # an input gradient's backward ~ a forward (no weight gradients): FGSM 3, PGD 2 a step + 2
    attacks = (3 + (2 * options.pgd_steps + 2 if options.pgd_steps else 0)) if options.fgsm_eps > 0 else 0
    return n * (1 + options.ood_noise + attacks + corruptions) + min(options.images, ood), n


DIMENSION = Dimension(
    name="robustness",
    options=RobustnessSpec,
    measure=measure,
    metrics=(
        Metric("ood/auroc_heldout", True, "AUROC, test vs held-out-class images (max softmax)", 0.01, figure="ood",
               bounds=UNIT),
        Metric("ood/auroc_noise", True, "AUROC, test vs Gaussian-noise images (max softmax)", 0.01, figure="ood",
               bounds=UNIT, judged=True),
        Metric("corrupt/acc", True, "accuracy under common corruptions", 0.01, figure="robustness", bounds=UNIT,
               collapse=0.1, judged=True),
        Metric("corrupt/mce", False, "mean corruption error relative to the trunk", 0.05, relative=True,
               figure="robustness"),
        Metric("corrupt/error/*", False, "error under one corruption", 0.01, bounds=UNIT),
        Metric("adv/fgsm_acc", True, "accuracy under FGSM", 0.01, figure="robustness", bounds=UNIT, collapse=0.1,
               judged=True),
        Metric("adv/pgd_acc", True, "accuracy under PGD", 0.01, figure="robustness", bounds=UNIT, collapse=0.1),
    ),
    figures=("robustness", "ood"),
    cost=Cost(67e9, 0.0, 0.07, work),
)
