"""Undoing a stop run (``start --from-report``) through the real client against the mock cloud.

An undo starts exactly the servers the stop run stopped — never the ones that were already
stopped before it — with the same machinery (journal, report, rails) as any run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api_runner import Runner, run_options
from fleets import TAGGED
from recovery_helpers import actions, assert_each_once

from bulkstop.errors import InputError
from bulkstop.mockcloud import MockCloud
from bulkstop.models import Action, Outcome
from bulkstop.record.journal import read_journal
from bulkstop.record.report import Report
from bulkstop.record.resume import undo_selector
from bulkstop.runner import RunRequest

MakeMock = Callable[..., Awaitable[MockCloud]]


async def stop_then_undo(
    runner: Runner, mock: MockCloud, tmp_path: Path, **undo_options: object
) -> tuple[Report, Report]:
    stop = await runner(mock, RunRequest(selector=TAGGED, options=run_options(wait=True)))
    selector, projects = undo_selector(stop, source="stop.json")
    undo = await runner(
        mock,
        RunRequest(
            selector=selector,
            options=run_options(action=Action.START, **undo_options),
            journal_path=str(tmp_path / "undo.journal.jsonl"),
        ),
        projects=projects,
    )
    return stop, undo


async def test_starts_exactly_what_the_stop_run_stopped(
    runner: Runner, make_mock_cloud: MakeMock, tmp_path: Path
) -> None:
    mock = await make_mock_cloud(servers=120, projects=2, seed=2, transition_delay=0.02)
    stop, undo = await stop_then_undo(runner, mock, tmp_path, wait=True)
    stopped = {s.id for s in stop.servers if s.outcome is Outcome.STOPPED}
    already = {s.id for s in stop.servers if s.outcome is Outcome.ALREADY_STOPPED}
    assert stopped and already  # the seeded fleet has both
    assert undo.action == "start"
    assert_each_once(undo, stopped)
    assert {s.outcome for s in undo.servers} == {Outcome.STARTED}
    assert set(actions(mock, "os-start")) == stopped  # not one server that was off before
    assert all(mock.servers[sid].vm_state == "stopped" for sid in already)
    journal = read_journal(str(tmp_path / "undo.journal.jsonl"))
    assert journal.action is Action.START and journal.ended and not journal.unfinished


async def test_a_server_started_meanwhile_is_already_started(
    runner: Runner, make_mock_cloud: MakeMock, tmp_path: Path
) -> None:
    mock = await make_mock_cloud(servers=30, projects=1, seed=3, transition_delay=0.0)
    stop = await runner(mock, RunRequest(selector=TAGGED, options=run_options()))
    first = next(s for s in stop.servers if s.outcome is Outcome.ACCEPTED)
    mock.servers[first.id].set_state("active")  # someone started it by hand meanwhile
    selector, projects = undo_selector(stop, source="stop.json")
    undo = await runner(
        mock,
        RunRequest(selector=selector, options=run_options(action=Action.START)),
        projects=projects,
    )
    assert {s.id: s.outcome for s in undo.servers}[first.id] is Outcome.ALREADY_STARTED
    assert first.id not in actions(mock, "os-start")


@pytest.mark.parametrize(
    ("change", "message"),
    [({"action": "start"}, "a start report"), ({"dry_run": True}, "a dry-run report")],
)
async def test_refuses_a_report_that_is_not_of_a_stop_run(
    change: dict[str, object], message: str
) -> None:
    moment = datetime(2026, 11, 28, tzinfo=UTC)
    report = dataclasses.replace(
        Report(action="stop", dry_run=False, started_at=moment, finished_at=moment, servers=()),
        **change,
    )
    with pytest.raises(InputError, match=f"r.json: {message}: only a stop run can be undone"):
        undo_selector(report, source="r.json")
