"""The engine's parts: verdicts mapped to outcomes, the Dispatcher seam, and wait's poll choice."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCompute, fake_engine, make_server
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.cloud.verdict import NOT_READY
from bulkstop.execute.context import DispatchContext
from bulkstop.execute.dispatch import Dispatcher
from bulkstop.execute.engine import Engine, Observer, RunOptions
from bulkstop.execute.ledger import result_for
from bulkstop.execute.resolve import GET_THRESHOLD
from bulkstop.execute.wait import poll_by_listing
from bulkstop.models import ErrorInfo, Outcome, Reply, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import Batch, ErrorBudget, Rails
from bulkstop.select.selector import Selector

pytestmark = pytest.mark.anyio

NIGHTLY = Selector(tags=("nightly-stop",))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def run(engine: Engine) -> dict[str, ServerResult]:
    plan = await engine.resolve(NIGHTLY)
    return {r.id: r for r in await engine.execute(plan)}


def refusal(status: int, code: str, message: str = "") -> Reply:
    return Reply(status=status, error=ErrorInfo(code=code, message=message))


class TestVerdictsBecomeOutcomes:
    """What the dispatcher makes of each verdict."""

    async def test_never_scheduled_is_skipped_and_spares_the_error_budget(self) -> None:
        servers = [make_server(i, vm_state="error") for i in range(3)]
        fake = FakeCompute.with_servers(servers)
        for s in servers:
            fake.script[s.id] = [
                refusal(409, "conflictingRequest", f"Instance {s.id} is not ready")
            ]
        engine = fake_engine(fake, FakeClock(), rails=Rails(max_errors=ErrorBudget(count=0)))
        results = await run(engine)
        assert {(r.outcome, r.reason, r.http_status, r.attempts) for r in results.values()} == {
            (Outcome.SKIPPED, NOT_READY, 409, 1)
        }
        assert engine.halted is None
        assert [c.kind for c in fake.calls].count("get") == 0  # no re-read: nothing to learn

    @pytest.mark.parametrize(
        ("code", "outcome", "reason"),
        [
            ("BMS.0039", Outcome.ALREADY_STOPPED, "already stopped (BMS.0039)"),
            ("Ecs.0605", Outcome.SKIPPED, "locked (Ecs.0605)"),
            ("BMS.0040", Outcome.NOT_FOUND, "the cloud does not know it"),
        ],
    )
    async def test_huawei_codes_map_to_outcomes(
        self, code: str, outcome: Outcome, reason: str
    ) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        fake.script[server.id] = [refusal(400, code)]
        (result,) = (await run(fake_engine(fake, FakeClock()))).values()
        assert (result.outcome, result.reason, result.http_status) == (outcome, reason, 400)

    async def test_huawei_powering_off_is_re_read_like_a_409(self) -> None:
        server = make_server(1)
        fake = FakeCompute.with_servers([server])
        fake.script[server.id] = [refusal(400, "BMS.0036")]
        fake.script[f"get:{server.id}"] = [
            Reply(status=200, body=make_server(1, task_state="powering-off"))
        ]
        (result,) = (await run(fake_engine(fake, FakeClock()))).values()
        assert (result.outcome, result.reason) == (Outcome.ACCEPTED, "already powering-off (400)")
        assert [c.kind for c in fake.calls][-2:] == ["action", "get"]


class Recorder(Observer):
    def __init__(self) -> None:
        self.sent: list[str] = []

    def sending(self, entry: PlanEntry) -> None:
        self.sent.append(entry.server.id)


class TestDispatcherSeam:
    """A second dispatcher plugs in through the factory; the engine's rails still apply."""

    async def test_a_custom_dispatcher_reports_through_the_ledger(self) -> None:
        batches: list[tuple[int, bool]] = []

        class Chunked:
            """Admits a whole batch, then finishes it at once (as a batch API would)."""

            def __init__(self, context: DispatchContext) -> None:
                self.context = context

            async def dispatch(self, batch: Batch, *, wait: bool) -> None:
                batches.append((len(batch.entries), wait))
                ledger = self.context.ledger
                admitted = [e for e in batch.entries if ledger.admit(e)]
                for entry in admitted:
                    ledger.answered(entry.server.id)
                    outcome = spec.finished if wait else Outcome.ACCEPTED
                    ledger.finish(result_for(entry, outcome, attempts=1, http_status=202))

        spec = RunOptions().spec
        factory: type[Dispatcher] = Chunked
        fake = FakeCompute.with_servers([make_server(i) for i in range(5)])
        recorder = Recorder()
        engine = Engine(
            compute=fake,
            scopes=("p1",),
            options=RunOptions(rate=0, rails=Rails(canary=2)),
            observer=recorder,
            clock=FakeClock(),
            dispatcher=factory,
        )
        results = await run(engine)
        assert batches == [(2, True), (3, False)]  # the canary waits; the rest does not
        assert sorted(r.outcome for r in results.values()) == sorted(
            [Outcome.STOPPED] * 2 + [Outcome.ACCEPTED] * 3
        )
        assert len(recorder.sent) == 5 and fake.actions() == []

    async def test_a_halt_inside_a_custom_dispatcher_leaves_the_rest_not_attempted(self) -> None:
        class HaltsAfterOne:
            def __init__(self, context: DispatchContext) -> None:
                self.context = context

            async def dispatch(self, batch: Batch, *, wait: bool) -> None:
                first, *_ = batch.entries
                assert self.context.ledger.admit(first)
                self.context.halting.halt("test")
                assert not self.context.halting.may_dispatch()

        fake = FakeCompute.with_servers([make_server(i) for i in range(3)])
        engine = Engine(
            compute=fake,
            scopes=("p1",),
            options=RunOptions(rate=0),
            clock=FakeClock(),
            dispatcher=HaltsAfterOne,
        )
        results = await run(engine)
        reasons = sorted((r.outcome, r.reason or "") for r in results.values())
        assert reasons == [
            (Outcome.FAILED, "test with the request in flight: state unknown"),
            (Outcome.NOT_ATTEMPTED, "test"),
            (Outcome.NOT_ATTEMPTED, "test"),
        ]


class TestPollChoice:
    """``wait`` reads pending servers by GET or by listing, whichever costs fewer requests."""

    @given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=200))
    def test_listing_only_when_it_needs_fewer_requests(self, pages: list[int]) -> None:
        by_listing = poll_by_listing(pages)
        listing_cost, get_cost = max(pages) + 1, len(pages)
        assert by_listing == (listing_cost < get_cost)

    @given(st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=1, max_size=60))
    def test_an_unknown_page_falls_back_to_the_fixed_threshold(
        self, pages: list[int | None]
    ) -> None:
        if None in pages:
            assert poll_by_listing(pages) == (len(pages) > GET_THRESHOLD)

    def test_nothing_pending_reads_nothing(self) -> None:
        assert not poll_by_listing([])

    async def test_pending_servers_on_one_page_cost_one_listing_per_poll(self) -> None:
        fake = FakeCompute.with_servers([make_server(i) for i in range(21)], page_size=50)
        fake._apply = lambda *_: None  # type: ignore[method-assign]  # nothing ever stops
        clock = FakeClock()
        engine = fake_engine(fake, clock, wait=True, wait_timeout=3.5, concurrency=32)
        results = await run(engine)
        assert {r.reason for r in results.values()} == {"not SHUTOFF after 3.5s"}
        kinds = [c.kind for c in fake.calls]
        assert kinds.count("get") == 0
        # One listing to resolve, then at most one request per poll interval (not 21 GETs).
        polls = len(clock.slept)
        assert 1 + 4 <= kinds.count("list") <= 1 + polls

    async def test_one_pending_server_is_read_by_get(self) -> None:
        fake = FakeCompute.with_servers([make_server(1)], page_size=50)
        fake._apply = lambda *_: None  # type: ignore[method-assign]
        engine = fake_engine(fake, FakeClock(), wait=True, wait_timeout=1.5)
        await run(engine)
        kinds = [c.kind for c in fake.calls]
        assert kinds[:2] == ["list", "action"] and set(kinds[2:]) == {"get"}
