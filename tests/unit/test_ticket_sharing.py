"""Tickets trained once per sweep: a control that takes its tickets from the board reports bit for
bit what it reports training them itself, and the board keeps nothing once every lineage passed."""
import pytest
import torch

from lth_sweep.orchestrator.estimate import lineage_cost
from lth_sweep.orchestrator.tuner import trial_order
from tests.support.tiny import tiny_lineage
from lth_sweep.trainables.lineage import SHARED_TICKET_NOTE, run_lineage
from lth_sweep.trainables.ticket_board import TicketBoard
from lth_sweep.trainables.ticket_sharing import TicketExchange, shared_tickets, takes_ticket, ticket_id

pytestmark = pytest.mark.usefixtures("one_thread")


def equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_rounds(a, b):
    for x, y in zip(a, b, strict=True):
        assert equal_states(x.state.weights, y.state.weights) and equal_states(x.state.masks, y.state.masks)
        assert equal_states(x.evaluated, y.evaluated) and equal_states(x.evaluated_masks, y.evaluated_masks)
        timeless = lambda metrics: {k: v for k, v in metrics.items() if not k.startswith("time/")}  # noqa: E731
        assert timeless(x.metrics) == timeless(y.metrics)


def test_a_control_has_its_methods_ticket_and_only_controls_share():
    imp, reinit, shuffle = tiny_lineage(), tiny_lineage(reinit=True), tiny_lineage(shuffle=True)
    assert ticket_id(imp) == ticket_id(reinit) == ticket_id(shuffle) == imp.id
    assert ticket_id(tiny_lineage(rewind=3)) != imp.id and ticket_id(tiny_lineage(seed=1, reinit=True)) != imp.id
    assert shared_tickets([imp, reinit, shuffle]) == {imp.id: 3}
    assert shared_tickets([imp, tiny_lineage(seed=1)]) == {}  # nobody takes a plain lineage's ticket
    assert shared_tickets([reinit]) == {}  # trained by nobody else: nothing to share
    assert takes_ticket(reinit, {imp.id}) and not takes_ticket(imp, {imp.id}) and not takes_ticket(reinit, set())


def with_validation(spec):
    """As a sweep runs it with the early-stopping measure on: validation images (generated apart,
    so the same lineage id and trunk), tracked during the reported network's training only."""
    data = spec.trunk.data.model_copy(update={"validation_size": 40})
    return spec.model_copy(update={"trunk": spec.trunk.model_copy(update={"data": data})})


def test_a_control_that_takes_the_tickets_reports_what_it_reports_training_them(trained_trunk):
    imp, reinit = with_validation(tiny_lineage(rounds=3)), with_validation(tiny_lineage(rounds=3, reinit=True))
    tracked = {"validation_every": 4}  # the plain lineage tracks its ticket's training, the control its own network's
    alone = run_lineage(reinit, trained_trunk, **tracked)
    board = TicketBoard(shared_tickets([imp, reinit]))
    ticket = run_lineage(imp, trained_trunk, tickets=TicketExchange(board, ticket_id(imp)), **tracked)
    assert board.held() == [(imp.id, 1), (imp.id, 2), (imp.id, 3)]
    for round_result in ticket:  # the plain lineage trains and reports its own ticket
        assert SHARED_TICKET_NOTE not in round_result.notes and "train/early_stop_acc" in round_result.metrics
    shared = run_lineage(reinit, trained_trunk, tickets=TicketExchange(board, ticket_id(reinit)), **tracked)
    same_rounds(shared, alone)
    assert all(SHARED_TICKET_NOTE in round_result.notes for round_result in shared)
    for t, s in zip(ticket, shared):
        assert equal_states(t.state.weights, s.state.weights)  # the very ticket imp reported
    assert board.held() == []  # both lineages passed every round


def test_a_control_that_finds_nothing_trains_the_ticket_and_leaves_it(trained_trunk):
    reinit, shuffle = tiny_lineage(reinit=True), tiny_lineage(shuffle=True)
    board = TicketBoard(shared_tickets([reinit, shuffle]))
    first = run_lineage(reinit, trained_trunk, tickets=TicketExchange(board, ticket_id(reinit)))
    assert not any(SHARED_TICKET_NOTE in r.notes for r in first) and len(board.held()) == 2
    second = run_lineage(shuffle, trained_trunk, tickets=TicketExchange(board, ticket_id(shuffle)))
    assert all(SHARED_TICKET_NOTE in r.notes for r in second) and board.held() == []
    same_rounds(second, run_lineage(shuffle, trained_trunk))


def test_a_resumed_control_takes_the_rounds_after_its_checkpoint(trained_trunk):
    imp, reinit = tiny_lineage(rounds=3), tiny_lineage(rounds=3, reinit=True)
    alone = run_lineage(reinit, trained_trunk)
    board = TicketBoard(shared_tickets([imp, reinit]))
    run_lineage(imp, trained_trunk, tickets=TicketExchange(board, imp.id))
    resumed = run_lineage(reinit, trained_trunk, resume_from=alone[0].state, tickets=TicketExchange(board, imp.id))
    same_rounds(resumed, alone[1:])
    assert board.held() == [(imp.id, 1)]  # skipped by the resumed control: kept until the sweep ends


def test_controls_queue_after_the_lineages_whose_tickets_they_take_and_cost_one_training():
    imp, reinit, random = tiny_lineage(), tiny_lineage(reinit=True), tiny_lineage(method="random")
    shared = shared_tickets([reinit, imp, random])
    order = sorted([reinit, imp, random], key=lambda spec: trial_order(spec, shared))
    assert order[-1] == reinit
    lone = tiny_lineage(seed=1, reinit=True)  # nobody else trains its ticket: it trains it, first in line
    assert sorted([imp, lone], key=lambda spec: trial_order(spec, shared_tickets([imp, lone])))[0] == lone
    assert lineage_cost(reinit, trains_ticket=False).iterations == lineage_cost(imp).iterations
    assert lineage_cost(reinit).iterations == 2 * lineage_cost(imp).iterations
