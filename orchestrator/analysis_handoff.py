"""Starting the analysis of a sweep's trunks and handing the pool to its trials."""
from __future__ import annotations

import threading
from collections.abc import Callable

import ray

from lth_sweep.analysis.actors import AnalysisPool
from lth_sweep.orchestrator.twin_handoff import start_twins
from lth_sweep.trainables.specs import TrunkSpec
from lth_sweep.trainables.trial_payload import AnalysisHandoff


def hand_off(
    pool: AnalysisPool, trunks: dict[str, tuple[ray.ObjectRef, str]], specs: dict[str, TrunkSpec], say: Callable[[str], None]
) -> AnalysisHandoff:
    """Each trunk's dense reference, started on the analysis actors, then its noise floor behind
    it, and its dense twin trained beside them (`orchestrator.twin_handoff`, unless `analysis.twin`
    is off); the references' object refs go to the trials at once. A trial needs its reference
    only when its first round is analysed, so lineages train while it is measured; a thread
    reports each one as it arrives. A reference that fails fails the analysis of its lineages' first round, which
    fails them with the reason in MLflow."""
    refs = pool.references(trunks)
    threading.Thread(target=_report, args=(refs, say), name="lth-references", daemon=True).start()
    pool.floors(trunks, specs, refs)
    start_twins(pool, trunks, specs, refs, say)
    return AnalysisHandoff(tuple(pool.actors), refs)


def _report(refs: dict[str, ray.ObjectRef], say: Callable[[str], None]) -> None:
    for trunk_id, ref in refs.items():
        try:
            reference = ray.get(ref)
        except Exception as error:
            cause = error.cause if getattr(error, "cause", None) is not None else error
            say(f"trunk {trunk_id}: analysis of the dense trunk failed: {type(cause).__name__}: {cause}")
            continue
        say(f"trunk {trunk_id}: dense reference measured ({reference_line(reference.values)})")


def reference_line(values: dict[str, float]) -> str:
    shown = {
        "xai/gradcam_energy_in_object": "Grad-CAM on object",
        "xai/concept_recovery": "true concepts recovered",
        "calib/ece": "ECE",
    }
    parts = [f"{label} {values[key]:.3f}" for key, label in shown.items() if key in values]
    return ", ".join(parts) or "no metrics"
