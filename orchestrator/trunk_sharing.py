"""Dense trunks: each trained once, as a Ray task whose result stays in the object store and is
handed by reference to every lineage that needs it. A trunk whose MLflow run already finished (a
rerun of the sweep) is loaded from that run's artifacts instead, also by a Ray task: an object
made by a task is rebuilt by running the task again if the node holding it dies, which an object
`ray.put` by the driver is not. The loading task takes no CPU, so that rebuilding it never waits
for a CPU held by the very trials blocked on it, and it prefers a worker node (soft affinity)
over the driver's: a head node's memory also holds Ray's control plane.

Stored trunks carry `trunk/manifest.json`, the sha256 of each tensor file; a file that fails it
(or a run without a manifest) is reported and the trunk retrained: a trunk is a deterministic
function of its spec, so retraining costs one dense training and changes no result, where
stopping would leave the user to find and delete the run by hand.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import ray
import torch
from mlflow.tracking import MlflowClient
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from safetensors.torch import load_file

from lth_sweep.orchestrator.mlflow_runs import SweepTracker
from lth_sweep.trainables import record
from lth_sweep.trainables.checkpoint import sha256
from lth_sweep.trainables.specs import TrunkSpec
from lth_sweep.trainables.run_logger import RunLogger
from lth_sweep.trainables.trunk import TrunkResult, as_tensors, to_numpy, train_trunk
from lth_sweep.trainables.twin import train_twin

MANIFEST = record.TRUNK_MANIFEST


class TrunkUnusable(RuntimeError):
    """A stored trunk is corrupt or lacks something this sweep needs."""


@ray.remote
def _train_trunk_task(
    spec: TrunkSpec, rewinds: tuple[int, ...], threads: int, validation_every: int = 0, validation_images: int | None = None
) -> TrunkResult:
    torch.set_num_threads(threads)
    return train_trunk(spec, rewinds, validation_every, validation_images)


@ray.remote
def _train_twin_task(spec: TrunkSpec, threads: int) -> TrunkResult:
    torch.set_num_threads(threads)
    return train_twin(spec)


def start_twin(spec: TrunkSpec, cpus: float, gpus: float = 0) -> ray.ObjectRef:
    """Trains the dense twin of trunk `spec` (`trainables.twin`) as a Ray task asking for `cpus`
    and `gpus`; returns the object ref of its TrunkResult. Its weights are measured, never stored."""
    task = _train_twin_task.options(num_cpus=cpus, num_gpus=gpus)
    return task.remote(spec, max(1, int(cpus)))


@ray.remote(num_returns=2)
def _load_trunk_task(
    uri: str, run_id: str, spec: TrunkSpec, rewinds: tuple[int, ...]
) -> tuple[str | None, TrunkResult | None]:
    """(None, the trunk) or (why it cannot be used, None): the driver reads only the first, small
    object, so the trunk itself stays on the node that loaded it and remains reconstructable."""
    try:
        return None, load_trunk(MlflowClient(uri), run_id, spec, rewinds)
    except TrunkUnusable as error:
        return str(error), None
    except Exception as error:  # an unreadable file, say: retraining is the way out either way
        return f"run {run_id}: {type(error).__name__}: {error}", None


def trunk_name(spec: TrunkSpec) -> str:
    return f"trunk {spec.model.name} {spec.data.name} s{spec.seed}"


#: the dense trunks' colour in MLflow's charts: the reference every method is drawn against
TRUNK_COLOR = "#333333"


def trunk_tags(spec: TrunkSpec) -> dict[str, str]:
    return {record.SEED: str(spec.seed), record.RUN_COLOR: TRUNK_COLOR}


def _log_trunk(tracker: SweepTracker, run_id: str, result: TrunkResult) -> None:
    """Tensors, then the manifest of their checksums, then metrics; FINISHED marks it complete."""
    logger = RunLogger(tracker.uri, run_id)
    states = {"init": result.init, "final": result.final, **{f"rewind_{k}": s for k, s in result.snapshots.items()}}
    digests = {
        f"{name}.safetensors": logger.log_tensors(record.trunk_file(name), as_tensors(state))
        for name, state in states.items()
    }
    tracker.client.log_text(run_id, json.dumps({"sha256": digests}, indent=1), f"{record.TRUNK_FOLDER}/{MANIFEST}")
    metrics = {**result.metrics, "sparsity": 0.0, "time/train_seconds": result.seconds}
    tracker.log_missing_metrics(run_id, {(key, 0): value for key, value in metrics.items()})  # a retrained trunk too
    tracker.client.set_tag(run_id, record.DEVICE, result.device)
    tracker.client.set_terminated(run_id, "FINISHED")


def load_trunk(client: MlflowClient, run_id: str, spec: TrunkSpec, rewinds: tuple[int, ...]) -> TrunkResult:
    """The trunk stored in a finished run, each file checked against the run's manifest."""
    run = client.get_run(run_id)
    needed = ["init", "final", *(f"rewind_{k}" for k in rewinds if k > 0)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(run_id, record.TRUNK_FOLDER, tmp))
        try:
            digests = json.loads((folder / MANIFEST).read_text())["sha256"]
        except (OSError, ValueError, KeyError) as error:
            raise TrunkUnusable(f"run {run_id}: trunk/{MANIFEST} missing or unreadable ({type(error).__name__})") from None
        states = {}
        for name in needed:
            file = folder / f"{name}.safetensors"
            if file.name not in digests or not file.exists():
                raise TrunkUnusable(f"run {run_id} has no trunk/{file.name}")
            if sha256(file) != digests[file.name]:
                raise TrunkUnusable(
                    f"run {run_id}: artifact trunk/{file.name} is truncated or altered (sha256 differs from trunk/{MANIFEST})"
                )
            states[name] = to_numpy(load_file(file))
    return TrunkResult(
        spec=spec,
        init=states["init"],
        snapshots={k: states[f"rewind_{k}"] for k in rewinds if k > 0},
        final=states["final"],
        metrics={k: v for k, v in run.data.metrics.items() if k.startswith("test/")},
        seconds=run.data.metrics.get("time/train_seconds", 0.0),
        total_iterations=spec.total_iterations(),
    )


def _worker_nodes() -> list[str]:
    """Live nodes with CPUs other than the driver's (none on a one-node Ray)."""
    here = ray.get_runtime_context().get_node_id()
    return sorted(
        node["NodeID"] for node in ray.nodes()
        if node["Alive"] and node["NodeID"] != here and node["Resources"].get("CPU", 0) > 0
    )


def provide_trunks(
    plan: dict, tracker: SweepTracker, cpus: float, say, gpus: float = 0,
    validation_every: int = 0, validation_images: int | None = None,
) -> tuple[dict[str, tuple[ray.ObjectRef, str]], dict[str, str]]:
    """(trunk id -> (object ref of its TrunkResult, its MLflow run id), trunk id -> why it failed).
    A trunk that fails fails its own lineages only; the caller decides what that means.
    Trunks train with the resources of one trial (`cpus`, `gpus`), so a GPU sweep trains them on a GPU,
    and measure the early-stopping iteration as the lineages do (`validation_every`, `validation_images`)."""
    provided, failed, loading, training = {}, {}, {}, {}

    def train(trunk_id: str, spec: TrunkSpec, rewinds: tuple[int, ...], run_id: str) -> None:
        tracker.reopen(run_id)
        task = _train_trunk_task.options(num_cpus=cpus, num_gpus=gpus)
        ref = task.remote(spec, rewinds, max(1, int(cpus)), validation_every, validation_images)
        training[ref] = (trunk_id, spec, run_id)
        say(f"trunk {trunk_id} ({trunk_name(spec)}): training")

    nodes = _worker_nodes()
    for trunk_id, (spec, rewinds) in plan.items():
        run = tracker.child(record.TRUNK_KIND, spec, trunk_name(spec), tags=trunk_tags(spec))
        if run.info.status == "FINISHED":
            where = "DEFAULT" if not nodes else NodeAffinitySchedulingStrategy(nodes[len(loading) % len(nodes)], soft=True)
            task = _load_trunk_task.options(num_cpus=0, scheduling_strategy=where)
            problem, ref = task.remote(tracker.uri, run.info.run_id, spec, rewinds)
            loading[trunk_id] = (spec, rewinds, run.info.run_id, problem, ref)
        else:
            train(trunk_id, spec, rewinds, run.info.run_id)
    for trunk_id, (spec, rewinds, run_id, problem, ref) in loading.items():
        try:
            reason = ray.get(problem)
        except Exception as error:  # the loading task itself died
            reason = f"{type(error).__name__}: {error}"
        if reason is None:
            provided[trunk_id] = (ref, run_id)
            say(f"trunk {trunk_id} ({trunk_name(spec)}): reused from MLflow run {run_id}, not trained again")
            continue
        say(f"trunk {trunk_id} ({trunk_name(spec)}): stored trunk not used: {reason}; retraining")
        RunLogger(tracker.uri, run_id).note(None, [f"stored trunk not used: {reason}; retrained"])
        train(trunk_id, spec, rewinds, run_id)
    while training:
        [done], _ = ray.wait(list(training), num_returns=1)
        trunk_id, spec, run_id = training.pop(done)
        try:
            result: TrunkResult = ray.get(done)
        except Exception as error:
            cause = getattr(error, "cause", None) or error
            failed[trunk_id] = f"trunk {trunk_id} ({trunk_name(spec)}) failed: {type(cause).__name__}: {cause}"
            tracker.fail(run_id, f"{type(cause).__name__}: {cause}")
            say(failed[trunk_id])
            continue
        _log_trunk(tracker, run_id, result)
        provided[trunk_id] = (done, run_id)
        say(
            f"trunk {trunk_id} ({trunk_name(spec)}): dense test/acc {result.metrics['test/acc']:.4f} "
            f"in {result.seconds:.1f}s"
        )
    return provided, failed
