"""The end-of-sweep summary, read back from MLflow (the system of record), not from Ray."""
from __future__ import annotations

import csv
import io
import json

from mlflow.tracking import MlflowClient

from orchestrator.plan import SweepPlan, display_name


def collect_rows(plan: SweepPlan, client: MlflowClient, lineage_runs: dict, trunk_runs: dict) -> list[dict]:
    dense_by_trunk = {
        trunk_id: client.get_run(run_id).data.metrics.get("test/acc", float("nan")) for trunk_id, run_id in trunk_runs.items()
    }
    rows = []
    for spec in plan.lineages:
        run_id = lineage_runs[spec.id]
        run = client.get_run(run_id)
        acc = {m.step: m.value for m in client.get_metric_history(run_id, "test/acc")}
        sparsity = {m.step: m.value for m in client.get_metric_history(run_id, "sparsity")}
        dense = dense_by_trunk[spec.trunk.id]
        rounds = sorted(sparsity)
        last = rounds[-1] if rounds else None
        best = max(rounds, key=lambda r: (acc.get(r, -1), -r)) if rounds else None
        rows.append(
            {
                "lineage": spec.id,
                "trunk": spec.trunk.id,
                "name": display_name(spec),
                "method": spec.pruning.label,
                "seed": spec.trunk.seed,
                "rounds": f"{len(rounds)}/{spec.pruning.rounds}",
                "sparsity": sparsity.get(last, float("nan")),
                "dense_acc": dense,
                "last_acc": acc.get(last, float("nan")),
                "delta_vs_dense": acc.get(last, float("nan")) - dense,
                "best_round": best,
                "best_acc": acc.get(best, float("nan")),
                "best_sparsity": sparsity.get(best, float("nan")),
                "status": run.info.status,
                "error": run.data.tags.get("lth.error", ""),
                "run_id": run_id,
                "curve": [(sparsity[r], acc[r]) for r in rounds if r in acc],
            }
        )
    return rows


def render(rows: list[dict], fmt: str = "table") -> str:
    plain = [{k: v for k, v in row.items() if k != "curve"} for row in rows]
    if fmt == "json":
        return json.dumps(plain, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(plain[0]) if plain else [])
        writer.writeheader()
        writer.writerows(plain)
        return out.getvalue()
    width = max([len("lineage"), *(len(row["name"]) for row in plain)])
    header = f"{'lineage':{width}s} {'rounds':>6s} {'sparsity':>9s} {'dense acc':>9s} {'last acc':>9s} {'vs dense':>9s} {'best round (sparsity, acc)':>28s}"
    lines = [header, "-" * len(header)]
    for row in plain:
        best = "-" if row["best_round"] is None else f"{row['best_round']} ({row['best_sparsity']:.1%}, {row['best_acc']:.4f})"
        lines.append(
            f"{row['name']:{width}s} {row['rounds']:>6s} {row['sparsity']:>9.1%} {row['dense_acc']:>9.4f} "
            f"{row['last_acc']:>9.4f} {row['delta_vs_dense']:>+9.4f} {best:>28s}"
            + ("" if row["status"] == "FINISHED" else f"  [{row['status']}]")
        )
    return "\n".join(lines)


def metric_safe(label: str) -> str:
    """'imp@125+reinit' -> 'imp_at_125_reinit': MLflow metric names allow only [/\\w.\\- :]."""
    return label.replace("@", "_at_").replace("+", "_").replace("/", "_")


def parent_metrics(rows: list[dict]) -> dict[tuple[str, int], float]:
    """Per method, the mean over seeds of test/acc at each round (step = round), plus the dense
    accuracy at step 0: the sweep's curves, chartable on the parent run."""
    by_method: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        for round_index, (_, acc) in enumerate(row["curve"], start=1):
            by_method.setdefault(row["method"], {}).setdefault(round_index, []).append(acc)
    metrics = {
        (f"methods/{metric_safe(method)}/test/acc", step): sum(values) / len(values)
        for method, rounds in by_method.items()
        for step, values in rounds.items()
    }
    dense = {row["trunk"]: row["dense_acc"] for row in rows if row["dense_acc"] == row["dense_acc"]}
    if dense:
        metrics[("dense/test/acc", 0)] = sum(dense.values()) / len(dense)
    return metrics
