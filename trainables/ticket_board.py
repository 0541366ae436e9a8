"""The sweep's ticket board: round r of each shared ticket (`trainables.ticket_sharing`), held by a
Ray actor. Plain Python on numpy arrays, importing neither torch nor lth-sweep's other modules: the
actor's process starts in a fraction of a second, beside trials that are starting too."""
from __future__ import annotations

from collections import Counter

State = dict  # parameter name -> numpy array


class TicketBoard:
    """Round r of each shared ticket: its trained weights and its masks as training left them.
    A round is dropped once every lineage that trains the ticket has taken it or left it; a lineage
    resumed past a round never does, so at most a ticket's rounds stay until the sweep ends."""

    def __init__(self, lineages_per_ticket: dict[str, int]):
        self._lineages = dict(lineages_per_ticket)
        self._rounds: dict[tuple[str, int], tuple[State, State]] = {}
        self._passed: Counter = Counter()

    def leave(self, ticket: str, round_index: int, weights: State, masks: State) -> None:
        self._rounds.setdefault((ticket, round_index), (weights, masks))
        self._passed_by_one(ticket, round_index)

    def take(self, ticket: str, round_index: int) -> tuple[State, State] | None:
        found = self._rounds.get((ticket, round_index))
        if found is not None:
            self._passed_by_one(ticket, round_index)
        return found

    def held(self) -> list[tuple[str, int]]:
        return sorted(self._rounds)

    def _passed_by_one(self, ticket: str, round_index: int) -> None:
        self._passed[ticket, round_index] += 1
        if self._passed[ticket, round_index] >= self._lineages.get(ticket, 0):
            self._rounds.pop((ticket, round_index), None)
