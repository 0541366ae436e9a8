"""The dense twins of a sweep's trunks (`trainables.twin`), trained and measured beside the lineages.

Each trunk whose run lacks `twin/` metrics gets its twin trained once (`trunk_sharing.start_twin`)
and measured against the trunk's reference on the analysis actors, logged to the trunk's run. A
resumed sweep finds the metrics there and trains nothing. The twin is analysis work, not a trial:
its task asks for what one analysis actor asks for (`analysis.cpus_per_actor`, `gpus_per_actor`),
at most `analysis.actors` twins at a time, so on a laptop (`cpus_per_actor: 0`) it shares the
cores as the actors do instead of holding lineages back. A driver thread submits each
measurement once its twin has trained; the pool's `drain` waits for that thread. A twin that fails
is reported and leaves its trunk without `twin/` metrics: no lineage depends on it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import ray
from mlflow.tracking import MlflowClient

from lth_sweep.analysis.actors import AnalysisPool, has_twin
from lth_sweep.orchestrator.trunk_sharing import start_twin
from lth_sweep.trainables.specs import TrunkSpec

Say = Callable[[str], None]


def start_twins(
    pool: AnalysisPool, trunks: dict[str, tuple[ray.ObjectRef, str]], specs: dict[str, TrunkSpec],
    references: dict[str, ray.ObjectRef], say: Say,
) -> list[str]:
    """Starts the twins of `trunks` (trunk id -> (object ref of its TrunkResult, its run id)) that
    are not measured yet, unless `analysis.twin` is off; returns their trunk ids."""
    if not pool.spec.twin:
        return []
    client = MlflowClient(pool.tracking_uri)
    jobs = [(tid, specs[tid], run_id) for tid, (_, run_id) in trunks.items() if not has_twin(client, run_id)]
    if jobs:
        pool.feed(threading.Thread(target=_train_and_measure, args=(pool, jobs, references, say), name="lth-twins", daemon=True))
    return [tid for tid, _, _ in jobs]


def _train_and_measure(pool: AnalysisPool, jobs: list[tuple[str, TrunkSpec, str]], references: dict, say: Say) -> None:
    """Keeps `len(pool.actors)` twins training; each one trained goes to the actors to be measured."""
    spec = pool.spec
    waiting, training, measuring = list(jobs), {}, {}
    try:
        while waiting or training:
            while waiting and len(training) < len(pool.actors):
                tid, trunk, run_id = waiting.pop(0)
                training[start_twin(trunk, spec.cpus_per_actor, spec.gpus_per_actor)] = (tid, run_id)
            [done], _ = ray.wait(list(training), num_returns=1)
            tid, run_id = training.pop(done)
            measuring[tid] = pool.twin(len(measuring), done, references[tid], run_id)
        for tid, ref in measuring.items():
            _report(tid, ref, say)
    except Exception as error:  # noqa: BLE001 - Ray shut down under it (Ctrl-C): the twins are missing, nothing else
        say(f"dense twins not all measured: {type(error).__name__}: {error}")


def _report(trunk_id: str, ref: ray.ObjectRef, say: Say) -> None:
    try:
        metrics = ray.get(ref)
    except Exception as error:  # noqa: BLE001 - the twin's training or measurement failed: say why, go on
        cause = error.cause if getattr(error, "cause", None) is not None else error
        say(f"trunk {trunk_id}: dense twin failed: {type(cause).__name__}: {cause}")
        return
    say(f"trunk {trunk_id}: dense twin (same init, another data order) measured ({twin_line(metrics)})")


def twin_line(metrics: dict[str, float]) -> str:
    shown = {"twin/test/acc": "test/acc", "twin/xai/gradcam_rank_corr": "Grad-CAM rho vs the trunk"}
    parts = [f"{label} {metrics[key]:.3f}" for key, label in shown.items() if key in metrics]
    return ", ".join(parts) or "already logged"
