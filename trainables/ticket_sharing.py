"""Tickets trained once per sweep, not once per lineage that needs them.

A control lineage (`reinit`, `shuffle`) trains, every round, the same ticket as the plain lineage
of its method (its spec with the controls off): the next round prunes that ticket. Only then does
it train its own network, under the ticket's masks. Trained twice, the ticket comes out the same
bit for bit (same trunk, same masks, same batches, same seed; tests/unit/test_ticket_sharing.py), so
a sweep with both trains it once: whichever lineage trains round r of a ticket first leaves it on
the sweep's `TicketBoard` (a Ray actor), and a control that finds it there only trains its own
network. A control that finds nothing trains the ticket itself and leaves it for the others, so no
lineage ever waits for another. The board is `trainables.ticket_board`. Tune's queue puts plain
lineages first (`orchestrator.tuner.trial_order`), so on a machine with fewer trial slots than
lineages the controls find every round waiting.

This is also the control as Frankle & Carbin define it: the reinitialised network trains under
the masks of the very ticket the method's own lineage reports. Trained on another node (another
CPU or GPU), the board's ticket may differ from one trained here in the last bits; it is still that
lineage's ticket.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

import torch

from lth_sweep.trainables.masks import Masks
from lth_sweep.trainables.specs import LineageSpec
from lth_sweep.trainables.trunk import as_tensors, to_numpy

logger = logging.getLogger(__name__)


def ticket_id(spec: LineageSpec) -> str:
    """The id of the ticket a lineage trains round after round: its own id with the controls off."""
    plain = spec.pruning.model_copy(update={"reinit": False, "shuffle": False})
    return spec.model_copy(update={"pruning": plain}).id


def has_control(spec: LineageSpec) -> bool:
    return spec.pruning.reinit or spec.pruning.shuffle


def shared_tickets(specs: list[LineageSpec]) -> dict[str, int]:
    """Ticket id -> how many of `specs` train it, for the tickets worth sharing: trained by two
    lineages or more, one of them a control (a plain lineage never takes its ticket from the board:
    it trains its own, since what it reports is measured while training)."""
    counts = Counter(ticket_id(spec) for spec in specs)
    controlled = {ticket_id(spec) for spec in specs if has_control(spec)}
    return {ticket: count for ticket, count in counts.items() if count > 1 and ticket in controlled}


def takes_ticket(spec: LineageSpec, shared: Collection[str]) -> bool:
    """Whether a lineage takes its tickets from the board rather than training them (when it
    finds them there): a control whose ticket is among `shared` (`shared_tickets`)."""
    return has_control(spec) and ticket_id(spec) in shared


@dataclass(frozen=True)
class SharedTicket:
    weights: dict[str, torch.Tensor]
    masks: Masks


class TicketExchange:
    """One lineage's side of the board. `board` is a `TicketBoard` or a Ray actor handle of one.
    A board that is gone (its node lost) is an optimisation lost, not a failure: the lineage
    trains its tickets itself from then on, and says so in the log."""

    def __init__(self, board, ticket: str):
        self.board, self.ticket = board, ticket
        self._remote = hasattr(board.take, "remote")

    def take(self, round_index: int) -> SharedTicket | None:
        found = self._call("take", self.ticket, round_index)
        if found is None:
            return None
        weights, masks = found
        return SharedTicket(as_tensors(weights), as_tensors(masks))

    def leave(self, round_index: int, weights: dict[str, torch.Tensor], masks: Masks) -> None:
        self._call("leave", self.ticket, round_index, to_numpy(weights), to_numpy(masks))

    def _call(self, method: str, *args):
        if self.board is None:
            return None
        if not self._remote:
            return getattr(self.board, method)(*args)
        import ray

        try:
            return ray.get(getattr(self.board, method).remote(*args))
        except ray.exceptions.RayActorError as error:
            logger.warning("the sweep's ticket board is gone (%s): this lineage trains its tickets itself", error)
            self.board = None
            return None
