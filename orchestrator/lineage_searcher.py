"""Tune's source of trials for a sweep: the pending lineages' configs, in the order given.

Not `tune.grid_search` over them: Tune's variant generator deep-copies the whole unresolved
search space, the grid's list of every config included, once per trial it makes, so N lineages
cost the driver O(N^2) before the first one trains. This hands out one prepared config per
request, O(1) each.
"""
from __future__ import annotations

from ray.tune.search import Searcher


class LineageSearcher(Searcher):
    def __init__(self, configs: list[dict]):
        super().__init__()
        self._configs = list(configs)
        self._next = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # nothing is searched: the plan fixed every config

    def suggest(self, trial_id: str) -> dict | str:
        if self._next >= len(self._configs):
            return Searcher.FINISHED
        self._next += 1
        return self._configs[self._next - 1]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def get_state(self) -> dict:
        return {"configs": self._configs, "next": self._next}

    def set_state(self, state: dict) -> None:
        self._configs, self._next = state["configs"], state["next"]
