"""Grad-CAM: how far the network's Grad-CAM maps drift from its trunk's on the same images (rank
correlation, top-pixel IoU, cosine), and how much of each map lies on the object (energy, pointing
game) where the dataset has object masks; a grid of overlays per round for a person to look at."""
from __future__ import annotations

from pydantic import Field

from lth_sweep.analysis.dimension import Cost, Dimension, Network, Reference
from lth_sweep.analysis.metric import UNIT, Metric
from lth_sweep.trainables import record
from lth_sweep.trainables.canonical import Spec


class GradcamSpec(Spec):
    enabled: bool = True
    images: int = Field(256, ge=1, description="test images whose Grad-CAM maps are compared with the trunk's")
    top_percent: float = Field(10.0, gt=0, le=100, description="top-k% pixels for the IoU")
    grid_images: int = Field(8, ge=0, description="inputs shown in each round's overlay grid (0: no grid)")


def measure(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import gradcam
    from lth_sweep.analysis.measure_tools import metrics_sparsity, paired_se, probabilities, sample, write_csv

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



def work(options: GradcamSpec, data, ood: int) -> tuple[float, int]:
    n = min(options.images, data.test)
    return 2 * n + min(options.grid_images, n), n  # the backward stops at the Grad-CAM layer


DIMENSION = Dimension(
    name="gradcam",
    options=GradcamSpec,
    measure=measure,
    metrics=(
        # consistency with the trunk (the trunk scores 1 against itself)
        Metric("xai/gradcam_rank_corr", True, "Spearman correlation of Grad-CAM maps with the trunk's", 0.05,
               reference="consistency", figure="gradcam", bounds=(-1.0, 1.0), judged=True),
        Metric("xai/gradcam_iou_top*", True, "IoU of the top pixels of Grad-CAM maps with the trunk's", 0.05,
               reference="consistency", figure="gradcam", bounds=UNIT),
        Metric("xai/gradcam_cosine", True, "cosine similarity of Grad-CAM maps with the trunk's", 0.05,
               reference="consistency", bounds=UNIT),
        # quality of the network's own explanation, compared with the trunk's
        Metric("xai/gradcam_energy_in_object", True, "share of Grad-CAM energy on the object", 0.02, figure="gradcam",
               bounds=UNIT, judged=True),
        Metric("xai/gradcam_pointing_game", True, "share of maps whose peak is on the object", 0.02, figure="gradcam",
               bounds=UNIT),
    ),
    figures=("gradcam",),
    cost=Cost(82e9, 0.0, 0.2, work),  # fixed: the overlay grid (matplotlib)
)
