"""Dense trunks: each trained once, as a Ray task whose result stays in the object store and is
handed by reference to every lineage that needs it. A trunk whose MLflow run already finished (a
rerun, or another sweep of the same name) is loaded from that run's artifacts instead."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import ray
import torch
from mlflow.entities import Metric
from safetensors.torch import load_file

from orchestrator.tracking import SweepTracker
from trainables.specs import TrunkSpec
from trainables.tracking import RunLogger
from trainables.trunk import TrunkResult, as_tensors, to_numpy, train_trunk


class TrunkFailed(RuntimeError):
    """A dense trunk could not be trained; its lineages cannot run."""


@ray.remote
def _train_trunk_task(spec: TrunkSpec, rewinds: tuple[int, ...], threads: int) -> TrunkResult:
    torch.set_num_threads(threads)
    return train_trunk(spec, rewinds)


def trunk_name(spec: TrunkSpec) -> str:
    return f"trunk {spec.model.name} {spec.data.name} s{spec.seed}"


def _log_trunk(tracker: SweepTracker, run_id: str, result: TrunkResult) -> None:
    logger = RunLogger(tracker.uri, run_id)
    logger.log_tensors("trunk/init.safetensors", as_tensors(result.init))
    logger.log_tensors("trunk/final.safetensors", as_tensors(result.final))
    for iteration, state in result.snapshots.items():
        logger.log_tensors(f"trunk/rewind_{iteration}.safetensors", as_tensors(state))
    now = int(time.time() * 1000)
    metrics = {**result.metrics, "sparsity": 0.0, "time/train_seconds": result.seconds}
    tracker.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    tracker.client.set_terminated(run_id, "FINISHED")


def _load_trunk(tracker: SweepTracker, run, spec: TrunkSpec, rewinds: tuple[int, ...]) -> TrunkResult | None:
    """The trunk stored in a finished run, or None if the run lacks something this sweep needs."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(tracker.client.download_artifacts(run.info.run_id, "trunk", tmp))
            states = {f.stem: to_numpy(load_file(f)) for f in folder.glob("*.safetensors")}
        except Exception:
            return None
    needed = {"init", "final"} | {f"rewind_{k}" for k in rewinds if k > 0}
    if not needed <= set(states):
        return None
    return TrunkResult(
        spec=spec,
        init=states["init"],
        snapshots={k: states[f"rewind_{k}"] for k in rewinds if k > 0},
        final=states["final"],
        metrics={k: v for k, v in run.data.metrics.items() if k.startswith("test/")},
        seconds=run.data.metrics.get("time/train_seconds", 0.0),
        total_iterations=spec.total_iterations(),
    )


def provide_trunks(plan: dict, tracker: SweepTracker, cpus: float, say) -> dict[str, tuple[ray.ObjectRef, str]]:
    """Trunk id -> (object ref of its TrunkResult, its MLflow run id)."""
    provided, pending = {}, {}
    for trunk_id, (spec, rewinds) in plan.items():
        run = tracker.child("trunk", spec, trunk_name(spec))
        run_id = run.info.run_id
        if run.info.status == "FINISHED" and (stored := _load_trunk(tracker, run, spec, rewinds)) is not None:
            provided[trunk_id] = (ray.put(stored), run_id)
            say(f"trunk {trunk_id} ({trunk_name(spec)}): reused from MLflow run {run_id}")
            continue
        tracker.reopen(run_id)
        ref = _train_trunk_task.options(num_cpus=cpus).remote(spec, rewinds, max(1, int(cpus)))
        pending[ref] = (trunk_id, spec, run_id)
        say(f"trunk {trunk_id} ({trunk_name(spec)}): training")
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        trunk_id, spec, run_id = pending.pop(done)
        try:
            result: TrunkResult = ray.get(done)
        except Exception as error:
            cause = getattr(error, "cause", None) or error
            RunLogger(tracker.uri, run_id).finish("FAILED", error=f"{type(cause).__name__}: {cause}")
            raise TrunkFailed(f"trunk {trunk_id} ({trunk_name(spec)}) failed: {type(cause).__name__}: {cause}") from None
        _log_trunk(tracker, run_id, result)
        provided[trunk_id] = (done, run_id)
        say(
            f"trunk {trunk_id} ({trunk_name(spec)}): dense test/acc {result.metrics['test/acc']:.4f} "
            f"in {result.seconds:.1f}s"
        )
    return provided
