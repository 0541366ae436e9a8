"""Measuring one network against its dense trunk: every dimension the analysis spec turns on.

`measure(network, dense=None)` on the trunk returns the dense values and the `Reference` that
every round of its lineages is compared with; on a round, the metrics of that round. Each dimension
is one function below, registered in `DIMENSIONS`: it reads the fixed samples, writes metrics (and
artifacts for a person to look at) and, for the trunk, its part of the reference.

The network's model and masks are on the analysis device (`analysis.device`); the samples stay on
the CPU and each function moves its batches to the model, returning CPU values.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from lth_sweep.analysis import sampling_error
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.analysis.device import model_device
from lth_sweep.trainables import record
from lth_sweep.trainables.data import Dataset, ImageSplit
from lth_sweep.trainables.masks import Masks
from lth_sweep.trainables.models import PrunableModel


CACHE_BYTES = 256 * 2**20  #: the most one cached input-only sample may take in an actor's memory


@dataclass
class Reference:
    """The dense trunk's side of every comparison, computed once per trunk."""

    values: dict[str, float] = field(default_factory=dict)  # the trunk's own metric values
    gradcam: torch.Tensor | None = None  # maps of the Grad-CAM sample
    pcbm: object | None = None  # its post-hoc concept bottleneck
    corruption_errors: dict | None = None
    grid: bytes | None = None  # its Grad-CAM grid (PNG): step 0 of every lineage's image series
    # Metric -> the trunk's value per sampling unit (image, class, MIS unit) or the per-image
    # inputs of the metric (probabilities, confidences): what `se_diff/<metric>` pairs a round's
    # with. Vectors of the analysis samples' sizes (the test probabilities are N x C floats), or
    # for the flatness statistics that are no mean over images, their bootstrap replicates.
    per_unit: dict[str, torch.Tensor | tuple[torch.Tensor, ...]] = field(default_factory=dict)


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
    from lth_sweep.trainables.data import make_generator

    order = torch.randperm(len(split), generator=make_generator(seed, f"analysis/{salt}"))[: min(count, len(split))]
    order = order.sort().values
    return split.subset(order)


def metrics_sparsity(masks: Masks) -> float | None:
    total = sum(mask.numel() for mask in masks.values())
    return None if not total else 1 - sum(int(mask.sum()) for mask in masks.values()) / total


def trunk_units(dense: Reference | None, key: str, n: int):
    """The trunk's per-unit quantities behind `key` when measuring a round on the same `n` units;
    None on the trunk itself, or when the trunk has none (dimension off, older Reference)."""
    if dense is None or key not in dense.per_unit:
        return None
    units = dense.per_unit[key]
    return units if len(units[0] if isinstance(units, tuple) else units) == n else None


def put(metrics: dict, key: str, value: float) -> None:
    """Logs a sampling error unless it could not be estimated (NaN: fewer than two units)."""
    if value == value:
        metrics[key] = float(value)


def paired_se(metrics: dict, dense: Reference | None, key: str, values: torch.Tensor) -> None:
    """`se_diff/<key>`: the paired standard error of the mean of `values` minus the trunk's mean
    over the same units (McNemar's form for 0/1 values)."""
    reference = trunk_units(dense, key, len(values))
    if reference is not None:
        put(metrics, f"se_diff/{key}", sampling_error.paired_mean_se(values, reference))


@torch.no_grad()
def probabilities(model: PrunableModel, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Softmax outputs, computed on the model's device, returned on the CPU."""
    device = model_device(model)
    return torch.cat([
        F.softmax(model(images[i : i + batch_size].to(device)), 1).cpu() for i in range(0, len(images), batch_size)
    ])


def _calibration(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import calibration, robustness

    test = sample(net.dataset.test, len(net.dataset.test), net.spec.seed, "test")  # all of it, for file-backed too
    probs, labels = probabilities(net.model, test.images), test.labels
    bins = net.spec.calibration.bins
    metrics["calib/ece"] = float(calibration.ece(probs, labels, bins=bins))
    metrics["calib/sce"] = float(calibration.sce(probs, labels, bins=bins))
    metrics["calib/nll"] = float(calibration.nll(probs, labels))
    # Sampling errors for the verdicts (analysis/sampling_error.py): binomial for the accuracy on
    # this split, a seeded bootstrap over images for the binned errors (no closed form).
    accuracy = float((probs.argmax(1) == labels).float().mean())
    metrics["se/test/acc"] = robustness.binomial_se(accuracy, len(labels))
    metrics |= calibration.sampling_errors(probs, labels, trunk_units(dense, "test/probs", len(labels)), bins, net.spec.seed)
    return {"per_unit": {"test/probs": probs}}


def _robustness(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import robustness
    from lth_sweep.analysis.corruptions import CORRUPTIONS, MIN_TRUNK_MISTAKES, corrupted_inputs, mce, mistakes

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
    _robustness_differences(net, dense, metrics, units)
    return own | {"per_unit": units}


def _robustness_differences(net: Network, dense: Reference | None, metrics: dict, units: dict) -> None:
    """se_diff/ of the robustness metrics: paired per image for the accuracies (McNemar; the
    per-image mean over corruptions for corrupt/acc), a paired stratified bootstrap for the AUROCs."""
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


def _flatness(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import flatness

    spec = net.spec.flatness
    test = sample(net.dataset.test, spec.images, net.spec.seed, "flatness")
    batch = (net.model, test.images, test.labels, net.masks)
    whole_sample = {
        "flat/hessian_weights": lambda weights=None: flatness.hessian_top_eigenvalue(
            *batch, iterations=spec.iterations, seed=net.spec.seed, weights=weights),
        "flat/radius": lambda weights=None: flatness.flatness_radius(
            *batch, draws=spec.noise_draws, bisections=spec.bisections, seed=net.spec.seed, weights=weights),
    }
    # The radius is known to one bisection step: a rounding error (variance step^2 / 12 per value)
    # that resamples landing in one step would otherwise hide.
    resolution = {"flat/radius": flatness.radius_resolution(spec.bisections), "flat/hessian_weights": 0.0}
    units = {}
    for key, statistic in whole_sample.items():
        metrics[key] = float(statistic())
        if spec.bootstrap_draws:
            units[key] = _bootstrap_replicates(statistic, len(test.labels), net.spec.seed, key, spec.bootstrap_draws)
            rounding = resolution[key] ** 2 / 12
            put(metrics, f"se/{key}", math.sqrt(sampling_error.spread(units[key]) ** 2 + rounding))
            trunk = trunk_units(dense, key, spec.bootstrap_draws)
            if trunk is not None:
                put(metrics, f"se_diff/{key}", math.sqrt(sampling_error.spread(units[key] - trunk) ** 2 + 2 * rounding))
    per_image = flatness.input_hessian_eigenvalues(*batch, iterations=spec.iterations, seed=net.spec.seed)
    metrics["flat/hessian_inputs"] = float(per_image.mean())
    put(metrics, "se/flat/hessian_inputs", sampling_error.mean_se(per_image))
    paired_se(metrics, dense, "flat/hessian_inputs", per_image)
    return {"per_unit": units | {"flat/hessian_inputs": per_image}}


def _bootstrap_replicates(statistic, n: int, seed: int, key: str, draws: int) -> torch.Tensor:
    """The statistic recomputed on `draws` seeded resamples of the images (as per-image weights).
    The weight-space eigenvalue and the radius are no mean over images, so each draw reruns the
    power iteration or the bisection. The trunk draws the same resamples (same seed and key):
    their replicate-by-replicate difference gives the paired error."""
    counts = sampling_error.resample_counts(n, sampling_error.bootstrap_seed(seed, key), draws)
    return torch.tensor([float(statistic(weights)) for weights in counts], dtype=torch.float64)


def _gradcam(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import gradcam

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
    # the localisation measures are compared with the trunk's (the consistency ones are with it)
    localised = {f"xai/gradcam_{key}": per_image[key] for key in ("energy_in_object", "pointing_game") if key in per_image}
    for key, values in localised.items():
        paired_se(metrics, dense, key, values)
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
            return {"gradcam": maps, "grid": grid.read_bytes(), "per_unit": localised}
    return {"gradcam": maps, "per_unit": localised}


def write_csv(path: Path, rows: list[dict]) -> None:
    """A table artifact (pandas: the same writer as the concepts table)."""
    import pandas as pd

    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.4f")


def _concepts(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import concepts

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

        from lth_sweep.analysis.clip_bank import clip_text_bank

        tokenizer = open_clip.get_tokenizer(net.model.clip_model_name)
        bank = clip_text_bank(clip_model, tokenizer, data.concept_names, template=spec.clip_template)
    else:
        bank = concepts.learn_bank(
            train_emb, train.concepts.numpy(), data.concept_names, eval_emb, held_out.concepts.numpy(),
            C=spec.svm_c, seed=net.spec.seed,
        )
        metrics["xai/concept_cav_acc"] = float(bank.balanced_accuracies.mean())
    eval_proj = concepts.project(eval_emb, bank)
    pcbm = concepts.fit_pcbm(
        concepts.project(train_emb, bank), train.labels.numpy(), eval_proj, held_out.labels.numpy(),
        concept_names=list(bank.names), C=spec.pcbm_c, l1_ratio=spec.l1_ratio, seed=net.spec.seed,
    )
    names = list(data.concept_names)
    metrics["xai/concept_pcbm_acc"] = float(pcbm.accuracy)
    # Sampling units: held-out images for the accuracies, classes for the per-class measures (a
    # bootstrap over the training images would refit the PCBM per draw).
    units = {"xai/concept_pcbm_acc": torch.from_numpy(pcbm.predict(eval_proj) == held_out.labels.numpy())}
    truth = [list(defining) for defining in data.class_concepts]
    if any(truth):
        metrics["xai/concept_recovery"] = float(concepts.recovery(pcbm, names, truth))
        metrics["xai/concept_recovery_margin"] = float(concepts.recovery_margin(pcbm, names, truth))
        units["xai/concept_recovery"] = torch.tensor(concepts.recovered_classes(pcbm, names, truth), dtype=torch.float64)
        units["xai/concept_recovery_margin"] = torch.tensor(concepts.recovery_margins(pcbm, names, truth), dtype=torch.float64)
    reference_pcbm = pcbm if dense is None or dense.pcbm is None else dense.pcbm
    if dense is not None and dense.pcbm is not None:
        agreement = concepts.consistency(dense.pcbm, pcbm, names, k=spec.top_k)
        metrics[f"xai/concept_jaccard_top{spec.top_k}"] = float(agreement["mean_jaccard"])
        metrics["xai/concept_kendall_tau"] = float(agreement["mean_kendall_tau"])
        # consistency metrics: compared with the trunk by construction, so se/ only (per class)
        put(metrics, f"se/xai/concept_jaccard_top{spec.top_k}", sampling_error.mean_se(agreement["jaccard"]))
        put(metrics, "se/xai/concept_kendall_tau", sampling_error.mean_se(agreement["kendall_tau"]))
    for key, values in units.items():
        put(metrics, f"se/{key}", sampling_error.mean_se(values))
        paired_se(metrics, dense, key, values)
    if bank.eval_predictions is not None:
        units["xai/concept_cav_acc"] = _cav_units(bank, data.concept_names, held_out.concepts)
        _cav_errors(net, dense, metrics, units["xai/concept_cav_acc"])
    table = concepts.concept_table(reference_pcbm, pcbm, data.class_names, names, k=spec.top_k)
    path = net.artifacts / "xai" / f"concepts_{net.label}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return {"pcbm": pcbm, "per_unit": units}


def _cav_units(bank, vocabulary: list[str], concepts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, truths), (N_eval, K) bool, of the bank's concept vectors on the held-out images."""
    columns = [list(vocabulary).index(name) for name in bank.names]
    return torch.from_numpy(bank.eval_predictions), concepts[:, columns].bool()


def _cav_errors(net: Network, dense: Reference | None, metrics: dict, units: tuple) -> None:
    """se/ and se_diff/ of the mean balanced accuracy of the concept vectors: a bootstrap over the
    held-out images (a balanced accuracy is no mean over images), paired with the trunk's."""
    from lth_sweep.analysis.concepts import batched_balanced_accuracy

    seed = net.spec.seed
    put(metrics, "se/xai/concept_cav_acc", sampling_error.bootstrap_se(
        batched_balanced_accuracy, units, sampling_error.bootstrap_seed(seed, "se/xai/concept_cav_acc")
    ))
    trunk = trunk_units(dense, "xai/concept_cav_acc", len(units[0]))
    if trunk is not None:
        put(metrics, "se_diff/xai/concept_cav_acc", sampling_error.paired_bootstrap_se(
            batched_balanced_accuracy, units, trunk, sampling_error.bootstrap_seed(seed, "se_diff/xai/concept_cav_acc")
        ))


def _lime(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis.lime import lime_per_image

    spec = net.spec.lime
    test = sample(net.dataset.test, spec.images, net.spec.seed, "lime")
    per_image = lime_per_image(
        net.model, test.images, test.labels, samples=spec.samples, held_out=spec.samples, images_limit=spec.images,
        seed=net.spec.seed,
    )
    units = {f"xai/{key}": values for key, values in per_image.items()}
    for key, values in units.items():
        metrics[key] = float(values.mean()) if len(values) else float("nan")
        put(metrics, f"se/{key}", sampling_error.mean_se(values))
        paired_se(metrics, dense, key, values)
    return {"per_unit": units}


def _mis(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import mis

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
    channels, scores = mis.mis_units(
        net.model, net.model.gradcam_layer, test.images, None, None, units=spec.units, seed=net.spec.seed,
        features=net.cache[key],
    )
    metrics["xai/mis"] = float(scores.mean()) if len(scores) else float("nan")
    _mis_errors(dense, metrics, channels, scores)
    return {"per_unit": {"xai/mis": (channels, scores)}}


def _mis_errors(dense: Reference | None, metrics: dict, channels: torch.Tensor, scores: torch.Tensor) -> None:
    """The MIS is a mean over sampled units, so units are what its errors resample (resampling the
    images would rank duplicates against themselves, and rerun every task). A round paired with its
    trunk on the same channel indices (both have the same live channels, so the seeded draw picks
    the same ones) takes the per-unit differences; otherwise the two unit samples are independent."""
    own = sampling_error.mean_se(scores)
    put(metrics, "se/xai/mis", own)
    trunk = trunk_units(dense, "xai/mis", len(channels))
    if trunk is None and dense is not None and "xai/mis" in dense.per_unit:
        trunk = dense.per_unit["xai/mis"]  # a different number of live units: unpaired
    if trunk is None:
        return
    dense_channels, dense_scores = trunk
    if torch.equal(channels, dense_channels):
        put(metrics, "se_diff/xai/mis", sampling_error.paired_mean_se(scores, dense_scores))
    else:
        put(metrics, "se_diff/xai/mis", (own**2 + sampling_error.mean_se(dense_scores) ** 2) ** 0.5)


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
    per_unit: dict[str, object] = {}
    for name, dimension in DIMENSIONS.items():
        if getattr(net.spec, name).enabled:
            started = time.perf_counter()
            part = dimension(net, dense, metrics)
            per_unit |= part.pop("per_unit", {})
            parts |= part
            metrics[f"analysis/seconds/{name}"] = time.perf_counter() - started
    return metrics, Reference(values=dict(metrics), per_unit=per_unit, **parts)
