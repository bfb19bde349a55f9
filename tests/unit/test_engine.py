"""Unit tests of the engine against the in-memory fake seam and a fake clock (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import pytest
from fakes import FakeClock, FakeCompute, SharedClock, fake_engine, make_server

from bulkstop.errors import AuthError, EndpointError, InputError, RefusedError, UnsafeCloudError
from bulkstop.execute.budget import ProjectBudget
from bulkstop.execute.engine import Engine, Observer, Plan
from bulkstop.execute.gate import Gate, NotAdmitted, RetryPolicy
from bulkstop.limits import MAX_RETRY_AFTER
from bulkstop.models import INTERRUPTED, Action, ErrorInfo, ListQuery, Outcome, Reply, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import Batch, ErrorBudget, Rails
from bulkstop.select.idfile import IdEntry
from bulkstop.select.selector import PROTECT_TAG, Selector
from bulkstop.timespec import utc_now

pytestmark = pytest.mark.anyio

NIGHTLY = Selector(tags=("nightly-stop",))

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def run(engine: Engine, selector: Selector = NIGHTLY) -> dict[str, ServerResult]:
    plan = await engine.resolve(selector)
    return {r.id: r for r in await engine.execute(plan)}


def by_outcome(results: dict[str, ServerResult]) -> dict[Outcome, int]:
    out: dict[Outcome, int] = {}
    for r in results.values():
        out[r.outcome] = out.get(r.outcome, 0) + 1
    return out


class TestResolution:
    """Selector → plan: pagination, re-checks, the tag guard, ID files."""

    async def test_follows_every_page_and_selects_only_matching(self) -> None:
        servers = [make_server(i) for i in range(10)] + [
            make_server(100 + i, tags=("env=prod",)) for i in range(4)
        ]
        fake = FakeCompute.with_servers(servers, page_size=3)
        plan = await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
        assert sorted(e.server.id for e in plan.entries) == sorted(s.id for s in servers[:10])
        # 10 matching records in pages of 3: 4 pages (the last one short).
        assert [c.kind for c in fake.calls] == ["list"] * 4

    async def test_rechecks_records_when_the_cloud_ignores_tag_filters(self) -> None:
        servers = [make_server(1), make_server(2, tags=("env=prod",))]
        fake = FakeCompute.with_servers(servers, ignore_tag_filters=True)
        plan = await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
        assert [e.server.id for e in plan.entries] == [servers[0].id]
        assert plan.rechecked_out == 1

    async def test_refuses_when_records_come_back_without_tags(self) -> None:
        fake = FakeCompute.with_servers([make_server(1)], drop_tags=True)
        with pytest.raises(UnsafeCloudError, match="without its tags"):
            await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
        assert fake.actions() == []

    async def test_listing_failure_is_a_run_error_before_any_action(self) -> None:
        fake = FakeCompute.with_servers([make_server(1)])
        fake.list_script = [Reply(status=403, error=ErrorInfo(code="forbidden", message="no"))]
        with pytest.raises(AuthError, match=r"could not list servers \(forbidden: no\)"):
            await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
        assert fake.actions() == []

    async def test_html_200_listing_is_an_endpoint_error(self) -> None:
        fake = FakeCompute.with_servers([make_server(1)])
        fake.list_script = [
            Reply(status=200, error=ErrorInfo(code="invalid_response", message="HTML page"))
        ]
        with pytest.raises(EndpointError, match="invalid_response"):
            await fake_engine(fake, FakeClock()).resolve(NIGHTLY)

    async def test_id_file_targets_are_checked_against_the_cloud(self) -> None:
        servers = [make_server(i) for i in range(3)]
        fake = FakeCompute.with_servers(servers)
        ghost = "00000000-0000-4000-8000-999999999999"
        ids = (
            IdEntry(id=servers[0].id, line=1),
            IdEntry(id=servers[2].id, line=2),
            IdEntry(id=ghost, line=3),
        )
        results = await run(fake_engine(fake, FakeClock()), Selector(ids=ids))
        assert results[servers[0].id].outcome is Outcome.ACCEPTED
        assert results[servers[2].id].outcome is Outcome.ACCEPTED
        assert results[ghost].outcome is Outcome.NOT_FOUND
        assert results[ghost].project_id == "p1"  # the one project it was looked for in
        assert servers[1].id not in results
        # Few ids: read with GETs, no listing.
        assert {c.kind for c in fake.calls} == {"get", "action"}

    async def test_id_file_and_tag_combine_with_and(self) -> None:
        servers = [make_server(1), make_server(2, tags=("env=prod",))]
        fake = FakeCompute.with_servers(servers)
        ids = tuple(IdEntry(id=s.id, line=n) for n, s in enumerate(servers, 1))
        results = await run(
            fake_engine(fake, FakeClock()), Selector(ids=ids, tags=("nightly-stop",))
        )
        assert list(results) == [servers[0].id]
        assert fake.actions() == [servers[0].id]

    async def test_many_ids_are_read_by_listing(self) -> None:
        servers = [make_server(i) for i in range(40)]
        fake = FakeCompute.with_servers(servers, page_size=1000)
        ids = tuple(IdEntry(id=s.id, line=n) for n, s in enumerate(servers[:30], 1))
        plan = await fake_engine(fake, FakeClock()).resolve(Selector(ids=ids))
        assert len(plan.entries) == 30
        assert [c.kind for c in fake.calls] == ["list"]

    async def test_id_in_a_project_out_of_scope_is_refused(self) -> None:
        fake = FakeCompute.with_servers([make_server(1)])
        ids = (IdEntry(id=make_server(1).id, project_id="other", line=7),)
        with pytest.raises(InputError, match=r"ids.txt:7: .*not in scope"):
            await fake_engine(fake, FakeClock()).resolve(Selector(ids=ids, ids_source="ids.txt"))
        assert fake.calls == []


class TestEligibility:
    """Servers that need no request get none, with the reason on record."""

    async def test_states_map_to_outcomes_without_requests(self) -> None:
        servers = {
            "go": make_server(1),
            "err": make_server(2, vm_state="error"),
            "off": make_server(3, vm_state="stopped"),
            "busy": make_server(4, task_state="powering-off"),
            "paused": make_server(5, vm_state="paused"),
            "locked": make_server(6, locked=True),
            "protected": make_server(7, tags=("nightly-stop", PROTECT_TAG)),
            "excluded": make_server(8, tags=("nightly-stop", "keep")),
        }
        fake = FakeCompute.with_servers(servers.values())
        selector = Selector(tags=("nightly-stop",), exclude_tags=("keep",))
        results = await run(fake_engine(fake, FakeClock()), selector)
        outcome = {k: results[s.id].outcome for k, s in servers.items()}
        assert outcome == {
            "go": Outcome.ACCEPTED,
            "err": Outcome.ACCEPTED,
            "off": Outcome.ALREADY_STOPPED,
            "busy": Outcome.ALREADY_STOPPED,
            "paused": Outcome.SKIPPED,
            "locked": Outcome.SKIPPED,
            "protected": Outcome.EXCLUDED,
            "excluded": Outcome.EXCLUDED,
        }
        assert sorted(fake.actions()) == sorted([servers["go"].id, servers["err"].id])
        assert results[servers["locked"].id].reason == "locked"
        assert results[servers["protected"].id].reason == f"tag {PROTECT_TAG}"
        assert results[servers["paused"].id].attempts == 0

    async def test_dry_run_sends_no_action(self) -> None:
        fake = FakeCompute.with_servers([make_server(i) for i in range(5)])
        results = await run(fake_engine(fake, FakeClock(), dry_run=True))
        assert by_outcome(results) == {Outcome.PLANNED: 5}
        assert fake.actions() == []


class TestOutcomes:
    """Every answer a stop can get, and what the report says."""

    async def test_accepted_records_status_attempts_and_request_id(self) -> None:
        fake = FakeCompute.with_servers([make_server(1)])
        (result,) = (await run(fake_engine(fake, FakeClock()))).values()
        assert (result.outcome, result.http_status, result.attempts) == (Outcome.ACCEPTED, 202, 1)
        assert result.request_id is not None

    async def test_409_on_a_server_stopped_meanwhile_is_already_stopped(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        conflict = Reply(status=409, error=ErrorInfo(code="conflictingRequest", message="x"))
        fake.script[server.id] = [conflict]
        fake._apply(server.id, Action.STOP)  # someone else stopped it after our listing
        engine = fake_engine(fake, FakeClock())
        plan = Plan(entries=(await engine.resolve(NIGHTLY)).entries, scopes=("p1",))
        # Resolution saw it stopped already; force the race by planning from the old record.
        from bulkstop.plan.eligibility import STOP, classify

        plan = Plan(entries=(classify(server, scope="p1", selector=NIGHTLY, spec=STOP, now=NOW),))
        (result,) = await engine.execute(plan)
        assert result.outcome is Outcome.ALREADY_STOPPED
        assert result.http_status == 409
        assert [c.kind for c in fake.calls][-2:] == ["action", "get"]

    async def test_409_on_a_server_still_active_is_failed_with_the_error(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        fake.script[server.id] = [
            Reply(status=409, error=ErrorInfo(code="conflictingRequest", message="is locked"))
        ]
        (result,) = (await run(fake_engine(fake, FakeClock()))).values()
        assert result.outcome is Outcome.FAILED
        assert result.error == ErrorInfo(code="conflictingRequest", message="is locked")

    async def test_409_after_an_unanswered_attempt_counts_as_ours(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        timeout = Reply(status=None, error=ErrorInfo(code="timeout", message="no answer"))
        conflict = Reply(status=409, error=ErrorInfo(code="conflictingRequest", message="x"))
        fake.script[server.id] = [timeout, conflict]
        fake._apply(server.id, Action.STOP)  # the timed-out request did go through
        from bulkstop.plan.eligibility import STOP, classify

        engine = fake_engine(fake, FakeClock())
        plan = Plan(entries=(classify(server, scope="p1", selector=NIGHTLY, spec=STOP, now=NOW),))
        (result,) = await engine.execute(plan)
        assert (result.outcome, result.attempts) == (Outcome.ACCEPTED, 2)

    async def test_404_is_not_found_and_403_is_failed(self) -> None:
        a, b = make_server(1), make_server(2)
        fake = FakeCompute.with_servers([a, b])
        fake.script[a.id] = [
            Reply(status=404, error=ErrorInfo(code="itemNotFound", message="gone"))
        ]
        fake.script[b.id] = [Reply(status=403, error=ErrorInfo(code="forbidden", message="policy"))]
        results = await run(fake_engine(fake, FakeClock()))
        assert results[a.id].outcome is Outcome.NOT_FOUND
        assert (results[b.id].outcome, results[b.id].attempts) == (Outcome.FAILED, 1)
        assert results[b.id].error == ErrorInfo(code="forbidden", message="policy")

    async def test_one_failure_does_not_stop_the_others(self) -> None:
        servers = [make_server(i) for i in range(20)]
        fake = FakeCompute.with_servers(servers)
        fake.script[servers[3].id] = [
            Reply(status=400, error=ErrorInfo(code="badRequest", message="?"))
        ]
        results = await run(fake_engine(fake, FakeClock()))
        assert by_outcome(results) == {Outcome.ACCEPTED: 19, Outcome.FAILED: 1}


class TestRetries:
    """Transient failures, throttles and token renewal."""

    async def test_transient_failures_are_retried_with_backoff(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        fake.script[server.id] = [
            Reply(status=503, error=ErrorInfo(code="HTTP 503", message="Service Unavailable")),
            Reply(status=None, error=ErrorInfo(code="connection_reset", message="reset")),
        ]
        clock = FakeClock()
        (result,) = (await run(fake_engine(fake, clock))).values()
        assert (result.outcome, result.attempts, result.http_status) == (Outcome.ACCEPTED, 3, 202)
        assert len(clock.slept) == 2 and all(s > 0 for s in clock.slept)

    async def test_gives_up_after_max_attempts(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        fake.script[server.id] = [
            Reply(status=500, error=ErrorInfo(code="computeFault", message="boom"))
        ] * 10
        engine = fake_engine(fake, FakeClock(), retry=RetryPolicy(max_attempts=3))
        (result,) = (await run(engine)).values()
        assert (result.outcome, result.attempts) == (Outcome.FAILED, 3)
        assert result.reason == "gave up after 3 failed attempts"
        assert result.error == ErrorInfo(code="computeFault", message="boom")

    async def test_throttles_wait_retry_after_and_do_not_count_as_failures(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        throttle = Reply(status=429, retry_after=7.0, error=ErrorInfo(code="overLimit", message=""))
        fake.script[server.id] = [throttle] * 6
        clock = FakeClock()
        engine = fake_engine(fake, clock, retry=RetryPolicy(max_attempts=2))
        (result,) = (await run(engine)).values()
        assert (result.outcome, result.attempts) == (Outcome.ACCEPTED, 7)
        assert all(s >= 7.0 for s in clock.slept if s > 0.5)

    async def test_huawei_gateway_throttle_is_a_throttle(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        fake.script[server.id] = [
            Reply(status=429, error=ErrorInfo(code="APIG.0308", message="over ratelimit"))
        ]
        (result,) = (await run(fake_engine(fake, FakeClock()))).values()
        assert (result.outcome, result.attempts) == (Outcome.ACCEPTED, 2)

    async def test_throttle_budget_is_bounded(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        throttle = Reply(status=429, retry_after=60.0, error=ErrorInfo(code="HTTP 429", message=""))
        fake.script[server.id] = [throttle] * 100
        engine = fake_engine(fake, FakeClock(), retry=RetryPolicy(max_throttle_wait=200))
        (result,) = (await run(engine)).values()
        assert result.outcome is Outcome.FAILED
        assert result.reason is not None and result.reason == "throttled for 200s"

    async def test_401_renews_the_token_and_retries_once(self) -> None:
        a, b = make_server(1), make_server(2)
        fake = FakeCompute.with_servers([a, b])
        unauthorized = Reply(status=401, error=ErrorInfo(code="unauthorized", message="expired"))
        fake.script[a.id] = [unauthorized]
        fake.script[b.id] = [unauthorized, unauthorized]
        results = await run(fake_engine(fake, FakeClock(), concurrency=1))
        assert (results[a.id].outcome, results[a.id].attempts) == (Outcome.ACCEPTED, 2)
        assert (results[b.id].outcome, results[b.id].attempts) == (Outcome.FAILED, 2)
        assert fake.renewals == ["p1", "p1"]


class TestWait:
    """--wait polls in batches until SHUTOFF, error or the deadline."""

    async def test_wait_turns_accepted_into_stopped(self) -> None:
        servers = [make_server(i) for i in range(5)]
        fake = FakeCompute.with_servers(servers)
        results = await run(fake_engine(fake, FakeClock(), wait=True))
        assert by_outcome(results) == {Outcome.STOPPED: 5}
        # Polls read the project in batches (GETs for few servers), not one loop per server.
        assert sum(c.kind == "action" for c in fake.calls) == 5

    async def test_wait_timeout_fails_with_the_reason(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        fake.script[server.id] = [Reply(status=202)]
        fake._apply = lambda *_: None  # type: ignore[method-assign]  # never reaches SHUTOFF
        results = await run(fake_engine(fake, FakeClock(), wait=True, wait_timeout=5.0))
        (result,) = results.values()
        assert result.outcome is Outcome.FAILED
        assert result.reason == "not SHUTOFF after 5s"


class TestHalt:
    """A halt dispatches nothing new and leaves every server on record."""

    async def test_halt_marks_the_rest_not_attempted(self) -> None:
        servers = [make_server(i) for i in range(10)]
        fake = FakeCompute.with_servers(servers)

        class HaltAfterThree(Observer):
            def __init__(self) -> None:
                self.engine: Engine | None = None
                self.sent = 0

            def sending(self, entry: object) -> None:
                self.sent += 1
                if self.sent == 3 and self.engine is not None:
                    self.engine.halt("deadline")

        observer = HaltAfterThree()
        engine = fake_engine(fake, FakeClock(), concurrency=1, observer=observer)
        observer.engine = engine
        results = await run(engine)
        # The third request was about to go when the halt came: it is not sent either.
        assert by_outcome(results) == {Outcome.ACCEPTED: 2, Outcome.NOT_ATTEMPTED: 8}
        assert len(fake.actions()) == 2
        assert {r.reason for r in results.values() if r.outcome is Outcome.NOT_ATTEMPTED} == {
            "deadline"
        }


class TestDeadlineAndWait:
    """The deadline stops sends and their retries, not ``wait``'s status polls (issue 10, row 1)."""

    async def test_polls_go_on_until_the_wait_timeout_after_a_deadline_halt(self) -> None:
        # A shared clock: the project's 300 s throttle hold keeps the polls waiting while the
        # throttled stop waits for the deadline, and neither wait may jump the other ahead.
        clock = SharedClock()
        slow, stuck, throttled = make_server(1), make_server(2), make_server(3)
        fake = FakeCompute.with_servers([slow, stuck, throttled])
        fake._apply = lambda *_: None  # type: ignore[method-assign]  # no stop is instant
        # The third server's stop is throttled for days: its retry would come after the deadline.
        fake.script[throttled.id] = [Reply(status=429, retry_after=999999.0)]
        engine = fake_engine(
            fake,
            clock,
            concurrency=1,
            wait=True,
            wait_timeout=600.0,
            rails=Rails(deadline=utc_now() + timedelta(seconds=100)),
        )
        start = clock.now
        # The slow server is off after the deadline, and after the project's 300 s hold.
        settles_at = start + 400
        listed, read = fake.list_page, fake.get_server

        def settle() -> None:
            if clock.now >= settles_at:
                FakeCompute._apply(fake, slow.id, Action.STOP)

        async def list_page(project_id: str, query: ListQuery, marker: str | None) -> Reply:
            settle()
            return await listed(project_id, query, marker)

        async def get_server(project_id: str, server_id: str) -> Reply:
            settle()
            return await read(project_id, server_id)

        fake.list_page = list_page  # type: ignore[method-assign]
        fake.get_server = get_server  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.run)
            results = await run(engine)
            tg.cancel_scope.cancel()

        assert engine.halted == "deadline"
        # Nothing was sent after the deadline: the throttled stop was not tried again.
        assert fake.actions() == [slow.id, stuck.id, throttled.id]
        held = results[throttled.id]
        assert held.outcome is Outcome.NOT_ATTEMPTED
        assert (held.attempts, held.http_status) == (1, 429)
        # The polls went on past the deadline: the slow server was seen off ...
        assert results[slow.id].outcome is Outcome.STOPPED
        # ... and the one that never got there ran into its wait timeout, not the deadline.
        assert results[stuck.id].outcome is Outcome.FAILED
        assert results[stuck.id].reason == "not SHUTOFF after 600s"
        # Held until the deadline, then no sooner done than the stuck server's wait timeout.
        assert max(clock.slept) <= MAX_RETRY_AFTER + 1
        assert clock.now - start == pytest.approx(600, abs=2)

    async def test_a_read_waiting_out_a_hold_keeps_no_stop_past_its_deadline(self) -> None:
        clock = SharedClock()
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        budget = ProjectBudget(rate=10, clock=clock, sleep=clock.sleep)
        gate = Gate(
            compute=fake,
            budgets={"p1": budget},
            concurrency=1,
            policy=RetryPolicy(),
            clock=clock,
            sleep=clock.sleep,
        )
        budget.throttled(MAX_RETRY_AFTER)  # a 429's hold: nothing of p1 goes out for 300 s
        start = clock.now
        until = start + 100
        refused_at: list[float] = []

        async def read() -> None:  # a status poll: no deadline, it waits the hold out
            await gate.call("p1", partial(fake.get_server, "p1", server.id))

        async def stop() -> None:
            request = partial(fake.action, "p1", server.id, Action.STOP)
            with pytest.raises(NotAdmitted):
                await gate.call("p1", request, admit=lambda: clock() < until, until=until)
            refused_at.append(clock.now)

        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.run)
            async with anyio.create_task_group() as calls:
                calls.start_soon(read)  # first in line for the project's turn
                calls.start_soon(stop)
            tg.cancel_scope.cancel()
        # The stop gave up at its deadline, not when the read's hold ended.
        assert refused_at == [until]
        assert fake.actions() == []

    async def test_any_other_halt_still_ends_the_polls(self) -> None:
        clock = FakeClock()
        first, second = make_server(1), make_server(2)
        fake = FakeCompute.with_servers([first, second])
        fake._apply = lambda *_: None  # type: ignore[method-assign]  # never reaches SHUTOFF

        class InterruptOnSecond(Observer):
            engine: Engine | None = None

            def sending(self, entry: PlanEntry) -> None:
                if entry.server.id == second.id and self.engine is not None:
                    self.engine.halt(INTERRUPTED)

        observer = InterruptOnSecond()
        engine = fake_engine(
            fake, clock, concurrency=1, wait=True, wait_timeout=300.0, observer=observer
        )
        observer.engine = engine
        start = clock.now
        results = await run(engine)
        assert results[first.id].outcome is Outcome.ACCEPTED
        assert results[first.id].reason == f"{INTERRUPTED} before SHUTOFF"
        assert results[second.id].outcome is Outcome.NOT_ATTEMPTED
        assert clock.now - start < 300


class TestStart:
    """The same machinery starts servers."""

    async def test_start_only_stopped_servers(self) -> None:
        servers = [make_server(1, vm_state="stopped"), make_server(2)]
        fake = FakeCompute.with_servers(servers)
        results = await run(fake_engine(fake, FakeClock(), action=Action.START, wait=True))
        assert results[servers[0].id].outcome is Outcome.STARTED
        assert results[servers[1].id].outcome is Outcome.ALREADY_STARTED
        assert fake.actions(Action.START) == [servers[0].id]


class TestRails:
    """Rails that act during dispatch: canary, circuit breaker, deadline, waves."""

    async def test_canary_failure_halts_before_the_rest(self) -> None:
        servers = [make_server(i, project_id=f"p{i % 2 + 1}") for i in range(10)]
        fake = FakeCompute.with_servers(servers)
        fake._apply = lambda *_: None  # type: ignore[method-assign]  # nothing ever stops
        engine = fake_engine(
            fake, FakeClock(), scopes=("p1", "p2"), rails=Rails(canary=2), wait_timeout=5.0
        )
        results = await run(engine)
        assert by_outcome(results) == {Outcome.FAILED: 2, Outcome.NOT_ATTEMPTED: 8}
        canaries = fake.actions()
        assert len(canaries) == 2
        assert {results[c].project_id for c in canaries} == {"p1", "p2"}
        assert engine.halted == "canary: 2 of 2 did not reach SHUTOFF"

    async def test_canary_success_continues(self) -> None:
        fake = FakeCompute.with_servers([make_server(i) for i in range(6)])
        results = await run(fake_engine(fake, FakeClock(), rails=Rails(canary=2)))
        # The canary waited for SHUTOFF; the rest were only accepted (no --wait).
        assert by_outcome(results) == {Outcome.STOPPED: 2, Outcome.ACCEPTED: 4}

    async def test_breaker_stops_dispatch_after_too_many_errors(self) -> None:
        servers = [make_server(i) for i in range(30)]
        fake = FakeCompute.with_servers(servers)
        forbidden = Reply(status=403, error=ErrorInfo(code="forbidden", message="no"))
        for s in servers:
            fake.script[s.id] = [forbidden]
        engine = fake_engine(
            fake, FakeClock(), concurrency=1, rails=Rails(max_errors=ErrorBudget(count=3))
        )
        results = await run(engine)
        assert by_outcome(results) == {Outcome.FAILED: 4, Outcome.NOT_ATTEMPTED: 26}
        assert len(fake.actions()) == 4
        assert engine.halted == "max-errors: 4 of 4 requests failed"

    async def test_deadline_passed_dispatches_nothing(self) -> None:
        fake = FakeCompute.with_servers([make_server(i) for i in range(5)])
        clock = FakeClock()
        engine = fake_engine(fake, clock, rails=Rails(deadline=utc_now() + timedelta(seconds=30)))
        plan = await engine.resolve(NIGHTLY)
        clock.now += 31
        results = {r.id: r for r in await engine.execute(plan)}
        assert by_outcome(results) == {Outcome.NOT_ATTEMPTED: 5}
        assert {r.reason for r in results.values()} == {"deadline"}
        assert fake.actions() == []

    async def test_waves_run_in_order_each_finished_before_the_next(self) -> None:
        servers = [
            make_server(1, tags=("nightly-stop", "bulkstop:wave=2")),
            make_server(2, tags=("nightly-stop",)),
            make_server(3, tags=("nightly-stop", "bulkstop:wave=1")),
            make_server(4, tags=("nightly-stop", "bulkstop:wave=10")),
        ]
        fake = FakeCompute.with_servers(servers)
        await run(fake_engine(fake, FakeClock(), wait=True))
        assert fake.actions() == [servers[i].id for i in (2, 0, 3, 1)]
        kinds = [(c.kind, c.server_id) for c in fake.calls if c.kind != "list"]
        # With --wait, each wave's server is seen SHUTOFF (a GET) before the next is stopped.
        assert kinds == [(kind, servers[i].id) for i in (2, 0, 3, 1) for kind in ("action", "get")]

    async def test_malformed_wave_tag_refuses_before_sending(self) -> None:
        fake = FakeCompute.with_servers([make_server(1, tags=("nightly-stop", "bulkstop:wave=x"))])
        with pytest.raises(RefusedError, match="malformed wave tag"):
            await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
        assert fake.actions() == []

    async def test_census_counts_every_server_per_project(self) -> None:
        servers = [make_server(i, project_id="p1", tags=()) for i in range(7)]
        fake = FakeCompute.with_servers(servers)
        assert await fake_engine(fake, FakeClock()).census() == {"p1": 7}


class Recorder(Observer):
    """Records the hooks that feed the timeline and the JSON log."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, bool, float | None]] = []
        self.batches: list[tuple[bool, int]] = []
        self.halts: list[str] = []

    def answered(self, scope: str, *, throttled: bool, hold: float | None) -> None:
        self.answers.append((scope, throttled, hold))

    def batch_started(self, batch: Batch) -> None:
        self.batches.append((batch.canary, len(batch.entries)))

    def halted(self, reason: str) -> None:
        self.halts.append(reason)


class TestObserverHooks:
    """The split engine still tells an observer of every answer, batch and halt."""

    async def test_a_throttle_a_canary_and_its_halt_are_each_told(self) -> None:
        servers = [make_server(i) for i in range(6)]
        fake = FakeCompute.with_servers(servers)
        throttle = Reply(status=429, retry_after=7.0, error=ErrorInfo(code="overLimit", message=""))
        fake.script[servers[0].id] = [throttle, Reply(status=500), Reply(status=202)]
        recorder = Recorder()
        engine = fake_engine(fake, FakeClock(), observer=recorder, rails=Rails(canary=1))
        fake._apply = lambda *_: None  # type: ignore[method-assign]  # the canary never stops
        plan = await engine.resolve(NIGHTLY)
        await engine.execute(plan)
        engine.halt("interrupted")  # a later reason is not told again
        actions = [(s, t, h) for s, t, h in recorder.answers if t or h is not None]
        assert actions == [("p1", True, 7.0)]
        # Every call was answered once: 2 list pages, 3 attempts of the action, then the reads.
        assert len(recorder.answers) == len(fake.calls)
        assert recorder.batches == [(True, 1)]
        assert recorder.halts == [engine.halted] and engine.halted is not None
        assert engine.halted.startswith("canary")
