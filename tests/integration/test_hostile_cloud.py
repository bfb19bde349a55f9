"""Issue #10: a hostile cloud cannot keep a run from ending, in bounded time and memory.

The engine runs against the real mock cloud (over loopback) with the mock's hostile faults
switched on, and with an injected fake clock: the long limits (the 300 s ``Retry-After`` clamp,
the 15-minute throttle budget) are crossed in fake time, never waited for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from api_runner import Runner, run_options
from fakes import FakeClock
from fleets import TAGGED, fleet, pid, server, sid

from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.base import ComputeAPI
from bulkstop.cloud.http import open_compute
from bulkstop.errors import EndpointError
from bulkstop.execute.engine import Engine
from bulkstop.limits import (
    DEFAULT_MAX_THROTTLE_WAIT,
    MAX_LIST_PAGES,
    MAX_RETRY_AFTER,
)
from bulkstop.mockcloud import Faults, MockCloud, Trigger
from bulkstop.models import INTERRUPTED, Action, ListQuery, Outcome, Reply
from bulkstop.plan.rails import Rails
from bulkstop.record.report import render_summary
from bulkstop.runner import RunRequest
from bulkstop.timespec import utc_now

MakeMock = Callable[..., Awaitable[MockCloud]]

#: Effectively no refill: once the burst is spent, every request of the project is throttled.
NEVER: Final = 1e-9
#: One listing page and the first stop get through; every request after that is throttled.
ONE_STOP_THEN_STORM: Final = {"rate_limit": NEVER, "burst": 2}
#: Every stop of server b is answered 503 with a Retry-After of eleven days.
B_ANSWERS_503: Final = {
    "server_error": Trigger(servers={sid("b"): 100}),
    "error_status": 503,
    "retry_after_value": "999999",
}
#: Seconds from now to the deadline of the deadline tests.
DEADLINE_IN: Final = 100
#: Fake seconds each request takes (the clock does not move with real time by itself).
REQUEST_TIME: Final = 10.0


class TimedCompute:
    """A ComputeAPI that moves the fake clock forward by ``seconds`` for each request sent."""

    def __init__(self, inner: ComputeAPI, clock: FakeClock, seconds: float) -> None:
        self._inner, self._clock, self._seconds = inner, clock, seconds

    async def list_page(self, project_id: str, query: ListQuery, marker: str | None) -> Reply:
        self._clock.now += self._seconds
        return await self._inner.list_page(project_id, query, marker)

    async def get_server(self, project_id: str, server_id: str) -> Reply:
        self._clock.now += self._seconds
        return await self._inner.get_server(project_id, server_id)

    async def action(
        self, project_id: str, server_id: str, action: Action, *, stop_type: str | None = None
    ) -> Reply:
        self._clock.now += self._seconds
        return await self._inner.action(project_id, server_id, action, stop_type=stop_type)

    async def renew_auth(self, project_id: str) -> None:
        await self._inner.renew_auth(project_id)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def engine_on(
    mock: MockCloud,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    *,
    request_time: float = 0.0,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    **options: Any,
) -> AsyncIterator[Engine]:
    """An engine on the mock's first project, its clock and sleeps the fake ``clock``."""
    for name, value in mock.os_env().items():
        monkeypatch.setenv(name, value)
    compute, scopes = await open_compute(
        AuthSettings(projects=(pid(mock, "p0"),)), request_timeout=5.0, pool_size=8
    )
    timed = TimedCompute(compute, clock, request_time)
    try:
        yield Engine(
            compute=timed,
            scopes=scopes,
            options=run_options(**options),
            clock=clock,
            sleep=sleep or clock.sleep,
        )
    finally:
        await timed.aclose()


async def two_servers(make_mock_cloud: MakeMock, **faults: Any) -> MockCloud:
    """Servers a and b in p0, with ``faults`` on p0."""
    return await make_mock_cloud(
        fleet=fleet(server("a"), server("b")), project_faults={"p0": Faults(**faults)}
    )


def action_requests(mock: MockCloud, name: str) -> int:
    return sum(1 for r in mock.requests if r.kind == "action" and r.server_id == sid(name))


class TestRetryAfterClamp:
    """Row 1: every hold and every wait is clamped to 300 s; the deadline ends them."""

    async def test_a_429_retry_after_of_days_holds_the_project_300_s_at_most(
        self, make_mock_cloud: MakeMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mock = await two_servers(make_mock_cloud, **ONE_STOP_THEN_STORM, retry_after_value="999999")
        clock = FakeClock()
        async with engine_on(mock, monkeypatch, clock, concurrency=1) as engine:
            results = {r.id: r for r in await engine.execute(await engine.resolve(TAGGED))}
        assert results[sid("a")].outcome is Outcome.ACCEPTED
        throttled = results[sid("b")]
        assert throttled.outcome is Outcome.FAILED
        assert throttled.reason == "throttled for 15 min"
        assert throttled.attempts == action_requests(mock, "b") > 1
        # Each wait at most the clamp (plus under a second of jitter): never 999999 s.
        assert max(clock.slept) <= MAX_RETRY_AFTER + 1

    async def test_a_503_retry_after_is_clamped_too(
        self, make_mock_cloud: MakeMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mock = await two_servers(make_mock_cloud, **B_ANSWERS_503)
        clock = FakeClock()
        async with engine_on(mock, monkeypatch, clock) as engine:
            results = {r.id: r for r in await engine.execute(await engine.resolve(TAGGED))}
        assert results[sid("b")].outcome is Outcome.FAILED
        assert results[sid("b")].attempts == action_requests(mock, "b") == 5
        assert max(clock.slept) <= MAX_RETRY_AFTER

    async def test_the_deadline_ends_a_hold_and_nothing_is_sent_after_it(
        self, make_mock_cloud: MakeMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mock = await two_servers(make_mock_cloud, **ONE_STOP_THEN_STORM, retry_after_value="999999")
        clock = FakeClock()
        rails = Rails(deadline=utc_now() + timedelta(seconds=DEADLINE_IN))
        async with engine_on(mock, monkeypatch, clock, concurrency=1, rails=rails) as engine:
            start = clock.now
            results = {r.id: r for r in await engine.execute(await engine.resolve(TAGGED))}
        held = results[sid("b")]
        assert engine.halted == "deadline"
        # Its one request was throttled: not carried out, and the report says it was sent.
        assert held.outcome is Outcome.NOT_ATTEMPTED
        assert (held.attempts, held.http_status) == (1, 429) == (action_requests(mock, "b"), 429)
        assert clock.now - start <= DEADLINE_IN + 1

    async def test_the_deadline_ends_a_503_retry_wait_and_no_retry_is_sent_after_it(
        self, make_mock_cloud: MakeMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mock = await two_servers(make_mock_cloud, **B_ANSWERS_503)
        clock = FakeClock()
        rails = Rails(deadline=utc_now() + timedelta(seconds=DEADLINE_IN))
        async with engine_on(mock, monkeypatch, clock, rails=rails) as engine:
            results = {r.id: r for r in await engine.execute(await engine.resolve(TAGGED))}
        failed = results[sid("b")]
        assert failed.outcome is Outcome.FAILED
        assert failed.reason == "deadline passed before a retry"
        assert failed.attempts == action_requests(mock, "b") == 1


class TestThrottleBudget:
    """Row 3: the throttle budget is wall time since the first throttle, whatever the pacing."""

    @pytest.mark.parametrize("retry_after", ["0", "1", None])
    async def test_a_storm_ends_after_15_minutes_of_wall_time(
        self,
        make_mock_cloud: MakeMock,
        monkeypatch: pytest.MonkeyPatch,
        retry_after: str | None,
    ) -> None:
        mock = await two_servers(
            make_mock_cloud,
            **ONE_STOP_THEN_STORM,
            retry_after="none" if retry_after is None else "seconds",
            retry_after_value=retry_after,
        )
        clock = FakeClock()
        throttled_at: list[float] = []

        async with engine_on(
            mock, monkeypatch, clock, request_time=REQUEST_TIME, concurrency=1
        ) as engine:
            with anyio.fail_after(60):
                plan = await engine.resolve(TAGGED)
                throttled_at.append(clock.now)
                results = {r.id: r for r in await engine.execute(plan)}
        stormed = results[sid("b")]
        assert stormed.outcome is Outcome.FAILED
        assert stormed.reason == "throttled for 15 min"
        # At the edge: it gave up because the next wait would cross 900 s, not long before.
        spent = clock.now - throttled_at[0]
        assert spent > DEFAULT_MAX_THROTTLE_WAIT - MAX_RETRY_AFTER - 1
        assert spent <= DEFAULT_MAX_THROTTLE_WAIT + 3 * REQUEST_TIME


class TestInterruptedWhileThrottled:
    """Row 10c: a server whose throttle wait outlives the grace was never carried out."""

    async def test_it_is_not_attempted_with_its_throttled_request_counted(
        self, make_mock_cloud: MakeMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mock = await two_servers(make_mock_cloud, **ONE_STOP_THEN_STORM, retry_after_value="60")
        clock = FakeClock()
        waiting = anyio.Event()

        async def sleep(seconds: float) -> None:
            if seconds >= 60:  # the throttle wait: longer than the grace
                waiting.set()
                await anyio.sleep_forever()
            await clock.sleep(seconds)

        async with engine_on(mock, monkeypatch, clock, sleep=sleep, concurrency=1) as engine:
            plan = await engine.resolve(TAGGED)
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.execute, plan)
                await waiting.wait()
                engine.halt(INTERRUPTED)  # SIGTERM; then the grace runs out
                tg.cancel_scope.cancel()
            results = {r.id: r for r in engine.final_results(plan)}
        held = results[sid("b")]
        assert held.outcome is Outcome.NOT_ATTEMPTED
        assert (held.attempts, held.http_status) == (1, 429)


class TestListing:
    """Row 2: a listing whose next links never end ends the run (exit 3), nothing sent."""

    async def test_a_next_link_treadmill_is_refused_on_its_second_page(
        self, make_mock_cloud: MakeMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mock = await two_servers(make_mock_cloud, list_treadmill=True)
        async with engine_on(mock, monkeypatch, FakeClock()) as engine:
            with anyio.fail_after(30), pytest.raises(EndpointError, match="no server not seen"):
                await engine.resolve(TAGGED)
        assert sum(1 for r in mock.requests if r.kind == "list") == 2
        assert not any(r.kind == "action" for r in mock.requests)

    async def test_the_page_cap_backs_the_rule_up(
        self, make_mock_cloud: MakeMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Fresh servers on every page would pass the no-progress rule: the cap ends it."""
        mock = await make_mock_cloud(fleet=fleet(*(server(f"s{n}") for n in range(7))), max_limit=1)
        # Seven pages of one server each, and an eighth, empty, without a next link.
        monkeypatch.setattr("bulkstop.execute.resolve.MAX_LIST_PAGES", 7)
        async with engine_on(mock, monkeypatch, FakeClock()) as engine:
            with pytest.raises(EndpointError, match="more than 7 pages"):
                await engine.resolve(TAGGED)
        monkeypatch.setattr("bulkstop.execute.resolve.MAX_LIST_PAGES", 8)
        async with engine_on(mock, monkeypatch, FakeClock()) as engine:
            plan = await engine.resolve(TAGGED)
        assert len(plan.entries) == 7
        assert MAX_LIST_PAGES == 10_000


class TestForgedIds:
    """Row 6: records whose id is not exactly a UUID are dropped; upper-case copies are one."""

    async def test_forged_records_are_dropped_counted_and_never_reach_a_url(
        self,
        make_mock_cloud: MakeMock,
        runner: Runner,
        report_path: Path,
    ) -> None:
        mock = await make_mock_cloud(
            fleet=fleet(server("a"), server("b")), project_faults={"p0": Faults(forged_ids=True)}
        )
        request = RunRequest(selector=TAGGED, options=run_options(), report_path=str(report_path))
        report = await runner(mock, request, projects=[pid(mock, "p0")])
        # ".." , "x/../<a>", " <a>", "": four per page; the upper-case copy of a is a.
        assert report.selector["dropped_records"] == 4
        assert len(report.servers) == 2
        # The upper-case copy carries the protect tag: a is protected, only b is stopped.
        outcomes = {s.id: s.outcome for s in report.servers}
        assert outcomes == {sid("a"): Outcome.EXCLUDED, sid("b"): Outcome.ACCEPTED}
        actions = [r.path for r in mock.requests if r.kind == "action"]
        assert actions == [f"/v2.1/{pid(mock, 'p0')}/servers/{sid('b')}/action"]
        assert "warning: the cloud listed 4 record(s)" in render_summary(report)
