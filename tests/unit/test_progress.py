"""Progress output: a redrawn line on a terminal, periodic lines in a log, never on every server."""

from __future__ import annotations

import io

from fakes import FakeClock, make_server

from bulkstop.engine import Plan
from bulkstop.models import Outcome, ServerResult
from bulkstop.plan import PlanEntry
from bulkstop.progress import LOG_INTERVAL, TTY_INTERVAL, Progress


def plan_of(n: int) -> Plan:
    return Plan(entries=tuple(PlanEntry(server=make_server(i), scope="p1") for i in range(n)))


def result(n: int, outcome: Outcome = Outcome.ACCEPTED) -> ServerResult:
    return ServerResult(id=str(n), project_id="p1", outcome=outcome)


class TestProgress:
    """What the operator sees while a run goes."""

    def test_terminal_line_is_redrawn_at_most_every_interval(self) -> None:
        clock = FakeClock()
        out = io.StringIO()
        progress = Progress(stream=out, interactive=True, clock=clock)
        progress.planned(plan_of(100))
        for n in range(50):
            clock.now += TTY_INTERVAL / 10
            progress.finished(result(n, Outcome.FAILED if n == 7 else Outcome.ACCEPTED))
        draws = out.getvalue().count("\r")
        assert 4 <= draws <= 5  # 5 intervals passed, not 50 redraws
        progress.close()
        last = out.getvalue().rsplit("\r\x1b[K", 1)[-1]
        assert last.startswith("stop: 50/100 · 50/s · accepted 49 · failed 1 · ETA 1s")
        assert last.endswith("\n")

    def test_log_lines_are_periodic_and_plain(self) -> None:
        clock = FakeClock()
        out = io.StringIO()
        progress = Progress(stream=out, interactive=False, clock=clock, verb="start")
        progress.planned(plan_of(10))
        for n in range(10):
            clock.now += LOG_INTERVAL / 2
            progress.finished(result(n))
        progress.close()
        lines = out.getvalue().splitlines()
        assert "\r" not in out.getvalue()
        assert len(lines) == 6  # every LOG_INTERVAL, plus the final state
        assert lines[-1].startswith("start: 10/10")

    def test_nothing_done_prints_nothing(self) -> None:
        out = io.StringIO()
        progress = Progress(stream=out, interactive=True, clock=FakeClock())
        progress.planned(plan_of(0))
        progress.close()
        assert out.getvalue() == ""
