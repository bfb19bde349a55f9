"""Regressions found by review: each test failed before its fix (see the commit that adds it)."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest
from fakes import FakeClock, FakeCompute, fake_engine, make_server

from bulkstop.errors import EndpointError
from bulkstop.execute.backoff import Backoff
from bulkstop.execute.budget import ProjectBudget
from bulkstop.execute.gate import RetryPolicy
from bulkstop.models import Action, ErrorInfo, ListQuery, Outcome, Reply, ServerPage
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import ErrorBudget, Rails, batches
from bulkstop.record.report import Report
from bulkstop.select.selector import Selector

pytestmark = pytest.mark.anyio
#: One worker and half-second polls, as these regressions were found with.
REGRESSION_OPTIONS: dict[str, object] = {"concurrency": 1, "poll_interval": 0.5}
NIGHTLY = Selector(tags=("nightly-stop",))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_canary_cut_short_by_a_halt_is_judged_not_crashed() -> None:
    servers = [make_server(n) for n in range(5)]
    fake = FakeCompute.with_servers(servers)
    fake.script[servers[0].id] = [Reply(status=403, error=ErrorInfo(code="forbidden", message=""))]
    eng = fake_engine(
        fake,
        FakeClock(),
        **REGRESSION_OPTIONS,
        rails=Rails(canary=3, max_errors=ErrorBudget(count=0)),
    )
    results = await eng.execute(await eng.resolve(NIGHTLY))
    assert eng.halted == "max-errors: 1 of 1 requests failed"
    assert [r.outcome for r in results].count(Outcome.NOT_ATTEMPTED) == 4
    assert len(fake.actions()) == 1


async def test_a_next_link_that_loops_is_an_endpoint_error() -> None:
    class Looping(FakeCompute):
        async def list_page(self, project_id: str, query: ListQuery, marker: str | None) -> Reply:
            a, b = list(self.servers.values())[:2]
            following = b.id if marker in (None, a.id) else a.id
            return Reply(status=200, body=ServerPage(servers=(a, b), next_marker=following))

    fake = Looping.with_servers([make_server(n) for n in range(2)])
    with (
        anyio.fail_after(5),
        pytest.raises(EndpointError, match="brought no server not seen before"),
    ):
        await fake_engine(fake, FakeClock(), **REGRESSION_OPTIONS).resolve(NIGHTLY)


async def test_a_gateway_timeout_that_reached_nova_counts_as_ours() -> None:
    class GatewayTimeout(FakeCompute):
        async def action(
            self, project_id: str, server_id: str, action: Action, *, stop_type: str | None = None
        ) -> Reply:
            reply = await super().action(project_id, server_id, action, stop_type=stop_type)
            if len(self.actions()) == 1:  # Nova did it; the gateway answered 504
                return Reply(status=504, error=ErrorInfo(code="HTTP 504", message="Gateway"))
            return reply

    fake = GatewayTimeout.with_servers([make_server(1)])
    retry = RetryPolicy(backoff=Backoff(base=0.001, cap=0.001))
    eng = fake_engine(fake, FakeClock(), **REGRESSION_OPTIONS, retry=retry)
    (result,) = await eng.execute(await eng.resolve(NIGHTLY))
    # Reported already_stopped, an undo would never start it again.
    assert (result.outcome, result.attempts) == (Outcome.ACCEPTED, 2)


async def test_census_counts_a_server_listed_twice_once() -> None:
    class Repeating(FakeCompute):
        async def list_page(self, project_id: str, query: ListQuery, marker: str | None) -> Reply:
            servers = tuple(self.servers.values())
            if marker is None:
                return Reply(status=200, body=ServerPage(servers=servers, next_marker="x"))
            return Reply(status=200, body=ServerPage(servers=servers, next_marker=None))

    fake = Repeating.with_servers([make_server(n, tags=()) for n in range(4)])
    assert await fake_engine(fake, FakeClock(), **REGRESSION_OPTIONS).census() == {"p1": 4}


async def test_a_hold_that_comes_while_a_call_waits_for_its_slot_is_honoured() -> None:
    clock = FakeClock()
    budget: ProjectBudget | None = None

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if budget is not None and clock.now < 1001:
            budget.throttled(5.0)  # another call's 429 arrives while this one sleeps

    budget = ProjectBudget(rate=10, clock=clock, sleep=sleep)
    await budget.pace()
    start = clock.now
    await budget.pace()
    assert clock.now >= start + 5.0


def test_the_canary_is_spread_over_projects_with_all_projects() -> None:
    entries = [
        PlanEntry(server=make_server(n, project_id=p), scope="admin")
        for n, p in enumerate(["pa", "pa", "pa", "pb", "pb"])
    ]
    (canary, _rest) = batches(entries, canary=2)
    assert {e.server.project_id for e in canary.entries} == {"pa", "pb"}


def test_a_report_time_without_offset_is_read_as_utc() -> None:
    document = Report(
        action="stop",
        dry_run=True,
        started_at=datetime(2026, 11, 27, 2, tzinfo=UTC),
        finished_at=datetime(2026, 11, 27, 2, tzinfo=UTC),
        servers=(),
    ).to_dict()
    document["finished_at"] = document["finished_at"].removesuffix("Z")  # an edited plan
    report = Report.from_dict(document)
    # A naive time made the plan-age check crash with a TypeError (a traceback).
    assert report.finished_at == datetime(2026, 11, 27, 2, tzinfo=UTC)
    assert report.finished_at.tzinfo is not None
