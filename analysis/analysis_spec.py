"""What the analysis of a round measures, as the `analysis` section of a sweep config.

Every measurement compares a round's network with its dense trunk on fixed, seeded samples of the
dataset, so two rounds (and two lineages) are always measured on the same images. The spec is part
of the sweep's identity (not of a lineage's training identity): changing it makes a new sweep.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from lth_sweep.trainables.canonical import Spec
from lth_sweep.trainables.identity import OmittedWhen, OutOfIdentity

ADDED_LATER = "added after ids were in use: part of the identity only where it adds measurements"
POOL = "how the pool runs, not what it measures"


#: A cheap, representative set: noise, blur, digital and photometric corruptions.
DEFAULT_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "contrast", "brightness", "pixelate", "jpeg_compression",
)


class GradcamSpec(Spec):
    enabled: bool = True
    images: int = Field(256, ge=1, description="test images whose Grad-CAM maps are compared with the trunk's")
    top_percent: float = Field(10.0, gt=0, le=100, description="top-k% pixels for the IoU")
    grid_images: int = Field(8, ge=0, description="inputs shown in each round's overlay grid (0: no grid)")


class ConceptSpec(Spec):
    enabled: bool = True
    train_images: int = Field(1000, ge=20, description="images the concept vectors and the PCBM are fitted on")
    eval_images: int = Field(500, ge=10, description="held-out images for CAV and PCBM accuracy")
    top_k: int = Field(3, ge=1, description="concepts per class compared with the trunk's (Jaccard)")
    svm_c: float = Field(0.1, gt=0, description="C of the linear SVMs that learn the concept vectors")
    pcbm_c: float = Field(0.05, gt=0, description="inverse elastic-net strength of the PCBM (tuned for 1000-2000 images)")
    l1_ratio: float = Field(0.9, ge=0, le=1)
    clip_template: str = Field("a photo of a {}", description="prompt for CLIP text concept banks")


class LimeSpec(Spec):
    enabled: bool = True
    images: int = Field(8, ge=1)
    samples: int = Field(64, ge=8, description="perturbations per image")


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


class CalibrationSpec(Spec):
    enabled: bool = True
    bins: int = Field(15, ge=2)


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


class FlatnessSpec(Spec):
    enabled: bool = True
    images: int = Field(128, ge=8)
    iterations: int = Field(8, ge=1, description="power-iteration steps for the top Hessian eigenvalues")
    noise_draws: int = Field(2, ge=1, description="noise draws per scale for the flatness radius")
    bisections: int = Field(6, ge=1, description="bisection steps of the flatness radius")
    bootstrap_draws: Annotated[int, OmittedWhen(lambda flatness: not flatness.bootstrap_draws, ADDED_LATER)] = Field(
        0, ge=0, description="bootstrap resamples of the images for the sampling errors of flat/hessian_weights and "
        "flat/radius (each recomputes both: ~draws x their cost); 0: none (their verdicts rest on the seeds alone)",
    )

    @field_validator("bootstrap_draws")
    @classmethod
    def _enough_draws(cls, draws: int) -> int:
        if draws == 1:
            raise ValueError("one bootstrap draw has no spread: 0 (off) or at least 2 (e.g. 50)")
        return draws


class AnalysisSpec(Spec):
    enabled: bool = True
    # How the pool runs, not what it measures: resizing it reuses the sweep's finished runs. In the
    # identity they take their defaults' place (not dropped), so ids from before this rule still hold.
    actors: Annotated[int, OutOfIdentity(POOL, stands_as=1)] = Field(1, ge=1, description="analysis actors in the pool")
    cpus_per_actor: Annotated[float, OutOfIdentity(POOL, stands_as=0.0)] = Field(
        0.0, ge=0, description="CPUs Ray reserves per actor; 0 shares the trials' cores (right for a laptop)"
    )
    gpus_per_actor: Annotated[float, OutOfIdentity("where it measures, not what (added after ids existed)")] = Field(
        0.0, ge=0,
        description="GPUs Ray reserves per actor (fractions share one: 0.25 puts four actors on a GPU); an actor "
        "measures on CUDA when Ray gave it a GPU and torch sees one, else on the CPU, as training's device: auto",
    )
    seed: int = Field(0, description="seed of the analysis samples, the same for every round")
    early_stopping_every: int = Field(
        100, ge=0,
        description="iterations between validation losses for the early-stopping iteration (0: off); "
        "Frankle & Carbin validate every 100",
    )
    early_stopping_images: int | None = Field(
        None, ge=10,
        description="size of the validation split those losses are taken on, when data.validation_size is not set: "
        "generated apart for shapes and clutter, held out of train (at most 10%) otherwise; never the test split (None: the test split's size)",
    )
    # The dense twin adds trunk-level reference metrics (`twin/...` on the trunks' runs) and no
    # lineage's result depends on it: turning it off or on keeps the sweep, its runs and their ids
    # (a resumed sweep adds the twins it lacks).
    twin: Annotated[bool, OutOfIdentity("reference metrics of the trunks only")] = Field(
        True,
        description="train each trunk's dense twin (same init, another data order: Frankle et al. 2020's instability "
        "control) and log its consistency with the trunk as twin/<metric> on the trunk's run: the noise floor of "
        "SGD noise alone; costs one dense training and one measurement per trunk",
    )
    gradcam: GradcamSpec = GradcamSpec()
    concepts: ConceptSpec = ConceptSpec()
    lime: LimeSpec = LimeSpec()
    mis: MisSpec = MisSpec()
    calibration: CalibrationSpec = CalibrationSpec()
    robustness: RobustnessSpec = RobustnessSpec()
    flatness: FlatnessSpec = FlatnessSpec()

    @field_validator("gpus_per_actor")
    @classmethod
    def _one_device(cls, gpus: float) -> float:
        if gpus > 1:
            raise ValueError(
                f"{gpus:g} GPUs per actor, but an actor measures on one device: at most 1 "
                "(a fraction shares a GPU between actors, e.g. 0.25)"
            )
        return gpus

