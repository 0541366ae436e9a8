"""Post-hoc concept bottleneck models (PCBM, Yuksekgonul et al. 2023) on a network's embeddings.

A concept bank holds one concept activation vector (CAV) per concept: the unit normal of a linear SVM
separating embeddings with the concept from embeddings without it. Projecting embeddings onto the
bank gives concept scores; a sparse linear classifier on those scores is the interpretable model,
and its largest positive weights per class are "the concepts the network uses for that class".

Everything here is a pure function of arrays and a seed: no Ray, no MLflow.

`concept_names` arguments are always the dataset's concept vocabulary. A bank (and the PCBM fitted
on its projections) holds the subset of it that could be learnt, in vocabulary order; comparisons
run over the concepts two PCBMs share, and ties are broken by vocabulary position so that two
networks whose banks skipped different concepts still rank in the same order.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from torch import nn

from lth_sweep.analysis.device import model_device

# SVM C on standardised embeddings. Measured on shapes/conv4 (1000 examples, D=32): held-out balanced
# accuracy of the shape CAVs rises from C=0.001 (0.81-0.99) to C=0.1 (0.92-1.0) and gains < 2%
# beyond; 0.1 keeps some margin for wide embeddings, where 1000 examples are nearly separable by chance.
DEFAULT_C = 0.1
# PCBM elastic net (sklearn's C: inverse strength on the summed loss, so it weakens as N grows; tuned
# for 1000-2000 examples). Mostly L1 so that each class keeps a few concepts (~25% of the weights are
# non-zero on shapes), a little L2 so that the optimum is unique among correlated concepts.
DEFAULT_PCBM_C = 0.05
DEFAULT_L1_RATIO = 0.9


def _elastic_net(l1_ratio: float) -> dict:
    """LogisticRegression arguments for an elastic net with this L1 share, on every scikit-learn >= 1.3.

    Up to 1.7 `penalty` defaults to "l2" and `l1_ratio` is ignored (with only a UserWarning) unless
    penalty="elasticnet": a dense L2 fit. 1.8 deprecated `penalty` (FutureWarning; removed in 1.10)
    and lets `l1_ratio` alone choose the penalty. The signature tells the two apart: 1.8 and 1.9
    default `penalty` to "deprecated", 1.10 has none.
    """
    penalty = inspect.signature(LogisticRegression).parameters.get("penalty")
    if penalty is not None and penalty.default == "l2":
        return {"penalty": "elasticnet", "l1_ratio": l1_ratio}
    return {"l1_ratio": l1_ratio}


@torch.no_grad()
def embeddings(
    model: nn.Module, images: torch.Tensor, batch_size: int = 512, *, embed: Callable | None = None
) -> np.ndarray:
    """`model.embed(images)` (or `embed(images)`) in eval mode, as float32 (N, D) on the CPU,
    computed on the model's device (`analysis.device`); the model's training mode is restored."""
    embed = model.embed if embed is None else embed
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        parts = [embed(images[i : i + batch_size].to(device)).flatten(1).cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).float().cpu().numpy()


@dataclass
class ConceptBank:
    """`vectors[i]` is the unit CAV of `names[i]`, in the space of `(embedding - mean) / scale`.

    `mean`/`scale` are None for banks already living in a normalised joint space (CLIP text
    embeddings); `project` then uses cosine similarity. Accuracies are on the held-out embeddings
    (NaN where that split had no positives or no negatives); `skipped` lists the concepts that have
    no CAV: no positives or no negatives in the training sample, or embeddings along which nothing
    separates them (every unit constant: a network pruned dead).
    """

    names: list[str]
    vectors: np.ndarray  # (K, D)
    mean: np.ndarray | None  # (D,)
    scale: np.ndarray | None  # (D,)
    accuracies: np.ndarray  # (K,) plain accuracy
    balanced_accuracies: np.ndarray  # (K,) mean of the recalls on positives and negatives
    skipped: list[str]
    eval_predictions: np.ndarray | None = None  # (N_eval, K) bool: each SVM's answer per held-out image


def learn_bank(
    train_embeddings: np.ndarray,
    train_concepts: np.ndarray,
    concept_names: Sequence[str],
    eval_embeddings: np.ndarray,
    eval_concepts: np.ndarray,
    *,
    C: float = DEFAULT_C,
    seed: int = 0,
) -> ConceptBank:
    """One balanced linear SVM per concept on standardised embeddings; its unit normal is the CAV."""
    x = np.asarray(train_embeddings, dtype=np.float64)
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-12] = 1.0  # dead units (e.g. ReLUs that never fire) carry no signal
    x = (x - mean) / scale
    x_eval = (np.asarray(eval_embeddings, dtype=np.float64) - mean) / scale
    train_concepts, eval_concepts = np.asarray(train_concepts, bool), np.asarray(eval_concepts, bool)

    names, vectors, accuracies, balanced, skipped, predictions = [], [], [], [], [], []
    for k, name in enumerate(concept_names):
        y = train_concepts[:, k]
        if y.all() or not y.any():
            skipped.append(name)
            continue
        svm = LinearSVC(C=C, class_weight="balanced", dual="auto", max_iter=10_000, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm.fit(x, y)
        normal = svm.coef_[0]
        if not np.linalg.norm(normal) > 0:  # every unit constant over the sample (a network pruned dead): no direction
            skipped.append(name)
            continue
        names.append(name)
        vectors.append(normal / np.linalg.norm(normal))
        truth, predicted = eval_concepts[:, k], svm.predict(x_eval)
        accuracies.append(float((predicted == truth).mean()) if len(truth) else np.nan)
        balanced.append(_balanced_accuracy(truth, predicted))
        predictions.append(np.asarray(predicted, bool))
    dim = x.shape[1]
    return ConceptBank(
        names=names,
        vectors=np.array(vectors, dtype=np.float64).reshape(len(names), dim),
        mean=mean,
        scale=scale,
        accuracies=np.array(accuracies, dtype=np.float64),
        balanced_accuracies=np.array(balanced, dtype=np.float64),
        skipped=skipped,
        eval_predictions=np.stack(predictions, 1) if predictions else np.zeros((len(x_eval), 0), bool),
    )


def _balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    if truth.all() or not truth.any():
        return np.nan
    return float((predicted[truth].mean() + (~predicted[~truth]).mean()) / 2)


def batched_balanced_accuracy(predictions: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean over concepts of the balanced accuracy, per row of resampled (draws, N, K) bool
    predictions and truths: the bootstrap form of `balanced_accuracies.mean()`. A concept without
    positives or negatives in a row is left out of that row's mean (NaN if all are)."""
    predictions, truth = predictions.bool(), truth.bool()
    positives, negatives = truth.sum(1).double(), (~truth).sum(1).double()
    hits = (predictions & truth).sum(1) / positives
    rejections = (~predictions & ~truth).sum(1) / negatives
    per_concept = torch.where((positives > 0) & (negatives > 0), (hits + rejections) / 2, torch.nan)
    return per_concept.nanmean(1)


def project(embeddings: np.ndarray, bank: ConceptBank) -> np.ndarray:
    """Concept scores (N, K): standardised embeddings dotted with the CAVs, or cosine similarities
    for a bank without a standardiser (CLIP)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if bank.mean is None:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    else:
        x = (x - bank.mean) / bank.scale
    return x @ bank.vectors.T


@dataclass
class PCBM:
    """A sparse linear classifier over standardised concept scores.

    `weights[c]` is the weight row of class `classes[c]` (softmax logits), one column per name in
    `concept_names`; because the scores are standardised, weights compare across concepts. A
    positive weight is evidence for the class relative to the others (the penalty fixes the shift
    softmax weights are otherwise only defined up to).
    """

    concept_names: list[str]
    classes: np.ndarray  # (C,) the labels the rows belong to
    weights: np.ndarray  # (C, K)
    bias: np.ndarray  # (C,)
    mean: np.ndarray  # (K,) of the training projections
    scale: np.ndarray  # (K,)
    accuracy: float  # on the eval projections

    def decision(self, projections: np.ndarray) -> np.ndarray:
        return ((np.asarray(projections, np.float64) - self.mean) / self.scale) @ self.weights.T + self.bias

    def predict(self, projections: np.ndarray) -> np.ndarray:
        return self.classes[self.decision(projections).argmax(1)]


def fit_pcbm(
    train_proj: np.ndarray,
    train_labels: np.ndarray,
    eval_proj: np.ndarray,
    eval_labels: np.ndarray,
    *,
    concept_names: Sequence[str],
    C: float = DEFAULT_PCBM_C,
    l1_ratio: float = DEFAULT_L1_RATIO,
    seed: int = 0,
) -> PCBM:
    """Multinomial elastic-net logistic regression (saga) on standardised projections.

    Saga rather than the PCBM paper's SGDClassifier: the problem is strictly convex, and saga run to
    tolerance lands on its unique optimum, so the top concepts are a function of the network alone.
    With SGD, refitting the same projections under another seed moved the top-3 sets (Jaccard
    0.87-0.94) and the weight ranks (tau 0.90-0.92), noise the size of the pruning effect being
    measured; saga gave Jaccard 1 and tau 1 for every seed, in about 0.1 s on 1000 examples.
    `seed` only orders saga's passes; the same seed gives the same fit bit for bit.
    """
    x = np.asarray(train_proj, dtype=np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0
    model = LogisticRegression(C=C, **_elastic_net(l1_ratio), solver="saga", tol=1e-4, max_iter=2000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((x - mean) / scale, np.asarray(train_labels))
    weights, bias = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # sklearn keeps one row (class 1's logit minus class 0's): split it
        weights, bias = np.vstack([-weights, weights]) / 2, np.concatenate([-bias, bias]) / 2
    pcbm = PCBM(
        concept_names=list(concept_names),
        classes=model.classes_.copy(),
        weights=weights.astype(np.float64),
        bias=bias.astype(np.float64),
        mean=mean,
        scale=scale,
        accuracy=np.nan,
    )
    if len(eval_labels):
        pcbm.accuracy = float((pcbm.predict(eval_proj) == np.asarray(eval_labels)).mean())
    return pcbm


def _columns(pcbm: PCBM, names: Sequence[str]) -> list[int]:
    index = {name: i for i, name in enumerate(pcbm.concept_names)}
    return [index[name] for name in names]


def _ranked(row: np.ndarray, names: Sequence[str], k: int) -> list[str]:
    """The (at most) k names with the largest positive weights; ties keep `names`' order."""
    order = sorted(range(len(names)), key=lambda i: (-row[i], i))
    return [names[i] for i in order[:k] if row[i] > 0]


def _shared(pcbms: Sequence[PCBM], concept_names: Sequence[str]) -> list[str]:
    return [name for name in concept_names if all(name in p.concept_names for p in pcbms)]


def top_concepts(pcbm: PCBM, concept_names: Sequence[str], k: int) -> list[list[str]]:
    """Per row of `pcbm.weights`, the k concepts with the largest positive weights (fewer if fewer
    are positive), best first."""
    names = _shared([pcbm], concept_names)
    weights = pcbm.weights[:, _columns(pcbm, names)]
    return [_ranked(row, names, k) for row in weights]


def _jaccard(a: list[str], b: list[str]) -> float:
    """NaN when neither class uses any concept: nothing to agree on is not agreement."""
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else float("nan")


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    if np.array_equal(a, b):
        return 1.0
    return float(kendalltau(a, b).statistic)  # NaN when a row is constant (e.g. all weights zero)


def consistency(reference: PCBM, other: PCBM, concept_names: Sequence[str], k: int = 3) -> dict:
    """Per shared class: Jaccard of the top-k concept sets and Kendall's tau-b of the weight rows,
    both over the concepts the two PCBMs share; plus their means (NaN taus are left out)."""
    names = _shared([reference, other], concept_names)
    classes = [c for c in reference.classes if c in set(other.classes)]
    ref_rows = {c: i for i, c in enumerate(reference.classes)}
    other_rows = {c: i for i, c in enumerate(other.classes)}
    ref_w = reference.weights[:, _columns(reference, names)]
    other_w = other.weights[:, _columns(other, names)]
    jaccard, tau = [], []
    for c in classes:
        a, b = ref_w[ref_rows[c]], other_w[other_rows[c]]
        jaccard.append(_jaccard(_ranked(a, names, k), _ranked(b, names, k)))
        tau.append(_tau(a, b))
    return {
        "k": k,
        "classes": [c.item() for c in classes],
        "concepts": names,
        "jaccard": jaccard,
        "kendall_tau": tau,
        "mean_jaccard": float(np.nanmean(jaccard)) if not np.isnan(jaccard).all() else np.nan,
        "mean_kendall_tau": float(np.nanmean(tau)) if not np.isnan(tau).all() else np.nan,
    }


def recovered_classes(
    pcbm: PCBM, concept_names: Sequence[str], class_concepts: Sequence[Sequence[str | int]]
) -> list[bool]:
    """Per class label c: are the pcbm's top-|T_c| concepts exactly T_c? `class_concepts[c]` is T_c,
    as names or as indices into `concept_names`. A class the PCBM never saw is not recovered."""
    k = max(map(len, class_concepts), default=0)
    tops = dict(zip(pcbm.classes.tolist(), top_concepts(pcbm, concept_names, k)))
    recovered = []
    for label, truth in enumerate(class_concepts):
        truth = {concept_names[t] if isinstance(t, (int, np.integer)) else t for t in truth}
        recovered.append(label in tops and set(tops[label][: len(truth)]) == truth)
    return recovered


def recovery(pcbm: PCBM, concept_names: Sequence[str], class_concepts: Sequence[Sequence[str | int]]) -> float:
    """Share of classes whose top-|T_c| concepts are exactly their true concepts T_c."""
    return float(np.mean(recovered_classes(pcbm, concept_names, class_concepts)))


def recovery_margins(
    pcbm: PCBM, concept_names: Sequence[str], class_concepts: Sequence[Sequence[str | int]]
) -> list[float]:
    """Per class label c: by how much its true concepts T_c lead its weight row w_c, relative to the
    row's largest weight,

        m_c = (min_{t in T_c} w_ct - max(0, max_{j not in T_c} w_cj)) / max_j |w_cj|,

    in [-2, 1]. A continuous version of `recovered_classes` (top concepts only count with positive
    weights, hence the floor at 0): m_c > 0 exactly when the class is recovered, barring exact ties.
    A concept the bank skipped weighs 0; an all-zero row, or a class the PCBM never saw, scores 0.
    Our own measure: the PCBM paper (Yuksekgonul et al. 2023) only lists top concepts.
    """
    weights = _vocabulary_weights(pcbm, concept_names)
    margins = []
    for label, truth in enumerate(class_concepts):
        row = weights.get(label, np.zeros(len(concept_names)))
        true = [concept_names.index(t) if isinstance(t, str) else int(t) for t in truth]
        others = np.delete(row, true)
        largest = np.abs(row).max(initial=0.0)
        lead = row[true].min() - max(0.0, others.max(initial=0.0))
        margins.append(float(lead / largest) if largest > 0 else 0.0)
    return margins


def recovery_margin(
    pcbm: PCBM, concept_names: Sequence[str], class_concepts: Sequence[Sequence[str | int]]
) -> float:
    """Mean over classes of `recovery_margins`. Unlike `recovery` (steps of 1/|classes|) it also sees
    how far the true concepts lead: a network whose shape concepts are barely decodable can still
    rank them first, with small weights."""
    return float(np.mean(recovery_margins(pcbm, concept_names, class_concepts)))


def _vocabulary_weights(pcbm: PCBM, concept_names: Sequence[str]) -> dict:
    """Class label -> weight row over the whole vocabulary (0 for concepts the bank skipped)."""
    columns = {name: i for i, name in enumerate(pcbm.concept_names)}
    rows = {}
    for label, row in zip(pcbm.classes.tolist(), pcbm.weights):
        rows[label] = np.array([row[columns[name]] if name in columns else 0.0 for name in concept_names])
    return rows


def concept_table(
    reference: PCBM, other: PCBM, class_names: Sequence[str], concept_names: Sequence[str], k: int = 3
) -> pd.DataFrame:
    """One row per shared class: the reference's and this network's top-k concepts, Jaccard, tau."""
    scores = consistency(reference, other, concept_names, k)
    names = scores["concepts"]
    ref_top = dict(zip(reference.classes.tolist(), top_concepts(reference, names, k)))
    other_top = dict(zip(other.classes.tolist(), top_concepts(other, names, k)))
    return pd.DataFrame(
        {
            "class": [class_names[c] for c in scores["classes"]],
            f"reference_top{k}": [", ".join(ref_top[c]) for c in scores["classes"]],
            f"top{k}": [", ".join(other_top[c]) for c in scores["classes"]],
            f"jaccard_top{k}": scores["jaccard"],
            "kendall_tau": scores["kendall_tau"],
        }
    )
