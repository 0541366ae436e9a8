"""Test accuracy against sparsity, one line per method (mean over seeds, spread shaded), with the
dense trunk as a dashed line: the figure of every Lottery Ticket paper."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def accuracy_vs_sparsity(rows: list[dict], path: str | Path, title: str) -> Path:
    """`rows`: dicts with `method`, `dense_acc` and `curve` = [(sparsity, acc), ...] per round."""
    by_method, all_remaining = defaultdict(list), [100.0]
    for row in rows:
        if row["curve"]:
            by_method[row["method"]].append(row["curve"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, curves in sorted(by_method.items()):
        length = min(len(c) for c in curves)
        remaining = 100 * (1 - np.array([[s for s, _ in c[:length]] for c in curves]).mean(0))
        accs = np.array([[a for _, a in c[:length]] for c in curves])
        all_remaining += list(remaining)
        line = ax.plot(remaining, accs.mean(0), marker="o", ms=4, label=f"{method} (n={len(curves)})")[0]
        if len(curves) > 1:
            ax.fill_between(remaining, accs.min(0), accs.max(0), color=line.get_color(), alpha=0.18)
    dense = np.array([row["dense_acc"] for row in rows if np.isfinite(row["dense_acc"])])
    if dense.size:
        ax.axhline(dense.mean(), color="black", linestyle="--", linewidth=1, label="dense trunk")
        if dense.size > 1:
            ax.axhspan(dense.min(), dense.max(), color="grey", alpha=0.12)
    ax.set_xscale("log")
    # Ticks at the sparsities the rounds reached (thinned to ~8), axis ending just past the last.
    ticks = sorted({float(f"{r:.3g}") for r in all_remaining}, reverse=True)
    ticks = ticks[:: max(1, len(ticks) // 8)]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(110, min(all_remaining) * 0.85)
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
