"""Concepts: a post-hoc concept bottleneck (PCBM; Yuksekgonul et al.) fitted on the network's
embeddings, through concept vectors learnt from annotated concepts (or CLIP's text concepts): its
accuracy, whether each class's top concepts are the ones that define it, and how far they drift
from the trunk's (Jaccard of the top k, Kendall tau)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from lth_sweep.analysis.dimension import Cost, Dimension, Network, Reference
from lth_sweep.analysis.metric import UNIT, Metric
from lth_sweep.trainables.canonical import Spec

if TYPE_CHECKING:
    import torch


class ConceptSpec(Spec):
    enabled: bool = True
    train_images: int = Field(1000, ge=20, description="images the concept vectors and the PCBM are fitted on")
    eval_images: int = Field(500, ge=10, description="held-out images for CAV and PCBM accuracy")
    top_k: int = Field(3, ge=1, description="concepts per class compared with the trunk's (Jaccard)")
    svm_c: float = Field(0.1, gt=0, description="C of the linear SVMs that learn the concept vectors")
    pcbm_c: float = Field(0.05, gt=0, description="inverse elastic-net strength of the PCBM (tuned for 1000-2000 images)")
    l1_ratio: float = Field(0.9, ge=0, le=1)
    clip_template: str = Field("a photo of a {}", description="prompt for CLIP text concept banks")


def measure(net: Network, dense: Reference | None, metrics: dict) -> dict:
    import torch

    from lth_sweep.analysis import concepts, sampling_error
    from lth_sweep.analysis.measure_tools import paired_se, put, sample

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
        if not bank.names:  # the embedding separates no concept: there is no bottleneck to fit
            return collapsed(net, dense, metrics)
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
        units["xai/concept_cav_acc"] = cav_units(bank, data.concept_names, held_out.concepts)
        cav_errors(net, dense, metrics, units["xai/concept_cav_acc"])
    table = concepts.concept_table(reference_pcbm, pcbm, data.class_names, names, k=spec.top_k)
    path = net.artifacts / "xai" / f"concepts_{net.label}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return {"pcbm": pcbm, "per_unit": units}


def collapsed(net: Network, dense: Reference | None, metrics: dict) -> dict:
    """A network whose embedding varies along no concept (every unit constant on the sample: pruned
    dead) has no concept vectors and no bottleneck: its concept metrics are logged as NaN, which
    the verdicts read as a collapse (analysis/round_evidence.py), rather than left out or made up."""
    nan = float("nan")
    keys = ["xai/concept_cav_acc", "xai/concept_pcbm_acc"]
    if any(net.dataset.class_concepts):
        keys += ["xai/concept_recovery", "xai/concept_recovery_margin"]
    if dense is not None and dense.pcbm is not None:
        keys += [f"xai/concept_jaccard_top{net.spec.concepts.top_k}", "xai/concept_kendall_tau"]
    metrics |= {key: nan for key in keys}
    return {}


def cav_units(bank, vocabulary: list[str], concepts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, truths), (N_eval, K) bool, of the bank's concept vectors on the held-out images."""
    import torch

    columns = [list(vocabulary).index(name) for name in bank.names]
    return torch.from_numpy(bank.eval_predictions), concepts[:, columns].bool()


def cav_errors(net: Network, dense: Reference | None, metrics: dict, units: tuple) -> None:
    """se/ and se_diff/ of the mean balanced accuracy of the concept vectors: a bootstrap over the
    held-out images (a balanced accuracy is no mean over images), paired with the trunk's."""
    from lth_sweep.analysis import sampling_error
    from lth_sweep.analysis.concepts import batched_balanced_accuracy
    from lth_sweep.analysis.measure_tools import put, trunk_units

    seed = net.spec.seed
    put(metrics, "se/xai/concept_cav_acc", sampling_error.bootstrap_se(
        batched_balanced_accuracy, units, sampling_error.bootstrap_seed(seed, "se/xai/concept_cav_acc")
    ))
    trunk = trunk_units(dense, "xai/concept_cav_acc", len(units[0]))
    if trunk is not None:
        put(metrics, "se_diff/xai/concept_cav_acc", sampling_error.paired_bootstrap_se(
            batched_balanced_accuracy, units, trunk, sampling_error.bootstrap_seed(seed, "se_diff/xai/concept_cav_acc")
        ))



def work(options: ConceptSpec, data, ood: int) -> tuple[float, int]:
    n = min(options.train_images, data.train) + min(options.eval_images, data.test)
    return n, n


DIMENSION = Dimension(
    name="concepts",
    options=ConceptSpec,
    measure=measure,
    metrics=(
        # consistency with the trunk (the trunk scores 1 against itself)
        Metric("xai/concept_jaccard_top*", True, "Jaccard of each class's top PCBM concepts with the trunk's", 0.05,
               reference="consistency", figure="concepts", bounds=UNIT, judged=True),
        Metric("xai/concept_kendall_tau", True, "Kendall tau of PCBM concept weights with the trunk's", 0.05,
               reference="consistency", figure="concepts", bounds=(-1.0, 1.0)),
        # quality of the network's own explanation, compared with the trunk's
        Metric("xai/concept_recovery", True, "share of classes whose top concepts are the defining ones", 0.1,
               figure="concepts", bounds=UNIT, judged=True),
        Metric("xai/concept_recovery_margin", True, "how clearly each class's defining concepts lead its PCBM weights (-2..1)",
               0.05, figure="concepts", bounds=(-2.0, 1.0)),
        Metric("xai/concept_pcbm_acc", True, "accuracy of the post-hoc concept bottleneck", 0.01, figure="concepts",
               bounds=UNIT),
        Metric("xai/concept_cav_acc", True, "balanced accuracy of the concept vectors", 0.01, bounds=UNIT),
    ),
    figures=("concepts",),
    cost=Cost(48e9, 1.3e-4, 0.0, work),  # per image: the concept SVMs and the PCBM (scikit-learn)
)
