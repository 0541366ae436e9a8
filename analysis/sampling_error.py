"""Sampling errors of the analysis metrics: how much a value would move on another draw of the
analysis sample (`se/<metric>`), and how much a round's difference from its dense trunk would
(`se_diff/<metric>`).

A round and its trunk are scored on the *same* images, so their difference has the paired error:
per image (or other unit: a class, a MIS unit) d_i = x_i - x_dense_i and se = std(d) / sqrt(N).
For accuracies this is McNemar's: only the images on which the two disagree count. Where a metric
is no mean over units (ECE, SCE, AUROC, balanced accuracies), a seeded bootstrap resamples the
same unit indices for both networks (Efron & Tibshirani 1993, ch. 6; 200 draws give the SE to
about 5%).

Every bootstrap is seeded from the analysis seed and the metric's name (`bootstrap_seed`), so the
same config logs the same values. Statistics are vectorised over draws: they take inputs with a
leading draws axis and return one value per draw.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Sequence

import torch

DRAWS = 200
#: most elements one chunk of resampled inputs may hold (memory stays ~32 MB in float64)
CHUNK_ELEMENTS = 2**22

#: resampled inputs (draws, N, ...) -> (draws,) values
Statistic = Callable[..., torch.Tensor]


def bootstrap_seed(seed: int, metric: str) -> int:
    """A generator seed from the analysis seed and the metric's name: stable across processes
    (no hash randomisation), different per metric so two metrics never share their draws."""
    digest = hashlib.sha256(f"{seed}/{metric}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def mean_se(values) -> float:
    """Standard error of a mean over independent units: std (n - 1) / sqrt(n); NaN under 2 units."""
    values = torch.as_tensor(values).double().flatten()
    values = values[~values.isnan()]
    return float(values.std() / math.sqrt(len(values))) if len(values) > 1 else math.nan


def paired_mean_se(values, reference) -> float:
    """Standard error of mean(values) - mean(reference) over the same units: the std of the
    per-unit differences / sqrt(n). On 0/1 correctness this is McNemar's paired form, which only
    the discordant units move."""
    values, reference = torch.as_tensor(values).double(), torch.as_tensor(reference).double()
    if values.shape != reference.shape:
        raise ValueError(f"paired values differ in shape: {tuple(values.shape)} vs {tuple(reference.shape)}")
    return mean_se(values - reference)


def resample_index(n: int, seed: int, draws: int = DRAWS) -> torch.Tensor:
    """(draws, n) indices drawn with replacement from a CPU generator seeded with `seed`."""
    return torch.randint(n, (draws, n), generator=torch.Generator().manual_seed(seed))


def resample_counts(n: int, seed: int, draws: int = DRAWS) -> torch.Tensor:
    """(draws, n) float64: how often each unit is drawn in the resamples of `resample_index`
    (the same draws), for statistics that are sums over units (`calibration.gap_columns`)."""
    index = resample_index(n, seed, draws)
    return torch.zeros(draws, n, dtype=torch.float64).scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))


def _per_draw(statistic: Statistic, inputs: Sequence[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """statistic on every row of `index`, in chunks of draws small enough to keep in memory."""
    per_draw = sum(t[0].numel() for t in inputs) * index.shape[1] if index.shape[1] else 1
    rows = max(1, CHUNK_ELEMENTS // max(per_draw, 1))
    return torch.cat([
        statistic(*(t[index[i : i + rows]] for t in inputs)).double() for i in range(0, len(index), rows)
    ])


def spread(values: torch.Tensor) -> float:
    """The std (n - 1) of a statistic over its draws (NaN draws left out); NaN under 2 draws."""
    values = values[~values.isnan()]
    return float(values.std()) if len(values) > 1 else math.nan


def bootstrap_se(statistic: Statistic, inputs: Sequence[torch.Tensor], seed: int, draws: int = DRAWS) -> float:
    """Standard error of statistic(*inputs), resampling the units (the first axis, shared by
    every input) with replacement: the std over `draws` seeded resamples."""
    inputs = [torch.as_tensor(t) for t in inputs]
    return spread(_per_draw(statistic, inputs, resample_index(len(inputs[0]), seed, draws)))


def paired_bootstrap_se(
    statistic: Statistic, sparse_inputs: Sequence[torch.Tensor], dense_inputs: Sequence[torch.Tensor],
    seed: int, draws: int = DRAWS,
) -> float:
    """Standard error of statistic(*sparse_inputs) - statistic(*dense_inputs) when both networks
    were scored on the same units: every draw resamples the *same* unit indices for both, so what
    the two share (which images are hard) cancels. Exactly 0 for identical inputs."""
    sparse_inputs = [torch.as_tensor(t) for t in sparse_inputs]
    dense_inputs = [torch.as_tensor(t) for t in dense_inputs]
    n = len(sparse_inputs[0])
    if any(len(t) != n for t in [*sparse_inputs, *dense_inputs]):
        raise ValueError("paired inputs must have the same number of units")
    index = resample_index(n, seed, draws)
    return spread(_per_draw(statistic, sparse_inputs, index) - _per_draw(statistic, dense_inputs, index))


def _two_sample_index(n_in: int, n_out: int, seed: int, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified resampling: the in- and out-of-distribution samples are drawn independently."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(n_in, (draws, n_in), generator=generator), torch.randint(n_out, (draws, n_out), generator=generator)


def batched_auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> torch.Tensor:
    """Per row: the probability that an in-distribution score exceeds an OOD one, ties counting
    one half (Mann-Whitney; equals sklearn's roc_auc_score). (draws, n_in), (draws, n_out) -> (draws,)."""
    from scipy.stats import rankdata

    n_in, n_out = scores_in.shape[1], scores_out.shape[1]
    ranks = torch.from_numpy(rankdata(torch.cat([scores_in, scores_out], 1).double().numpy(), axis=1))
    return (ranks[:, :n_in].sum(1) - n_in * (n_in + 1) / 2) / (n_in * n_out)


def auroc_bootstrap_se(scores_in, scores_out, seed: int, draws: int = DRAWS) -> float:
    """Bootstrap standard error of the AUROC of in- vs out-of-distribution scores."""
    index_in, index_out = _two_sample_index(len(scores_in), len(scores_out), seed, draws)
    return spread(batched_auroc(torch.as_tensor(scores_in)[index_in], torch.as_tensor(scores_out)[index_out]))


def paired_auroc_se(scores_in, scores_out, dense_in, dense_out, seed: int, draws: int = DRAWS) -> float:
    """Standard error of AUROC - dense AUROC on the same in- and out-of-distribution images: both
    networks' scores are resampled with the same (stratified) indices."""
    index_in, index_out = _two_sample_index(len(scores_in), len(scores_out), seed, draws)
    own = batched_auroc(torch.as_tensor(scores_in)[index_in], torch.as_tensor(scores_out)[index_out])
    dense = batched_auroc(torch.as_tensor(dense_in)[index_in], torch.as_tensor(dense_out)[index_out])
    return spread(own - dense)
