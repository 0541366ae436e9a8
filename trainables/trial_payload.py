"""What the driver hands a lineage's Tune trial, typed and frozen.

`TrialPayload` is the trial's whole input. It does not travel in Tune's config: Tune copies a
trial's config into every snapshot of its experiment state (all trials, every few seconds), so
a config holding a lineage spec made a 1,000-lineage sweep's driver spend most of its time
writing JSON. The config is `TrialPayload.config()`: the lineage's id and the few fields a reader
of Ray's own files wants (`TrialConfig`). The payloads themselves sit in the object store, all in
one object (`SharedObjects.payloads`) that each worker process fetches once (`payload_of`).

The object-store handles (each trunk's `TrunkResult`, the analysis actors and each trunk's dense
reference, the payloads) are a `SharedObjects`, given once to every trial through
`tune.with_parameters`: an `ObjectRef` inside Tune's config would be pickled into the experiment
state, out of band, and pinned there for the cluster's lifetime.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lth_sweep.trainables.specs import LineageSpec


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint an earlier driver left in the storage path: the trial continues after `round`."""

    checkpoint: str
    round: int


@dataclass(frozen=True)
class TrialPayload:
    lineage: LineageSpec
    run_id: str  #: the lineage's MLflow run, created by the driver (its store: `SharedObjects.tracking_uri`)
    threads: int = 1  #: torch threads, the trial's CPUs
    slot: int = 0  #: which analysis actor takes its first round (spreads lineages over the pool)
    validation_every: int = 0  #: > 0: track the validation loss for the early-stopping iteration
    validation_images: int | None = None  #: how many validation images (None: the whole split)
    resume: ResumePoint | None = None  #: one an earlier driver left (the trial looks for its own either way)

    KEY = "trial"  #: where `TrialConfig` sits in Tune's config

    def config(self) -> dict:
        """Tune's config of this lineage's trial: small and JSON (see the module's docstring)."""
        spec = self.lineage
        return {self.KEY: {
            "lineage_id": spec.id, "run_id": self.run_id, "method": spec.pruning.method, "label": spec.pruning.label,
            "trunk_id": spec.trunk.id, "seed": spec.trunk.seed, "rounds": spec.pruning.rounds,
        }}

    @property
    def lineage_id(self) -> str:
        return self.lineage.id

    @property
    def rounds(self) -> int:
        return self.lineage.pruning.rounds


@dataclass(frozen=True)
class AnalysisHandoff:
    """The analysis pool, for trials: its actors' handles and each trunk's dense `Reference`."""

    actors: tuple  #: ActorHandles of `analysis.actors.AnalysisActor`
    references: dict  #: trunk id -> ObjectRef of the trunk's `Reference`


@dataclass(frozen=True)
class SharedObjects:
    #: absolute (a trial's working directory is not the driver's). Here, not in the payload: Tune saves
    #: the payload in its experiment folder, and a copy of that folder, restored, must not write into
    #: the original sweep's store; `tune.with_parameters` objects are not saved there.
    tracking_uri: str
    trunks: dict = field(default_factory=dict)  #: trunk id -> ObjectRef of its `TrunkResult`
    analysis: AnalysisHandoff | None = None  #: None: the sweep's analysis is off
    tickets: "TicketSharing | None" = None  #: None: no lineage of the sweep shares its ticket
    payloads: object = None  #: ObjectRef of {lineage id: TrialPayload}, every pending lineage's
    checkpoints: str = ""  #: the sweep's Tune experiment folder (a path or URI): one folder per lineage


@dataclass(frozen=True)
class TicketSharing:
    """The sweep's ticket board (`trainables.ticket_sharing`) and the tickets it shares."""

    board: object  #: ActorHandle of a `TicketBoard`
    tickets: frozenset[str]  #: ticket ids trained by more than one pending lineage


@dataclass(frozen=True)
class TrialConfig:
    """What Tune's config of a lineage's trial says (`TrialPayload.config`), read back."""

    lineage_id: str
    run_id: str
    method: str
    label: str
    trunk_id: str
    seed: int
    rounds: int

    @classmethod
    def of(cls, config: dict) -> TrialConfig:
        """From a trial's config (`trial.config`, `result.config`, or the trial's own)."""
        return cls(**config[TrialPayload.KEY])

    @property
    def name(self) -> str:
        return display_name(self.label, self.seed)


def display_name(label: str, seed: int) -> str:
    """A lineage as the terminal, the summary and Tune's trial names show it: 'imp@125 s0'."""
    return f"{label} s{seed}"


_fetched: tuple[str, dict] | None = None  # this worker process's payloads: (their ObjectRef's hex, them)


def payload_of(shared: SharedObjects, lineage_id: str) -> TrialPayload:
    """A trial's payload, from the sweep's payloads, fetched once per worker process (a reused
    worker runs many trials of one sweep)."""
    global _fetched
    import ray

    key = shared.payloads.hex()
    if _fetched is None or _fetched[0] != key:
        _fetched = (key, ray.get(shared.payloads))
    return _fetched[1][lineage_id]
