"""Resuming interrupted runs through the real client against the mock cloud.

Each test interrupts a run (a halt as SIGINT does it, or a cancellation with requests in
flight, as close to a ``kill -9`` as an in-process test gets), resumes it from its journal, and
proves from the mock's request journal that every selected server got exactly one accepted
stop and from the final report that it holds every server once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from api_runner import Runner, run_options
from fleets import TAGGED
from recovery_helpers import actions, assert_each_once, planned

from bulkstop.execute.engine import Observer
from bulkstop.mockcloud import Faults, MockCloud, MockConfig, Trigger
from bulkstop.models import INTERRUPTED, Outcome, ServerResult
from bulkstop.record.journal import read_journal
from bulkstop.record.report import read_report
from bulkstop.record.resume import resume_selector
from bulkstop.runner import RunRequest

MakeMock = Callable[..., Awaitable[MockCloud]]


class InterruptAfter(Observer):
    """Sends this process a SIGINT once ``n`` requests were answered (once)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def finished(self, result: ServerResult) -> None:
        if result.attempts:
            self.left -= 1
            if self.left == 0:
                os.kill(os.getpid(), signal.SIGINT)


async def dry_plan(runner: Runner, mock: MockCloud) -> set[str]:
    report = await runner(mock, RunRequest(selector=TAGGED, options=run_options(dry_run=True)))
    return planned(report)


async def resume(runner: Runner, mock: MockCloud, journal: Path, **options: object) -> None:
    state = read_journal(str(journal))
    await runner(
        mock,
        RunRequest(
            selector=resume_selector(state),
            options=run_options(**options),
            report_path=state.report_path,
            journal_path=str(journal),
            resume=state,
        ),
        projects=state.selector["projects"],
    )


async def test_an_interrupted_run_resumes_to_every_server_stopped_once(
    runner: Runner, make_mock_cloud: MakeMock, tmp_path: Path
) -> None:
    mock = await make_mock_cloud(servers=120, projects=2, seed=4, transition_delay=0.05)
    to_stop = await dry_plan(runner, mock)
    assert len(to_stop) > 20
    journal, report_path = tmp_path / "run.journal.jsonl", tmp_path / "run.json"
    first = await runner(
        mock,
        RunRequest(
            selector=TAGGED,
            options=run_options(rate=50.0, concurrency=4),
            report_path=str(report_path),
            journal_path=str(journal),
        ),
        observer=InterruptAfter(10),
        handle_signals=True,
    )
    assert first.halted_by == INTERRUPTED
    assert first.outcomes[Outcome.NOT_ATTEMPTED] > 0
    assert set(actions(mock)) < to_stop
    started = read_report(str(report_path)).started_at

    await resume(runner, mock, journal)
    assert set(mock.accepted_stops()) == to_stop
    assert set(mock.accepted_stops().values()) == {1}
    assert set(actions(mock)) == to_stop  # and no request to anything else
    final = read_report(str(report_path))
    assert_each_once(final, [s.id for s in first.servers])
    assert final.started_at == started
    assert final.halted_by is None and not final.has_failures
    assert {s.id for s in final.servers if s.outcome is Outcome.ACCEPTED} == to_stop
    assert final.options["resumed_from"] == str(journal)


@pytest.mark.parametrize(
    ("wait", "credited"), [(False, Outcome.ACCEPTED), (True, Outcome.STOPPED)], ids=["", "wait"]
)
async def test_stops_in_flight_at_a_crash_are_credited_not_repeated(
    runner: Runner,
    make_mock_cloud: MakeMock,
    tmp_path: Path,
    wait: bool,
    credited: Outcome,
) -> None:
    base = await make_mock_cloud(servers=40, projects=1, seed=9)
    fleet = await dry_plan(runner, base)
    hung = sorted(fleet)[:3]
    # The cloud carries these stops out at once but answers only much later: at the crash,
    # their requests are in flight and their fate is unknown to the client.
    mock = await make_mock_cloud(
        MockConfig(
            servers=40,
            projects=1,
            seed=9,
            transition_delay=0.0,
            faults=Faults(slow=Trigger(servers=dict.fromkeys(hung, 1)), slow_delay=30.0),
        )
    )
    journal, report_path = tmp_path / "crash.journal.jsonl", tmp_path / "crash.json"

    class CrashWhenOnlyHungRemain(Observer):
        def __init__(self, scope: anyio.CancelScope) -> None:
            self.scope, self.done = scope, 0

        def finished(self, result: ServerResult) -> None:
            self.done += result.id in fleet
            if self.done == len(fleet) - len(hung):
                self.scope.cancel()

    with anyio.CancelScope() as crash:
        await runner(
            mock,
            RunRequest(
                selector=TAGGED,
                options=run_options(),
                report_path=str(report_path),
                journal_path=str(journal),
            ),
            observer=CrashWhenOnlyHungRemain(crash),
        )
    state = read_journal(str(journal))
    assert state.pending == set(hung)

    await resume(runner, mock, journal, wait=wait)
    assert set(mock.accepted_stops()) == fleet
    assert set(actions(mock).values()) == {1}  # the hung servers were re-read, not re-sent
    final = read_report(str(report_path))
    assert_each_once(final, [t.id for t in state.targets])
    assert not final.has_failures
    results = {s.id: s for s in final.servers}
    for server_id in hung:
        assert results[server_id].outcome is credited
        assert "went through" in (results[server_id].reason or "")
        assert results[server_id].attempts == 1  # the interrupted part's request
    assert not read_journal(str(journal)).unfinished


async def test_a_run_that_watched_signals_puts_their_handlers_back(
    runner: Runner, make_mock_cloud: MakeMock, tmp_path: Path
) -> None:
    # Closing the signal receiver reset SIGTERM to "die at once": after dispatch, the CLI's
    # handler (one line, the end told) was gone until the process ended.
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    before = {s: signal.signal(s, mine) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        mock = await make_mock_cloud(servers=6, projects=1, seed=4)
        request = RunRequest(
            selector=TAGGED, options=run_options(), report_path=str(tmp_path / "run.json")
        )
        await runner(mock, request, handle_signals=True)
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
