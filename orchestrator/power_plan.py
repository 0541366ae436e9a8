"""What a planned sweep's seeds can detect, for the dry run (`lth sweep CONFIG --dry-run --like SWEEP`).

The noise between seeds is read from a finished sweep of similar networks: per metric, the pooled
within-method sd of the per-seed differences from dense that `lth tickets`' test across methods
uses (analysis/power.py), pooled again over that sweep's configurations (root mean square). With
the planned number of seeds per method it states the smallest difference between two methods
detected with 80% power, and the seeds a difference of one margin needs. The registry holds no
default for this noise: it depends on the network, the data and the recipe, and a number that
pretends otherwise would be a claim without data.
"""
from __future__ import annotations

import math

from lth_sweep.analysis.power import detectable_difference, seeds_needed


def pooled_noise(verdicts: dict) -> dict[str, tuple[float, float]]:
    """metric -> (the seeds' sd pooled over configurations, its margin) from `analysis.sweep_verdicts.judge`."""
    sigmas: dict[str, list[float]] = {}
    margins: dict[str, float] = {}
    for configuration in verdicts["configurations"]:
        for metric, block in configuration["metrics"].items():
            sigma = block["methods_test"]["sigma"]
            if sigma is not None and math.isfinite(sigma) and sigma > 0:
                sigmas.setdefault(metric, []).append(sigma)
                margins[metric] = block["margin"]["value"]
    return {m: (math.sqrt(sum(s * s for s in v) / len(v)), margins[m]) for m, v in sigmas.items()}


def power_lines(seeds: int, verdicts: dict, like: str) -> list[str]:
    noise = pooled_noise(verdicts)
    if not noise:
        return [f"power: sweep {like!r} has no metric with a spread between seeds (one seed, or one method): nothing to state"]
    lines = [f"power with {seeds} seed(s) per method, from the noise between seeds of sweep {like!r} "
             "(two-sided two-sample t at 5%, 80% power):"]
    width = max(len(m) for m in noise)
    for metric, (sigma, margin) in noise.items():
        detectable = detectable_difference(sigma, seeds)
        needed = seeds_needed(margin, sigma)
        found = "cannot say with 1 seed" if not math.isfinite(detectable) else f"detects {detectable:.3g}"
        need = f"{needed} seeds" if needed else "more than 1000 seeds"
        lines.append(f"  {metric:{width}s}  seeds' sd {sigma:.3g}: {found}; a difference of one margin ({margin:.3g}) needs {need}")
    return lines
