"""Test accuracy against sparsity, one line per method (mean over seeds, spread shaded), with the
dense trunk as a dashed line: the figure of every Lottery Ticket paper."""
from __future__ import annotations

import re

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lth_sweep.analysis import metrics as registry  # noqa: E402
from lth_sweep.analysis import noise_floor  # noqa: E402
from lth_sweep.analysis.colors import method_colors  # noqa: E402


def spread_ticks(remaining, count: int, digits: int = 3) -> list[float]:
    """Up to about `count` of the weights-remaining values, far enough apart on the log axis that
    their labels do not overlap (100, 80 and 64 would), the largest and smallest kept."""
    values = sorted({float(f"{r:.{digits}g}") for r in remaining if r > 0}, reverse=True)
    if len(values) < 3:
        return values
    gap = (np.log10(values[0]) - np.log10(values[-1])) / count
    ticks = [values[0]]
    for value in values[1:-1]:
        if np.log10(ticks[-1]) - np.log10(value) >= gap and np.log10(value) - np.log10(values[-1]) >= gap:
            ticks.append(value)
    return ticks + [values[-1]]


def accuracy_vs_sparsity(rows: list[dict], path: str | Path, title: str) -> Path:
    """`rows`: dicts with `method`, `dense_acc` and `curve` = [(sparsity, acc), ...] per round."""
    by_method, all_remaining = defaultdict(list), [100.0]
    for row in rows:
        if row["curve"]:
            by_method[row["method"]].append(row["curve"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    hidden = 0
    colors = method_colors(by_method)
    for method, curves in sorted(by_method.items()):
        length = min(len(c) for c in curves)
        remaining = 100 * (1 - np.array([[s for s, _ in c[:length]] for c in curves]).mean(0))
        accs = np.array([[a for _, a in c[:length]] for c in curves])
        drawable = remaining > 0  # a round that pruned every weight has no place on a log axis
        hidden += int((~drawable).sum())
        remaining, accs = remaining[drawable], accs[:, drawable]
        all_remaining += list(remaining)
        line = ax.plot(remaining, accs.mean(0), marker="o", ms=4, color=colors[method], label=f"{method} (n={len(curves)})")[0]
        if len(curves) > 1:
            ax.fill_between(remaining, accs.min(0), accs.max(0), color=line.get_color(), alpha=0.18)
    dense = np.array([row["dense_acc"] for row in rows if np.isfinite(row["dense_acc"])])
    if dense.size:
        ax.axhline(dense.mean(), color="black", linestyle="--", linewidth=1, label="dense trunk")
        if dense.size > 1:
            ax.axhspan(dense.min(), dense.max(), color="grey", alpha=0.12)
    ax.set_xscale("log")
    # Ticks at the sparsities the rounds reached (~8 that do not overlap), axis ending just past the last.
    ticks = spread_ticks(all_remaining, 8)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(110, min(all_remaining) * 0.85)
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if hidden:
        ax.annotate(f"{hidden} point(s) with no weights left not shown", (0.01, 0.01), xycoords="axes fraction", fontsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no round finished", transform=ax.transAxes, ha="center", color="grey")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _caveat(frame, metric: str) -> str:
    """What a panel's reader must know before reading its lines, as a second title line."""
    flag = SATURATION_FLAGS.get(metric)
    if flag in frame.columns and frame[flag].notna().any():
        saturated = int((frame[flag] == 1).sum())
        if saturated:
            return f"\n(saturated, so not shown, in {saturated} of {int(frame[flag].notna().sum())} rounds)"
    return ""


#: metric -> the 0/1 column that says a round's value was saturated and left out
SATURATION_FLAGS = {"train/early_stop_iteration": "train/early_stop_saturated"}


def metrics_vs_sparsity(frame, metrics: list[str], path: str | Path, title: str) -> Path | None:
    """A panel per metric: mean over seeds per method against weights remaining, the seeds' min-max
    shaded, the dense trunks' mean dashed (1 for consistency-with-the-trunk metrics) and the noise
    floor as a grey band (analysis/noise_floor.py: where a second dense seed lands; a method inside
    it has not moved further than reseeding would). `frame` is the tidy table of
    `analysis.query.load_sweep`. None if the sweep measured none of `metrics`."""
    frame = frame.copy()
    for metric in [m for m in metrics if m in frame.columns]:  # MLflow stores an infinite value as +-1.8e308
        frame[metric] = frame[metric].where(frame[metric].abs() < 1e300)
    metrics = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
    if not metrics:
        return None
    columns = 2 if len(metrics) == 4 else min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    colors = method_colors(frame["label"])
    for ax, metric in zip(axes.flat, metrics):
        for label, group in frame.groupby("label", sort=True):
            by_round = group.groupby("round")
            remaining = 100 * (1 - by_round["sparsity"].mean().to_numpy())
            drawable = remaining > 0  # a round that pruned every weight has no place on a log axis
            mean = by_round[metric].mean().to_numpy()[drawable]
            line = ax.plot(remaining[drawable], mean, marker="o", ms=3, color=colors[label], label=label)[0]
            if group["seed"].nunique() > 1:
                low, high = by_round[metric].min().to_numpy(), by_round[metric].max().to_numpy()
                ax.fill_between(remaining[drawable], low[drawable], high[drawable], color=line.get_color(), alpha=0.15)
        dense_column = f"dense/{metric}"
        if registry.is_consistency(metric):
            ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        elif dense_column in frame.columns:
            dense = frame.drop_duplicates("trunk")[dense_column].dropna()
            if len(dense):
                ax.axhline(dense.mean(), color="black", linestyle="--", linewidth=1)
        band = noise_floor.floor(frame, metric).spread
        if band is not None:
            ax.axhspan(*band, color="black", alpha=0.08, linewidth=0)
            if registry.is_consistency(metric):  # what a second dense seed scores; often one pair, a line
                ax.axhline(sum(band) / 2, color="grey", linestyle=":", linewidth=1.5)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.minorticks_off()
        ticks = spread_ticks(100 * (1 - frame["sparsity"]), 5, digits=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_title(metric + _caveat(frame, metric), fontsize=9)
        ax.set_xlabel("weights remaining (%)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], color="black", linestyle="--"), plt.Rectangle((0, 0), 1, 1, color="black", alpha=0.08),
        plt.Line2D([], [], color="grey", linestyle=":", linewidth=1.5),
    ]
    labels += ["dense trunk", "noise floor (dense seeds' spread)", "a second dense seed vs the trunk"]
    ncol = min(5, len(labels))
    legend_rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, (0.035 * legend_rows + 0.01) / rows ** 0.5, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dimension_figures(frame, folder: Path, title: str) -> list[Path]:
    """One figure per group of `analysis.metrics.FIGURES` (generalisation, robustness, ood, calibration,
    geometry, gradcam, concepts, lime_and_mis) from the sweep's tidy table; groups it measured
    nothing of are left out."""
    from lth_sweep.analysis.metrics import FIGURES, in_figure

    if frame.empty:
        return []
    configurations = sorted(frame["config"].unique()) if "config" in frame.columns else [None]
    paths = []
    for config in configurations:  # one configuration per figure: seeds are the only thing its bands pool
        rows = frame if config is None else frame[frame["config"] == config]
        suffix = "" if len(configurations) == 1 else "_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", str(config))
        name = title if len(configurations) == 1 else f"{title} [{config}]"
        for dimension in FIGURES:
            path = metrics_vs_sparsity(rows, in_figure(dimension, rows.columns), folder / f"{dimension}_vs_sparsity{suffix}.png",
                                       f"{name}: {dimension}")
            if path is not None:
                paths.append(path)
    return paths


def sweep_figures(rows: list[dict], frame, folder: Path, sweep: str) -> list[Path]:
    """The figures of a sweep (the accuracy curve of its summary rows, then one figure per
    dimension), written into `folder`: what the sweep logs and `lth report` shows."""
    accuracy = accuracy_vs_sparsity(rows, folder / "accuracy_vs_sparsity.png", title=f"{sweep}: test accuracy vs sparsity")
    return [accuracy, *dimension_figures(frame, folder, sweep)]
