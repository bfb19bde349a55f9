"""Progress output: a redrawn line on a terminal, periodic lines in a log, never on every server."""

from __future__ import annotations

import io

from fakes import FakeClock, make_server

from bulkstop.cli.progress import LOG_INTERVAL, TTY_INTERVAL, Progress
from bulkstop.execute.engine import Plan
from bulkstop.models import Outcome, ServerResult
from bulkstop.plan.eligibility import PlanEntry


def plan_of(n: int, *, skipped: int = 0) -> Plan:
    entries = [PlanEntry(server=make_server(i), scope="p1") for i in range(n)]
    entries += [
        PlanEntry(server=make_server(n + i), scope="p1", outcome=Outcome.SKIPPED)
        for i in range(skipped)
    ]
    return Plan(entries=tuple(entries))


def result(n: int, outcome: Outcome = Outcome.ACCEPTED, attempts: int = 1) -> ServerResult:
    return ServerResult(id=str(n), project_id="p1", outcome=outcome, attempts=attempts)


class TestProgress:
    """What the operator sees while a run goes."""

    def test_terminal_line_is_redrawn_at_most_every_interval(self) -> None:
        clock = FakeClock()
        out = io.StringIO()
        progress = Progress(stream=out, interactive=True, clock=clock)
        progress.planned(plan_of(100))
        assert out.getvalue() == "stop: 100 selected, 100 to send\n"
        for n in range(50):
            clock.now += TTY_INTERVAL / 10
            progress.finished(result(n, Outcome.FAILED if n == 7 else Outcome.ACCEPTED))
        draws = out.getvalue().count("\r")
        assert 4 <= draws <= 5  # 5 intervals passed, not 50 redraws
        progress.close()
        last = out.getvalue().rsplit("\r\x1b[K", 1)[-1]
        assert last.startswith("stop: 50/100 · 50 answered/s · accepted 49 · failed 1 · ETA 1s")
        assert last.endswith("\n")

    def test_log_lines_are_periodic_even_when_nothing_finishes(self) -> None:
        clock = FakeClock()
        out = io.StringIO()
        progress = Progress(stream=out, interactive=False, clock=clock, verb="start")
        progress.planned(plan_of(10))
        for n in range(10):
            clock.now += LOG_INTERVAL / 2
            progress.finished(result(n))
        for _ in range(3):  # a throttled stretch: no result, but the ticker keeps reporting
            clock.now += LOG_INTERVAL
            progress.tick()
        progress.close()
        lines = out.getvalue().splitlines()
        assert "\r" not in out.getvalue()
        assert lines[0] == "start: 10 selected, 10 to send"
        assert len(lines) == 1 + 5 + 3 + 1  # planned, every interval, the stretch, the end
        assert lines[-1].startswith("start: 10/10")

    def test_the_rate_counts_only_answered_requests(self) -> None:
        clock = FakeClock()
        out = io.StringIO()
        progress = Progress(stream=out, interactive=False, clock=clock)
        progress.planned(plan_of(2, skipped=100))
        for n in range(100):
            progress.finished(result(n, Outcome.SKIPPED, attempts=0))
        clock.now += 1.0
        progress.finished(result(200))
        assert progress.line(clock.now).startswith("stop: 101/102 · 1 answered/s · accepted 1")
        assert progress.line(clock.now).endswith("ETA 1s")

    def test_nothing_is_drawn_before_the_plan(self) -> None:
        clock = FakeClock()
        out = io.StringIO()
        progress = Progress(stream=out, interactive=True, clock=clock)
        clock.now += 10 * TTY_INTERVAL  # e.g. while the confirmation prompt waits
        progress.tick()
        progress.close()
        assert out.getvalue() == ""
