"""A sweep with a method and its reinit control trains the method's tickets once: the control,
queued after the method, takes every round's ticket from the sweep's board (a real Ray actor) and
logs bit for bit what it logs training them itself."""
from __future__ import annotations

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.orchestrator.sweep import run_sweep
from tests.support.sweeps import runs_of, sweep_yaml
from lth_sweep.trainables import record
from lth_sweep.trainables.lineage import SHARED_TICKET_NOTE, run_lineage
from lth_sweep.trainables.trunk import train_trunk

pytestmark = pytest.mark.slow


def test_the_control_takes_its_methods_tickets_and_logs_what_it_would_have_trained(ray_session, tmp_path, monkeypatch):
    config = yaml.safe_load(sweep_yaml("tickets", [{"rate": 0.5, "rounds": 3, "reinit": True}, {"rate": 0.5, "rounds": 3}]))
    config["resources"]["max_concurrent_trials"] = 1  # so the control (queued second, though listed first) finds every round
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    control, method = plan.lineages
    assert control.pruning.reinit and not method.pruning.reinit
    assert run_sweep(plan).succeeded
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {r.data.tags["lth.id"]: r for r in runs_of(client, "lineage")}
    control_run, method_run = runs[control.id], runs[method.id]
    queued = {run.data.tags["lth.label"]: run.data.metrics["time/queued_seconds"] for run in (control_run, method_run)}
    assert queued["imp+reinit"] > queued["imp"]  # queued after the method
    notes = control_run.data.tags[record.NOTES]
    assert [f"round {r}: {SHARED_TICKET_NOTE}" in notes for r in (1, 2, 3)] == [True] * 3
    assert SHARED_TICKET_NOTE not in method_run.data.tags.get(record.NOTES, "")

    torch.set_num_threads(1)  # as in the trial (cpus_per_trial = 1)
    alone = run_lineage(control, train_trunk(control.trunk, (control.pruning.rewind_iteration,)))
    for result in alone:
        index = result.state.round
        for run in (control_run, method_run):  # the control trains under the method's masks
            logged = load_file(client.download_artifacts(run.info.run_id, record.round_masks(index), str(tmp_path)))
            assert all(torch.equal(logged[k], result.state.masks[k]) for k in result.state.masks), index
        acc = [m.value for m in client.get_metric_history(control_run.info.run_id, "test/acc") if m.step == index]
        assert acc == [result.metrics["test/acc"]]
    final = load_file(client.download_artifacts(control_run.info.run_id, record.TICKET_WEIGHTS, str(tmp_path)))
    assert all(torch.equal(final[k], alone[-1].evaluated[k]) for k in alone[-1].evaluated)


def test_a_lost_board_makes_a_control_train_its_tickets_itself(ray_session):
    import ray

    from tests.support.tiny import tiny_lineage
    from lth_sweep.trainables.ticket_board import TicketBoard
    from lth_sweep.trainables.ticket_sharing import TicketExchange, shared_tickets

    imp, reinit = tiny_lineage(rounds=2), tiny_lineage(rounds=2, reinit=True)
    board = ray.remote(TicketBoard).options(num_cpus=0).remote(shared_tickets([imp, reinit]))
    exchange = TicketExchange(board, imp.id)
    trunk = train_trunk(imp.trunk, (0,))
    run_lineage(imp, trunk, tickets=exchange)
    assert ray.get(board.held.remote()) == [(imp.id, 1), (imp.id, 2)]  # through the actor
    ray.kill(board)  # its node lost, say
    control = TicketExchange(board, imp.id)
    shared = run_lineage(reinit, trunk, tickets=control)
    assert control.board is None and not any(SHARED_TICKET_NOTE in r.notes for r in shared)
    alone = run_lineage(reinit, trunk)
    assert all(torch.equal(a.evaluated[k], b.evaluated[k]) for a, b in zip(alone, shared) for k in a.evaluated)
