"""Measuring one network against its dense trunk: every dimension the analysis spec turns on.

`measure(network, dense=None)` on the trunk returns the dense values and the `Reference` that
every round of its lineages is compared with; on a round, the metrics of that round. Each dimension
is one function below, registered in `DIMENSIONS`: it reads the fixed samples, writes metrics (and
artifacts for a person to look at) and, for the trunk, its part of the reference.

The network's model and masks are on the analysis device (`analysis.device`); the samples stay on
the CPU and each function moves its batches to the model, returning CPU values.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from analysis.analysis_spec import AnalysisSpec
from analysis.device import model_device
from trainables import record
from trainables.data import Dataset, ImageSplit
from trainables.masks import Masks
from trainables.models import PrunableModel


CACHE_BYTES = 256 * 2**20  #: the most one cached input-only sample may take in an actor's memory


@dataclass
class Reference:
    """The dense trunk's side of every comparison, computed once per trunk."""

    values: dict[str, float] = field(default_factory=dict)  # the trunk's own metric values
    gradcam: torch.Tensor | None = None  # maps of the Grad-CAM sample
    pcbm: object | None = None  # its post-hoc concept bottleneck
    corruption_errors: dict | None = None
    grid: bytes | None = None  # its Grad-CAM grid (PNG): step 0 of every lineage's image series


@dataclass
class Network:
    """What a measurement needs: the model in eval mode, its masks, the data and the spec."""

    model: PrunableModel
    masks: Masks
    dataset: Dataset
    spec: AnalysisSpec
    label: str  # "dense" or "round_03": names the artifacts
    artifacts: Path  # a folder; files written here are logged under the same relative path
    cache: dict = field(default_factory=dict)  # per-actor cache of what depends on the data only
    data_id: str = ""  # the data spec's id: the cache's key for this dataset


def sample(split: ImageSplit, count: int, seed: int, salt: str) -> ImageSplit:
    """The first `count` images of a seeded permutation: the same images for every round."""
    from trainables.data import make_generator

    order = torch.randperm(len(split), generator=make_generator(seed, f"analysis/{salt}"))[: min(count, len(split))]
    order = order.sort().values
    return split.subset(order)


def metrics_sparsity(masks: Masks) -> float | None:
    total = sum(mask.numel() for mask in masks.values())
    return None if not total else 1 - sum(int(mask.sum()) for mask in masks.values()) / total


@torch.no_grad()
def probabilities(model: PrunableModel, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Softmax outputs, computed on the model's device, returned on the CPU."""
    device = model_device(model)
    return torch.cat([
        F.softmax(model(images[i : i + batch_size].to(device)), 1).cpu() for i in range(0, len(images), batch_size)
    ])


def _calibration(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from analysis import calibration, robustness

    test = sample(net.dataset.test, len(net.dataset.test), net.spec.seed, "test")  # all of it, for file-backed too
    probs, labels = probabilities(net.model, test.images), test.labels
    bins = net.spec.calibration.bins
    metrics["calib/ece"] = float(calibration.ece(probs, labels, bins=bins))
    metrics["calib/sce"] = float(calibration.sce(probs, labels, bins=bins))
    metrics["calib/nll"] = float(calibration.nll(probs, labels))
    # Sampling errors for the verdicts (analysis/noise_floor.py): binomial for the accuracy on this
    # split, a seeded bootstrap over images for the ECE (no closed form).
    accuracy = float((probs.argmax(1) == labels).float().mean())
    metrics["se/test/acc"] = robustness.binomial_se(accuracy, len(labels))
    metrics["se/calib/ece"] = calibration.bootstrap_se(calibration.ece, probs, labels, bins=bins, seed=net.spec.seed)
    return {}


def _robustness(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from analysis import robustness
    from analysis.corruptions import CORRUPTIONS, MIN_TRUNK_MISTAKES, corrupted_inputs, corruption_errors, mce, mistakes

    spec, data = net.spec.robustness, net.dataset
    own = {}  # this network's part of its Reference
    test = sample(data.test, spec.images, net.spec.seed, "robustness")
    in_probs = probabilities(net.model, test.images)
    if data.ood is not None:
        out_probs = probabilities(net.model, sample(data.ood, spec.images, net.spec.seed, "ood").images)
        metrics["ood/auroc_heldout"] = float(robustness.ood_auroc(in_probs, out_probs))
        metrics["se/ood/auroc_heldout"] = robustness.auroc_se(metrics["ood/auroc_heldout"], len(in_probs), len(out_probs))
    if spec.ood_noise:
        noise = robustness.gaussian_noise_images(test.images, data.to_pixels, data.from_pixels, seed=net.spec.seed)
        metrics["ood/auroc_noise"] = float(robustness.ood_auroc(in_probs, probabilities(net.model, noise)))
        metrics["se/ood/auroc_noise"] = robustness.auroc_se(metrics["ood/auroc_noise"], len(in_probs), len(noise))
    if spec.fgsm_eps > 0:
        attack = (net.model, test.images, test.labels, data.to_pixels, data.from_pixels)
        metrics["adv/fgsm_acc"] = float(robustness.fgsm_accuracy(*attack, eps=spec.fgsm_eps))
        if spec.pgd_steps:
            metrics["adv/pgd_acc"] = float(
                robustness.pgd_accuracy(*attack, eps=spec.fgsm_eps, steps=spec.pgd_steps, seed=net.spec.seed)
            )
        for key in [k for k in ("adv/fgsm_acc", "adv/pgd_acc") if k in metrics]:
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
        errors = corruption_errors(net.model, test.images, test.labels, None, None, inputs=inputs)
        accuracy = 1 - sum(errors.values()) / len(errors)
        metrics["corrupt/acc"] = accuracy
        # Binomial with N the distinct images, not every (image, corruption, severity): one image's
        # evaluations are correlated, and the variance of its mean accuracy over them is at most
        # p(1 - p) whatever the correlation, so this bounds the standard error from above.
        metrics["se/corrupt/acc"] = robustness.binomial_se(accuracy, len(test))
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
    return own


def _flatness(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from analysis import flatness

    spec = net.spec.flatness
    test = sample(net.dataset.test, spec.images, net.spec.seed, "flatness")
    batch = (net.model, test.images, test.labels, net.masks)
    metrics["flat/hessian_weights"] = float(
        flatness.hessian_top_eigenvalue(*batch, iterations=spec.iterations, seed=net.spec.seed)
    )
    metrics["flat/hessian_inputs"] = float(
        flatness.input_hessian_top_eigenvalue(*batch, iterations=spec.iterations, seed=net.spec.seed)
    )
    metrics["flat/radius"] = float(
        flatness.flatness_radius(*batch, draws=spec.noise_draws, bisections=spec.bisections, seed=net.spec.seed)
    )
    return {}


def _gradcam(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from analysis import gradcam

    if net.model.gradcam_layer is None:
        return {}
    spec, data = net.spec.gradcam, net.dataset
    test = sample(data.test, spec.images, net.spec.seed, "gradcam")
    maps = gradcam.gradcam_maps(net.model, test.images, test.labels)
    per_image = {}
    if test.masks is not None:
        per_image |= gradcam.localisation(maps, test.masks)
    if dense is not None and dense.gradcam is not None:
        per_image |= gradcam.consistency(dense.gradcam, maps, top_percent=spec.top_percent)
    names = {"pointing_hit": "pointing_game", "iou_top": f"iou_top{spec.top_percent:g}"}
    per_image = {names.get(key, key): values for key, values in per_image.items()}
    metrics |= gradcam.summarise(per_image, prefix="xai/gradcam_")
    write_csv(net.artifacts / "xai" / f"gradcam_per_class_{net.label}.csv", gradcam.per_class(per_image, test.labels, data.class_names))
    if spec.grid_images:
        shown = slice(0, spec.grid_images)
        reference_maps = None if dense is None or dense.gradcam is None else dense.gradcam[shown]
        predicted = probabilities(net.model, test.images[shown]).argmax(1)
        who = "dense" if net.label == "dense" else net.label.replace("_", " ")
        titles = [
            f"{data.class_names[int(y)]}\n({who} says {data.class_names[int(p)]})" if p != y else data.class_names[int(y)]
            for y, p in zip(test.labels[shown], predicted)
        ]
        sparsity = metrics_sparsity(net.masks)
        grid = gradcam.overlay_grid(
            data.to_pixels(test.images[shown]), reference_maps, maps[shown],
            net.artifacts / record.gradcam_grid(net.label), titles=titles,
            label=net.label if sparsity is None else f"{net.label.replace('_', ' ')}\n{sparsity:.1%} sparse",
        )
        if dense is None:
            return {"gradcam": maps, "grid": grid.read_bytes()}
    return {"gradcam": maps}


def write_csv(path: Path, rows: list[dict]) -> None:
    """A table artifact (pandas: the same writer as the concepts table)."""
    import pandas as pd

    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.4f")


def _concepts(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from analysis import concepts

    data, spec = net.dataset, net.spec.concepts
    clip_model = getattr(net.model, "clip", None)
    if not data.concept_names or (data.train.concepts is None and clip_model is None):
        return {}
    train = sample(data.train, spec.train_images, net.spec.seed, "concepts/train")
    held_out = sample(data.test, spec.eval_images, net.spec.seed, "concepts/eval")
    train_emb = concepts.embeddings(net.model, train.images)
    eval_emb = concepts.embeddings(net.model, held_out.images)
    if clip_model is not None:
        import open_clip

        from analysis.clip_bank import clip_text_bank

        tokenizer = open_clip.get_tokenizer(net.model.clip_model_name)
        bank = clip_text_bank(clip_model, tokenizer, data.concept_names, template=spec.clip_template)
    else:
        bank = concepts.learn_bank(
            train_emb, train.concepts.numpy(), data.concept_names, eval_emb, held_out.concepts.numpy(),
            C=spec.svm_c, seed=net.spec.seed,
        )
        metrics["xai/concept_cav_acc"] = float(bank.balanced_accuracies.mean())
    pcbm = concepts.fit_pcbm(
        concepts.project(train_emb, bank), train.labels.numpy(), concepts.project(eval_emb, bank), held_out.labels.numpy(),
        concept_names=list(bank.names), C=spec.pcbm_c, l1_ratio=spec.l1_ratio, seed=net.spec.seed,
    )
    names = list(data.concept_names)
    metrics["xai/concept_pcbm_acc"] = float(pcbm.accuracy)
    truth = [list(defining) for defining in data.class_concepts]
    if any(truth):
        metrics["xai/concept_recovery"] = float(concepts.recovery(pcbm, names, truth))
        metrics["xai/concept_recovery_margin"] = float(concepts.recovery_margin(pcbm, names, truth))
    reference_pcbm = pcbm if dense is None or dense.pcbm is None else dense.pcbm
    if dense is not None and dense.pcbm is not None:
        agreement = concepts.consistency(dense.pcbm, pcbm, names, k=spec.top_k)
        metrics[f"xai/concept_jaccard_top{spec.top_k}"] = float(agreement["mean_jaccard"])
        metrics["xai/concept_kendall_tau"] = float(agreement["mean_kendall_tau"])
    table = concepts.concept_table(reference_pcbm, pcbm, data.class_names, names, k=spec.top_k)
    path = net.artifacts / "xai" / f"concepts_{net.label}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return {"pcbm": pcbm}


def _lime(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from analysis.lime import lime_scores

    spec = net.spec.lime
    test = sample(net.dataset.test, spec.images, net.spec.seed, "lime")
    scores = lime_scores(
        net.model, test.images, test.labels, samples=spec.samples, held_out=spec.samples, images_limit=spec.images,
        seed=net.spec.seed,
    )
    metrics |= {f"xai/{key}": float(value) for key, value in scores.items()}
    return {}


def _mis(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from analysis import mis

    if net.model.gradcam_layer is None:
        return {}
    spec = net.spec.mis
    test = sample(net.dataset.test, spec.images, net.spec.seed, "mis")
    # The perceptual model is fixed, so the features of the fixed sample are computed once per actor.
    key = ("mis-features", spec.similarity, spec.model_name, spec.weights, net.data_id, len(test), net.spec.seed)
    if key not in net.cache:
        options = {}
        if spec.similarity == "open_clip":
            options = {"model_name": spec.model_name or "ViT-B-32", "pretrained": spec.weights}
        elif spec.similarity == "dreamsim":
            options = {"weights_dir": spec.weights}
        perceptual = mis.build_perceptual(spec.similarity, **options)
        net.cache[key] = mis.image_features(perceptual, net.dataset.to_pixels(test.images))
    scores = mis.mis_score(
        net.model, net.model.gradcam_layer, test.images, None, None, units=spec.units, seed=net.spec.seed,
        features=net.cache[key],
    )
    metrics["xai/mis"] = float(scores["mis"])
    return {}


#: (network, the dense trunk's Reference or None when measuring the trunk itself, the metrics to
#: write into) -> this network's part of its own Reference, as Reference field -> value.
Dimension = Callable[[Network, "Reference | None", dict], dict]

#: name -> measurement; each runs when `spec.<name>.enabled`.
DIMENSIONS: dict[str, Dimension] = {
    "calibration": _calibration,
    "robustness": _robustness,
    "flatness": _flatness,
    "gradcam": _gradcam,
    "concepts": _concepts,
    "lime": _lime,
    "mis": _mis,
}


def measure(net: Network, dense: Reference | None = None) -> tuple[dict[str, float], Reference]:
    """All enabled dimensions, compared with `dense` (the trunk's Reference; None when `net` is
    the trunk); returns (metrics, this network's own Reference)."""
    net.model.eval()
    metrics: dict[str, float] = {}
    parts: dict[str, object] = {}
    for name, dimension in DIMENSIONS.items():
        if getattr(net.spec, name).enabled:
            started = time.perf_counter()
            parts |= dimension(net, dense, metrics)
            metrics[f"analysis/seconds/{name}"] = time.perf_counter() - started
    return metrics, Reference(values=dict(metrics), **parts)
