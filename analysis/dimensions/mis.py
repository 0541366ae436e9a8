"""MIS: the mechanistic interpretability score of the network's units (Zimmermann et al.): how
well a perceptual model tells which images excite a unit most, from its top and bottom images."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from lth_sweep.analysis.dimension import Cost, Dimension, Network, Reference
from lth_sweep.analysis.metric import UNIT, Metric
from lth_sweep.trainables.canonical import Spec

if TYPE_CHECKING:
    import torch


class MisSpec(Spec):
    enabled: bool = True
    similarity: str = Field("handcrafted", description="perceptual model: handcrafted | open_clip | dreamsim")
    model_name: str | None = Field(None, description="open_clip architecture for similarity=open_clip")
    weights: str | None = Field(None, description="local weights file / directory of the perceptual model")
    units: int = Field(8, ge=1)
    images: int = Field(500, ge=20, description="images ranked by each unit's activation")

    @field_validator("similarity")
    @classmethod
    def _known_similarity(cls, name: str) -> str:
        from lth_sweep.analysis.mis import PERCEPTUAL_MODELS

        if name not in PERCEPTUAL_MODELS:
            raise ValueError(f"unknown perceptual model {name!r}; known: {', '.join(sorted(PERCEPTUAL_MODELS))}")
        return name

    @field_validator("weights")
    @classmethod
    def _existing_weights(cls, path: str | None) -> str | None:
        if path is None:
            return None
        resolved = Path(path).expanduser().resolve()
        if not resolved.exists():
            raise ValueError(f"no such file or directory: {resolved}")
        return str(resolved)


def measure(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import mis
    from lth_sweep.analysis.measure_tools import sample

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
    mis_errors(dense, metrics, channels, scores)
    return {"per_unit": {"xai/mis": (channels, scores)}}


def mis_errors(dense: Reference | None, metrics: dict, channels: torch.Tensor, scores: torch.Tensor) -> None:
    """The MIS is a mean over sampled units, so units are what its errors resample (resampling the
    images would rank duplicates against themselves, and rerun every task). A round paired with its
    trunk on the same channel indices (both have the same live channels, so the seeded draw picks
    the same ones) takes the per-unit differences; otherwise the two unit samples are independent."""
    import torch

    from lth_sweep.analysis import sampling_error
    from lth_sweep.analysis.measure_tools import put, trunk_units

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



def work(options: MisSpec, data, ood: int) -> tuple[float, int]:
    n = min(options.images, data.test)
    return n, n


DIMENSION = Dimension(
    name="mis",
    options=MisSpec,
    measure=measure,
    metrics=(Metric("xai/mis", True, "mechanistic interpretability score", 0.02, figure="lime_and_mis", bounds=UNIT),),
    figures=("lime_and_mis",),
    cost=Cost(57e9, 9e-5, 0.0, work),
)
