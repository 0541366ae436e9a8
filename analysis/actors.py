"""Analysis on Ray actors: trials hand each round's network to the pool and keep training.

The driver starts the pool, asks it for each trunk's `Reference` (the dense side of every
comparison, computed once per trunk and shared through the object store), and gives trials the
actor handles. An actor logs what it measured straight to the lineage's MLflow run at
step = round, in one batch whose last metric (`analysis/seconds`) marks the round as analysed, so a
replayed request (a restarted trial, a retried task) is answered from MLflow instead of logged twice.
Actors restart when their process dies and their calls are retried (`max_restarts`,
`max_task_retries`). With `analysis.gpus_per_actor` each actor asks Ray for that share of a GPU
and measures where `analysis.device` says, and tags every run it logs to with it.
"""
from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
import torch
from mlflow.tracking import MlflowClient

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis.device import DEVICE_TAG, actor_device, describe, use_full_precision
from lth_sweep.analysis.dimension import Network, Reference
from lth_sweep.analysis.measure import measure
from lth_sweep.analysis.noise_floor import FLOOR_PREFIX
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.trainables import record
from lth_sweep.trainables.data import Dataset
from lth_sweep.trainables.specs import LineageSpec, TrunkSpec
from lth_sweep.trainables.trunk import TrunkResult
from lth_sweep.trainables.record import TWIN_PREFIX

DONE_MARKER = record.ANALYSIS_DONE
#: A lineage handed to the pool was validated, its files checked, before the sweep started: each
#: round's validation does not read the dataset again.
PATHS_CHECKED = {"check_paths": False}


def _state_dict(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(array) for name, array in arrays.items()}  # copies: arrays may be read-only


def has_twin(client: MlflowClient, run_id: str) -> bool:
    """Whether the trunk's run holds its dense twin's measurement (`twin/` metrics) already."""
    return any(key.startswith(TWIN_PREFIX) for key in client.get_run(run_id).data.metrics)


def analysed_steps(client: MlflowClient, run_id: str) -> set[int]:
    return record.steps_with(client, run_id, DONE_MARKER)


def log_measurements(
    client: MlflowClient, run_id: str, step: int, metrics: dict[str, float], folder: Path, dense_grid: bytes | None = None
) -> None:
    """Artifacts first, then the Grad-CAM grid as the image of this step (and on a lineage, its
    trunk's grid `dense_grid` as step 0, where MLflow's image slider opens), then the metrics in one
    batch ending with the done marker."""
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.log_artifact(run_id, str(file), str(file.parent.relative_to(folder)) or None)
    logged = image_steps(client, run_id)
    grids = {step: grid.read_bytes() for grid in sorted(folder.glob(record.gradcam_grid("*")))}
    if dense_grid is not None and grids:
        grids.setdefault(0, dense_grid)
    for image_step, png in sorted(grids.items()):
        if image_step not in logged:  # replayed after its images were logged, before its done marker
            log_gradcam_image(client, run_id, image_step, png)
    record.log_metrics(client, run_id, step, metrics, marker=DONE_MARKER)


def image_steps(client: MlflowClient, run_id: str, key: str = record.GRADCAM_IMAGES) -> set[int]:
    """The steps at which image `key` is logged: MLflow keeps each as
    `images/<key>+step+<step>+timestamp+<ms>+<uuid>.png` (and a compressed `.webp` beside it)."""
    prefix = f"{key.replace('/', '~')}+step+"
    steps = set()
    for entry in client.list_artifacts(run_id, "images"):
        name = entry.path.rsplit("/", 1)[-1]
        if name.startswith(prefix):
            steps.add(int(name[len(prefix):].split("+", 1)[0]))
    return steps


def log_gradcam_image(client: MlflowClient, run_id: str, step: int, png: bytes) -> None:
    """A Grad-CAM grid as step `step` of the run's image `gradcam`: the run page's image chart
    walks through the rounds with its step slider."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        client.log_image(run_id, image.convert("RGB"), key=record.GRADCAM_IMAGES, step=step, synchronous=True)


class Analyzer:
    """Plain-Python core of the actor (also used in-process by tests and benchmarks)."""

    def __init__(self, spec: AnalysisSpec | dict, threads: int = 1, device: torch.device | str = "cpu"):
        self.spec = spec if isinstance(spec, AnalysisSpec) else AnalysisSpec.model_validate(spec)
        self.threads = threads
        self.device = torch.device(device)
        self.cache: dict = {}
        self._datasets: dict[str, Dataset] = {}

    def _network(self, trunk: TrunkSpec, weights: dict[str, np.ndarray], masks, label: str, folder: Path) -> Network:
        from lth_sweep.trainables.trunk import build_for, cached_dataset

        torch.set_num_threads(self.threads)
        dataset = cached_dataset(trunk.data)
        model = build_for(trunk, dataset)
        model.load_state_dict(_state_dict(weights))
        # Channels-last: convolutions and pooling on the CPU run ~2.5x faster than in the default
        # layout here (bench/RESULTS.md); the values agree to float rounding.
        model = model.to(self.device, memory_format=torch.channels_last)
        masks = {name: torch.as_tensor(np.asarray(mask)).to(self.device, copy=True) for name, mask in (masks or {}).items()}
        return Network(model.eval(), masks, dataset, self.spec, label, folder, self.cache, data_id=trunk.data.id)

    def reference(self, trunk: TrunkSpec, final: dict[str, np.ndarray]) -> tuple[dict[str, float], Reference, Path]:
        folder = Path(tempfile.mkdtemp(prefix="lth-analysis-"))
        started = time.perf_counter()
        metrics, reference = measure(self._network(trunk, final, {}, "dense", folder))
        metrics[DONE_MARKER] = time.perf_counter() - started
        return metrics, reference, folder

    def floor(self, trunk: TrunkSpec, final: dict[str, np.ndarray], other: Reference) -> dict[str, float]:
        """The noise floor's consistency side: this dense trunk measured against the reference of
        another trunk that differs only in its seed, as `floor/<metric>` for every consistency
        metric (what a second dense seed scores where the trunk scores 1)."""
        return self._consistency(trunk, final, other, FLOOR_PREFIX, "floor")

    def twin(self, twin: TrunkResult, reference: Reference) -> dict[str, float]:
        """The trunk's dense twin (`trainables.twin`: same init, another data order) measured
        against the trunk's `reference`, as `twin/<metric>` for every consistency metric, with the
        twin's own `twin/test/acc`: the consistency floor of SGD noise alone."""
        metrics = self._consistency(twin.spec, twin.final, reference, TWIN_PREFIX, "twin")
        return {**metrics, f"{TWIN_PREFIX}test/acc": twin.metrics["test/acc"]}

    def _consistency(
        self, trunk: TrunkSpec, final: dict[str, np.ndarray], reference: Reference, prefix: str, label: str
    ) -> dict[str, float]:
        """The consistency metrics of the network `final` against `reference`, each key prefixed."""
        folder = Path(tempfile.mkdtemp(prefix="lth-analysis-"))
        try:
            metrics, _ = measure(self._network(trunk, final, {}, label, folder), reference)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return {
            f"{prefix}{key}": value for key, value in metrics.items()
            if "/class/" not in key and registry.is_consistency(key)
        }

    def analyze(
        self, lineage: LineageSpec, reference: Reference, round_index: int, weights: dict[str, np.ndarray], masks
    ) -> tuple[dict[str, float], Path]:
        folder = Path(tempfile.mkdtemp(prefix="lth-analysis-"))
        started = time.perf_counter()
        net = self._network(lineage.trunk, weights, masks, f"round_{round_index:02d}", folder)
        metrics, _ = measure(net, reference)
        metrics[DONE_MARKER] = time.perf_counter() - started
        return metrics, folder


@ray.remote(max_restarts=-1, max_task_retries=-1)
class AnalysisActor:
    def __init__(self, spec: dict, tracking_uri: str, threads: int = 1):
        device = actor_device()
        use_full_precision(device)
        self.analyzer = Analyzer(spec, threads, device)
        torch.set_num_threads(threads)  # before `describe`, which names the threads
        self.device = describe(device)
        self.client = MlflowClient(tracking_uri)
        self.tagged: set[str] = set()

    def ping(self) -> None:
        """Runs after every call queued before it: what `AnalysisPool.drain` waits on."""

    def placement(self) -> str:
        """Where this actor measures, as its runs' `lth.analysis_device` tag says."""
        return self.device

    def _tag(self, run_id: str) -> None:
        if run_id not in self.tagged:
            self.client.set_tag(run_id, DEVICE_TAG, self.device)
            self.tagged.add(run_id)

    def reference(self, trunk: TrunkResult, run_id: str) -> Reference:
        """The trunk's reference; its dense values are logged to the trunk's run at step 0 once."""
        metrics, reference, folder = self.analyzer.reference(trunk.spec, trunk.final)
        self._tag(run_id)
        if 0 not in analysed_steps(self.client, run_id):
            log_measurements(self.client, run_id, 0, metrics, folder)
        return reference

    def floor(self, trunk: TrunkResult, other: Reference, run_id: str) -> dict[str, float]:
        """Logs this trunk's dense-vs-dense agreement with `other` at step 0 of its run, once."""
        if any(key.startswith(FLOOR_PREFIX) for key in self.client.get_run(run_id).data.metrics):
            return {}
        metrics = self.analyzer.floor(trunk.spec, trunk.final, other)
        record.log_metrics(self.client, run_id, 0, dict(sorted(metrics.items())))
        return metrics

    def twin(self, twin: TrunkResult, reference: Reference, run_id: str) -> dict[str, float]:
        """Logs the trunk's dense twin against the trunk's reference at step 0 of the trunk's run,
        once: a replayed call (a resumed sweep, a retried task) finds it there and logs nothing."""
        if has_twin(self.client, run_id):
            return {}
        metrics = self.analyzer.twin(twin, reference)
        record.log_metrics(self.client, run_id, 0, dict(sorted(metrics.items())))
        return metrics

    def analyze(
        self, *, lineage: dict, reference: Reference, round_index: int, weights: dict[str, np.ndarray],
        masks: dict[str, np.ndarray], run_id: str,
    ) -> dict[str, float]:
        """`trainables.round_analysis.RoundAnalyst`: one round measured and logged, once; a replay
        answers with what was logged."""
        logged = record.batch_at(self.client, run_id, round_index, DONE_MARKER)  # {} unless measured already
        if logged:
            return logged
        metrics, folder = self.analyzer.analyze(LineageSpec.model_validate(lineage, context=PATHS_CHECKED), reference, round_index, weights, masks)
        self._tag(run_id)
        log_measurements(self.client, run_id, round_index, metrics, folder, dense_grid=reference.grid)
        return metrics


def pool_shortfall(spec: AnalysisSpec, cluster: dict[str, float]) -> str | None:
    """What no node set of `cluster` (`ray.cluster_resources()`) could give one actor, in the
    config's terms; None when an actor fits. (An autoscaling cluster must start with one node of
    each kind an actor needs, as for trials.)"""
    for name, wanted, field in (("CPU", spec.cpus_per_actor, "cpus_per_actor"), ("GPU", spec.gpus_per_actor, "gpus_per_actor")):
        if wanted > cluster.get(name, 0) + 1e-9:
            return (
                f"analysis.{field}: {wanted:g} {name}s per analysis actor, but the Ray cluster has "
                f"{cluster.get(name, 0):g}; the actors would never start and every round would wait for them"
            )
    return None


class AnalysisPool:
    """The actors of one sweep, started by the driver and handed to every trial. The driver has
    checked that one fits the cluster (`pool_shortfall`, through `orchestrator.ray_session.check_fits`,
    before any run was opened): an actor larger than the cluster would never start."""

    def __init__(self, spec: AnalysisSpec, tracking_uri: str):
        self.spec = spec
        self.tracking_uri = tracking_uri
        self.feeders: list[threading.Thread] = []  # driver threads still submitting work (`feed`)
        options = {"num_cpus": spec.cpus_per_actor, "num_gpus": spec.gpus_per_actor}
        threads = max(1, int(spec.cpus_per_actor))
        self.actors = [
            AnalysisActor.options(**options).remote(spec.model_dump(mode="json"), tracking_uri, threads)
            for _ in range(spec.actors)
        ]

    def placements(self) -> list[str]:
        """Where each actor measures (`lth.analysis_device`), for the driver to say."""
        return ray.get([actor.placement.remote() for actor in self.actors])

    def references(self, trunks: dict[str, tuple[ray.ObjectRef, str]]) -> dict[str, ray.ObjectRef]:
        """Trunk id -> object ref of its Reference, computed on the actors in parallel; `trunks`
        maps trunk ids to (object ref of the TrunkResult, the trunk's MLflow run id)."""
        refs = {}
        for index, (trunk_id, (trunk_ref, run_id)) in enumerate(trunks.items()):
            refs[trunk_id] = self.actors[index % len(self.actors)].reference.remote(trunk_ref, run_id)
        return refs

    def floors(self, trunks: dict[str, tuple[ray.ObjectRef, str]], specs: dict[str, TrunkSpec], references: dict) -> int:
        """Measures each trunk against the reference of the next seed of its configuration (a ring
        over the seeds), for the noise floor; returns how many were submitted. Trunks without a
        sibling (one seed) have no dense-vs-dense floor."""
        groups: dict[str, list[str]] = {}
        for trunk_id in trunks:
            groups.setdefault(specs[trunk_id].model_copy(update={"seed": 0}).id, []).append(trunk_id)
        submitted = 0
        for members in groups.values():
            members.sort(key=lambda trunk_id: specs[trunk_id].seed)
            for index, trunk_id in enumerate(members if len(members) > 1 else []):
                other = members[(index + 1) % len(members)]
                trunk_ref, run_id = trunks[trunk_id]
                self.actors[submitted % len(self.actors)].floor.remote(trunk_ref, references[other], run_id)
                submitted += 1
        return submitted

    def twin(self, index: int, twin: ray.ObjectRef, reference: ray.ObjectRef, run_id: str) -> ray.ObjectRef:
        """Measures a trunk's dense twin (object ref of its TrunkResult) against the trunk's
        reference on actor `index` (round-robin), logged to the trunk's run `run_id` once. Submit it
        once the twin has trained: an actor runs its calls in order, so a call still waiting for its
        arguments would hold up every round queued behind it."""
        return self.actors[index % len(self.actors)].twin.remote(twin, reference, run_id)

    def feed(self, thread: threading.Thread) -> None:
        """Starts a driver thread that submits work to the actors as its inputs arrive (the dense
        twins: `orchestrator.twin_handoff`); `drain` waits for it."""
        self.feeders.append(thread)
        thread.start()

    def drain(self) -> None:
        """Returns once every analysis already submitted, and every feeder's, has finished (an actor
        runs its calls in order)."""
        for thread in self.feeders:
            thread.join()
        ray.get([actor.ping.remote() for actor in self.actors])

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
