"""Calibration of a classifier's probabilities: ECE, SCE and NLL (Chen et al.'s "calibration and
reliability" dimension). Pure functions of (probabilities, labels); lower is better for all three.

Inputs are (N, C) tensors (or anything `torch.as_tensor` takes) and (N,) integer labels. Sums run
in float64 so that the result does not depend on the batch order.
"""
from __future__ import annotations

import torch

#: smallest probability NLL takes the log of, so one confident mistake costs ~27.6 nats, not inf
PROB_FLOOR = 1e-12


def _inputs(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.as_tensor(probs).detach().to(torch.float64).cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"expected probs (N, C) and labels (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("calibration metrics need at least one example")
    return probs, labels


def _bin_index(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Equal-width bins on [0, 1]: bin m (0-based) holds values in (m/M, (m+1)/M]; exactly 0 goes
    to the first bin."""
    return (torch.ceil(values * bins).long() - 1).clamp(0, bins - 1)


def _binned_gap(scores: torch.Tensor, hits: torch.Tensor, bins: int) -> torch.Tensor:
    """sum over bins of |sum of hits - sum of scores| in the bin (= |B_m| * |acc - conf|)."""
    index = _bin_index(scores, bins)
    gap = torch.zeros(bins, dtype=torch.float64)
    gap.index_add_(0, index, hits.to(torch.float64) - scores)
    return gap.abs().sum()


def ece(probs, labels, bins: int = 15) -> float:
    """Expected calibration error (Naeini et al. 2015; Guo et al. 2017).

    Each example's confidence is its largest probability, its prediction the argmax (ties: the
    lowest class index). Examples are put in `bins` equal-width bins on the confidence,
    B_m = ((m-1)/M, m/M] (confidence 0 in the first bin), and

        ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|,

    with acc(B_m) the share of correct predictions and conf(B_m) the mean confidence in B_m
    (empty bins contribute 0). In [0, 1]; 0 for a perfectly calibrated predictor.
    """
    probs, labels = _inputs(probs, labels)
    confidence, predicted = probs.max(1)
    return float(_binned_gap(confidence, predicted == labels, bins) / len(labels))


def sce(probs, labels, bins: int = 15) -> float:
    """Static calibration error (Nixon et al. 2019, "Measuring calibration in deep learning"), the
    class-wise ECE Chen et al. report:

        SCE = 1/C sum_c sum_m |B_mc|/n * |acc(B_mc) - conf(B_mc)|
            = 1/(nC) sum_c sum_m |#{i in B_mc : y_i = c} - sum_{i in B_mc} p_ic|,

    where, for each class c, B_mc holds the examples whose probability *for class c*, p_ic, falls
    in equal-width bin m (same bins as `ece`), acc(B_mc) is the share of them labelled c and
    conf(B_mc) their mean p_ic. Every example counts once per class, not just at its argmax, so
    the calibration of the non-top classes counts too. In [0, 1]; 0 when calibrated per class.
    """
    probs, labels = _inputs(probs, labels)
    n, classes = probs.shape
    total = torch.zeros((), dtype=torch.float64)
    for c in range(classes):
        total += _binned_gap(probs[:, c], labels == c, bins)
    return float(total / (n * classes))


def nll(scores, labels, *, from_logits: bool = False) -> float:
    """Mean negative log-likelihood of the true labels, in nats: -1/n sum_i log p(y_i | x_i).

    `scores` are probabilities (rows summing to 1), floored at PROB_FLOOR before the log, or, with
    `from_logits=True`, unnormalised logits, turned into log-probabilities with log_softmax (exact,
    no floor). The mean, not Chen et al.'s sum, so that it does not grow with the test set's size.
    """
    scores, labels = _inputs(scores, labels)
    if from_logits:
        log_probs = torch.log_softmax(scores, 1)
    else:
        log_probs = scores.clamp_min(PROB_FLOOR).log()
    return float(-log_probs.gather(1, labels[:, None]).mean())


# The bootstrap of ECE and SCE (analysis/sampling_error.py). Which bin an image's probability falls
# in does not change when the images are resampled, so each error is sum |counts @ G| over
# (class, bin) columns, with G[i, (c, m)] = (1[y_i = c] - p_ic) / (N C) where p_ic is in bin m, and
# counts how often each image is drawn: one sparse product for all draws, not one pass per draw.


def gap_columns(scores: torch.Tensor, hits: torch.Tensor, bins: int) -> torch.Tensor:
    """Sparse (N, K * bins) G for (N, K) scores and hits: column k * bins + m holds
    (hit - score) / (N K) of the images whose score k falls in bin m."""
    n, k = scores.shape
    rows = torch.arange(n).repeat_interleave(k)
    columns = (torch.arange(k) * bins + _bin_index(scores, bins)).flatten()
    values = ((hits.to(torch.float64) - scores) / (n * k)).flatten()
    return torch.sparse_coo_tensor(torch.stack([rows, columns]), values, (n, k * bins), check_invariants=True).coalesce()


def ece_columns(probs, labels, bins: int = 15) -> torch.Tensor:
    """G of the ECE: its one score is the confidence, its hit whether the argmax is right."""
    probs, labels = _inputs(probs, labels)
    confidence, predicted = probs.max(1)
    return gap_columns(confidence[:, None], (predicted == labels)[:, None], bins)


def sce_columns(probs, labels, bins: int = 15) -> torch.Tensor:
    """G of the SCE: every class's probability, hit when it is the label."""
    probs, labels = _inputs(probs, labels)
    hits = labels[:, None] == torch.arange(probs.shape[1])
    return gap_columns(probs, hits, bins)


def binned_error_of_counts(columns: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The ECE (of `ece_columns`) or SCE (of `sce_columns`) of every resample, given as (draws, N)
    counts of how often each image is drawn; equal to `ece`/`sce` of the resampled images."""
    return torch.sparse.mm(columns.t(), counts.t().to(torch.float64)).abs().sum(0)


def nll_per_image(probs, labels) -> torch.Tensor:
    """-log p(y_i | x_i) per image (floored as `nll`): `nll` is their mean."""
    probs, labels = _inputs(probs, labels)
    return -probs.clamp_min(PROB_FLOOR).log().gather(1, labels[:, None])[:, 0]


def sampling_errors(probs, labels, dense_probs, bins: int, seed: int) -> dict[str, float]:
    """`se/calib/ece`, `se/calib/sce` and `se/calib/nll` of this network, and, given the trunk's probabilities
    on the same images (`dense_probs`, None on the trunk), `se_diff/` of the test accuracy
    (McNemar), ECE and SCE (paired bootstrap: the same draws for both) and NLL (paired per image).
    Bootstraps are seeded from `seed` and the metric's name."""
    from lth_sweep.analysis import sampling_error as se

    probs, labels = _inputs(probs, labels)
    n, losses = len(labels), nll_per_image(probs, labels)

    def counts(metric: str) -> torch.Tensor:
        return se.resample_counts(n, se.bootstrap_seed(seed, metric))

    def paired(columns, dense_columns, metric: str) -> float:
        draws = counts(metric)
        return se.spread(binned_error_of_counts(columns, draws) - binned_error_of_counts(dense_columns, draws))

    sce = sce_columns(probs, labels, bins)
    out = {
        "se/calib/ece": se.spread(binned_error_of_counts(ece_columns(probs, labels, bins), counts("se/calib/ece"))),
        "se/calib/sce": se.spread(binned_error_of_counts(sce, counts("se/calib/sce"))),
        "se/calib/nll": se.mean_se(losses),
    }
    if dense_probs is not None:
        dense_probs, _ = _inputs(dense_probs, labels)
        out |= {
            "se_diff/test/acc": se.paired_mean_se(probs.argmax(1) == labels, dense_probs.argmax(1) == labels),
            "se_diff/calib/ece": paired(
                ece_columns(probs, labels, bins), ece_columns(dense_probs, labels, bins), "se_diff/calib/ece"
            ),
            "se_diff/calib/sce": paired(sce, sce_columns(dense_probs, labels, bins), "se_diff/calib/sce"),
            "se_diff/calib/nll": se.paired_mean_se(losses, nll_per_image(dense_probs, labels)),
        }
    return {key: value for key, value in out.items() if value == value}
