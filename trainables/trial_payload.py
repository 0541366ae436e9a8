"""What the driver hands a lineage's Tune trial, typed and frozen.

`TrialPayload` is the trial's whole input. It travels in Tune's config as plain JSON
(`to_config`), and every reader, on the driver or in the trial, takes it back with
`TrialPayload.of(trial.config)`: Tune keeps a trial's config primitive on the driver (it swaps an
object in a grid search for a placeholder tuple there, resolved only in the trial), and saves it
with its experiment state. The object-store handles (each trunk's
`TrunkResult`, the analysis actors and each trunk's dense reference) are a `SharedObjects`, given
once to every trial through `tune.with_parameters`: an `ObjectRef` inside Tune's config would be
pickled into the experiment state, out of band, and pinned there for the cluster's lifetime.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from trainables.specs import LineageSpec


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
    resume: ResumePoint | None = None  #: None: Tune's own checkpoint, if any, or round 1

    KEY = "trial"  #: where the payload sits in Tune's config

    def to_config(self) -> dict:
        return {self.KEY: {**asdict(self), "lineage": self.lineage.model_dump(mode="json")}}

    @classmethod
    def of(cls, config: dict) -> TrialPayload:
        """The payload of a trial's config (`trial.config`, `result.config`, or the trial's own)."""
        fields = dict(config[cls.KEY])
        resume = fields.pop("resume", None)
        return cls(
            lineage=LineageSpec.model_validate(fields.pop("lineage")),
            resume=None if resume is None else ResumePoint(**resume),
            **fields,
        )

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


@dataclass(frozen=True)
class TicketSharing:
    """The sweep's ticket board (`trainables.ticket_sharing`) and the tickets it shares."""

    board: object  #: ActorHandle of a `TicketBoard`
    tickets: frozenset[str]  #: ticket ids trained by more than one pending lineage
