"""Issue #4's safety rails, proven by what the cloud received.

Each run goes the way a user's does (``OS_*`` → openstacksdk's loader → keystoneauth1 →
:class:`~bulkstop.cloud.http.HttpCompute` over loopback → :func:`bulkstop.runner.run`) against
an in-process :class:`~bulkstop.mockcloud.MockCloud` serving an exact fleet. The report says
what bulkstop believes; the mock's request journal is the witness that no stop went where a rail
forbids it. The rails' pure logic is unit-tested in ``tests/unit/test_rails.py``; here only the
server-side effect counts. The CLI's own rails (confirmation, plans, flags) are in
``tests/e2e/test_cli_rails.py``; the helpers both use are in ``tests/rails_helpers.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import pytest
from api_runner import FAST_RETRY, Runner, run_options
from fleets import TAG, TAGGED, fleet, pid, server, sid
from rails_helpers import (
    PROTECTION_FLEET,
    RAILS_PROJECTS,
    accepted,
    names,
    no_action_sent,
    stop_requests,
    stopped,
)

from bulkstop.errors import EXIT_FAILURES, EXIT_OK, EXIT_REFUSED, RefusedError
from bulkstop.execute.gate import RetryPolicy
from bulkstop.mockcloud import Faults, MockCloud, MockConfig, Trigger
from bulkstop.models import Outcome
from bulkstop.plan.rails import ErrorBudget, Rails
from bulkstop.record.report import Report, exit_code, read_report
from bulkstop.runner import RunRequest
from bulkstop.select.idfile import IdEntry
from bulkstop.select.selector import PROTECT_TAG, Selector
from bulkstop.timespec import format_time, utc_now

WAVE: Final = "bulkstop:wave="
#: Seconds from an accepted stop to SHUTOFF in the mock (real time: waits stay short).
DELAY: Final = 0.1
#: Seconds between two status polls while waiting.
POLL: Final = 0.02
#: What the transport may add between our send and the mock's arrival stamp.
IN_FLIGHT_SLACK: Final = 0.1

MakeMock = Callable[..., Awaitable[MockCloud]]


# -- fleets -----------------------------------------------------------------------------------


def waved(name: str, project: str, wave: int | None) -> dict[str, Any]:
    """A tagged server in ``bulkstop:wave=<wave>`` (untagged for None)."""
    return server(name, project, tags=(TAG,) if wave is None else (TAG, f"{WAVE}{wave}"))


# -- what the journal proves ----------------------------------------------------------------------


def arrivals(mock: MockCloud, *server_names: str) -> list[float]:
    """Arrival times (mock clock) of the os-stops of these servers."""
    wanted = {sid(n) for n in server_names}
    return [r.t for r in stop_requests(mock) if r.server_id in wanted]


def deadline_of(report: Report) -> float:
    """The deadline the report records, as a unix time (comparable to the journal's ``wall``)."""
    recorded = report.options["rails"]["deadline"]
    return datetime.fromisoformat(recorded.replace("Z", "+00:00")).timestamp()


def results(report: Report) -> dict[str, tuple[Outcome, str | None]]:
    """Each server's (outcome, reason), by name."""
    return {s.name: (s.outcome, s.reason) for s in report.servers}


def in_outcome(report: Report, outcome: Outcome) -> set[str]:
    """Names of the servers with this outcome."""
    return {s.name for s in report.servers if s.outcome is outcome}


def expected_canary(doc: dict[str, Any], count: int) -> list[str]:
    """The canary as the issue defines it, derived from the fleet document alone: the first
    wave only, round-robin across projects (in scope order), each project in listing order."""

    def wave(s: dict[str, Any]) -> int | None:
        tags = [t for t in s["tags"] if t.startswith(WAVE)]
        return int(tags[0][len(WAVE) :]) if tags else None

    numbered = [w for s in doc["servers"] if (w := wave(s)) is not None]
    first = min(numbered) if numbered else None
    queues = [
        [s["name"] for s in doc["servers"] if s["project"] == p and wave(s) == first]
        for p in RAILS_PROJECTS
    ]
    picked: list[str] = []
    for depth in range(max(map(len, queues))):
        picked += [q[depth] for q in queues if depth < len(q)]
    return picked[:count]


# -- running a stop -------------------------------------------------------------------------------


class Stop(Protocol):
    """``await stop(mock, selector, admin=False, deadline_in=None, **RunOptions fields)``."""

    def __call__(
        self,
        mock: MockCloud,
        selector: Selector = ...,
        *,
        admin: bool = ...,
        deadline_in: float | None = ...,
        **options: Any,
    ) -> Awaitable[Report]: ...


@pytest.fixture
def stop(runner: Runner, report_path: Path) -> Stop:
    """Run a stop through the Python API in every project of the mock, configured only by its
    ``OS_*`` (the machine's own ``OS_*`` and clouds.yaml are kept out). ``admin`` authenticates
    as the mock's admin user. ``rate`` defaults to unlimited, polls to :data:`POLL`.
    ``deadline_in`` sets the deadline that many seconds after authentication, so that a slow
    Keystone round trip cannot eat into it (the report's rails say when it was)."""

    async def go(
        mock: MockCloud,
        selector: Selector = TAGGED,
        *,
        admin: bool = False,
        deadline_in: float | None = None,
        **options: Any,
    ) -> Report:
        request = RunRequest(
            selector=selector,
            options=run_options(**{"poll_interval": POLL, **options}),
            report_path=str(report_path),
        )
        return await runner(mock, request, admin=admin, deadline_in=deadline_in)

    return go


async def serve(make_mock_cloud: MakeMock, doc: dict[str, Any], **config: Any) -> MockCloud:
    """A running mock serving exactly ``doc``, transitions taking :data:`DELAY` unless told."""
    return await make_mock_cloud(MockConfig(fleet=doc, **{"transition_delay": DELAY, **config}))


# -- tests ----------------------------------------------------------------------------------------


class TestCaps:
    """--max-servers / --max-percent refuse before the first action; the journal stays clean."""

    async def test_max_servers(self, make_mock_cloud: MakeMock, stop: Stop) -> None:
        mock = await serve(
            make_mock_cloud, fleet(*(server(f"s{i}") for i in range(5)), projects=RAILS_PROJECTS)
        )
        with pytest.raises(
            RefusedError, match="5 servers would be stopped, more than `max_servers` 4"
        ):
            await stop(mock, rails=Rails(max_servers=4))
        assert no_action_sent(mock)
        # The same fleet at the cap is acted on: the refusal above was the cap's doing.
        report = await stop(mock, rails=Rails(max_servers=5))
        assert accepted(mock) == {f"s{i}" for i in range(5)}
        assert exit_code(report) == EXIT_OK

    async def test_refusal_is_on_record_and_a_dry_run_says_it_would_be_refused(
        self, make_mock_cloud: MakeMock, stop: Stop, report_path: Path
    ) -> None:
        mock = await serve(
            make_mock_cloud, fleet(*(server(f"s{i}") for i in range(3)), projects=RAILS_PROJECTS)
        )
        with pytest.raises(RefusedError):
            await stop(mock, rails=Rails(max_servers=2))
        refused = read_report(str(report_path))
        assert refused.halted_by is not None and refused.halted_by.startswith("max-servers")
        assert {s.outcome for s in refused.servers} == {Outcome.NOT_ATTEMPTED}
        dry = await stop(mock, rails=Rails(max_servers=2), dry_run=True)
        assert dry.halted_by == refused.halted_by
        assert {s.outcome for s in dry.servers} == {Outcome.PLANNED}
        assert exit_code(dry) == EXIT_REFUSED
        assert no_action_sent(mock)

    async def test_max_percent_counts_every_server_of_each_project(
        self, make_mock_cloud: MakeMock, stop: Stop
    ) -> None:
        doc = fleet(
            *(server(f"a{i}", "p0", tags=(TAG,) if i < 2 else ()) for i in range(4)),
            *(server(f"b{i}", "p1", tags=(TAG,) if i < 3 else ()) for i in range(4)),
            projects=RAILS_PROJECTS,
        )
        mock = await serve(make_mock_cloud, doc)
        with pytest.raises(RefusedError, match=f"project {pid(mock, 'p1')}: 3 of its 4 servers"):
            await stop(mock, rails=Rails(max_percent=70))
        assert no_action_sent(mock)
        # 75% of p1 is allowed at 75: the census counted the untagged servers too.
        await stop(mock, rails=Rails(max_percent=75))
        assert accepted(mock) == {"a0", "a1", "b0", "b1", "b2"}


class TestProtection:
    """Protected, exempt and locked servers get no request, however they were selected."""

    @pytest.mark.parametrize("by", ["tag", "ids"])
    async def test_no_stop_reaches_a_protected_server(
        self, make_mock_cloud: MakeMock, stop: Stop, by: str
    ) -> None:
        mock = await serve(
            make_mock_cloud, fleet(*(s for s, _, _ in PROTECTION_FLEET), projects=RAILS_PROJECTS)
        )
        guards: dict[str, Any] = {"exclude_tags": ("no-touch",), "protect_tags": ("keep-on",)}
        if by == "tag":
            selector = Selector(tags=(TAG,), **guards)
        else:
            ids = tuple(IdEntry(id=s["id"], line=n) for n, (s, _, _) in enumerate(PROTECTION_FLEET))
            selector = Selector(ids=ids, ids_source="ids.txt", **guards)
        report = await stop(mock, selector)
        assert set(stopped(mock)) == {"plain", "past"}
        assert accepted(mock) == {"plain", "past"}
        assert results(report) == {s["name"]: (o, r) for s, o, r in PROTECTION_FLEET}

    @pytest.mark.parametrize(
        ("admin", "status", "outcome", "code"),
        [(False, 409, Outcome.FAILED, EXIT_FAILURES), (True, 202, Outcome.ACCEPTED, EXIT_OK)],
        ids=["member-409", "admin-202"],
    )
    async def test_include_locked_lets_the_cloud_decide(
        self,
        make_mock_cloud: MakeMock,
        stop: Stop,
        admin: bool,
        status: int,
        outcome: Outcome,
        code: int,
    ) -> None:
        mock = await serve(
            make_mock_cloud,
            fleet(server("locked", locked=True), server("plain"), projects=RAILS_PROJECTS),
        )
        report = await stop(mock, Selector(tags=(TAG,), include_locked=True), admin=admin)
        to_locked = [r.status for r in stop_requests(mock) if r.server_id == sid("locked")]
        assert to_locked == [status]
        assert results(report)["locked"][0] is outcome
        assert accepted(mock) == ({"plain", "locked"} if admin else {"plain"})
        assert exit_code(report) == code


#: Three projects, two waves and untagged servers, listed out of wave order.
CANARY_FLEET: Final = fleet(
    waved("a0", "p0", 1),
    waved("a1", "p0", 2),
    waved("a2", "p0", 1),
    waved("a3", "p0", None),
    waved("b0", "p1", 2),
    waved("b1", "p1", 1),
    waved("b2", "p1", None),
    waved("c0", "p2", None),
    waved("c1", "p2", 1),
    projects=RAILS_PROJECTS,
)
ALL_CANARY_FLEET: Final = {s["name"] for s in CANARY_FLEET["servers"]}


class TestCanary:
    """--canary N: N stops first, one per project from the first wave; the rest only after
    they are SHUTOFF, and not at all if one of them fails."""

    async def test_canary_first_then_the_rest_after_shutoff(
        self, make_mock_cloud: MakeMock, stop: Stop
    ) -> None:
        canary = expected_canary(CANARY_FLEET, 3)
        assert canary == ["a0", "b1", "c1"]  # the derivation itself: first wave, spread
        mock = await serve(make_mock_cloud, CANARY_FLEET)
        report = await stop(mock, rails=Rails(canary=3))
        order = stopped(mock)
        assert set(order[:3]) == set(canary)
        assert set(order) == ALL_CANARY_FLEET
        # Nothing else was sent before every canary server had reached SHUTOFF.
        rest = ALL_CANARY_FLEET - set(canary)
        assert min(arrivals(mock, *rest)) >= max(arrivals(mock, *canary)) + DELAY
        assert in_outcome(report, Outcome.STOPPED) == set(canary)
        assert in_outcome(report, Outcome.ACCEPTED) == rest
        assert report.halted_by is None

    async def test_canary_of_an_id_list_follows_its_order(
        self, make_mock_cloud: MakeMock, stop: Stop
    ) -> None:
        # Listed in descending id order: the first listed of each project has the largest id.
        doc = fleet(
            *sorted(
                (server(f"{p}-{i}", p) for p in ("p0", "p1") for i in range(4)),
                key=lambda s: s["id"],
                reverse=True,
            ),
            projects=RAILS_PROJECTS,
        )
        mock = await serve(make_mock_cloud, doc)
        ids = tuple(IdEntry(id=s["id"], line=n) for n, s in enumerate(doc["servers"], 1))
        await stop(mock, Selector(ids=ids, ids_source="ids.txt"), rails=Rails(canary=2))
        assert set(stopped(mock)[:2]) == set(expected_canary(doc, 2))

    @pytest.mark.parametrize("cause", ["5xx", "never-shutoff"])
    async def test_failed_canary_halts_before_the_rest(
        self, make_mock_cloud: MakeMock, stop: Stop, cause: str
    ) -> None:
        canary = expected_canary(CANARY_FLEET, 3)
        if cause == "5xx":
            # The first canary server answers 500 three times; two attempts are allowed.
            faults = Faults(server_error=Trigger(servers={sid(canary[0]): 3}))
            mock = await serve(make_mock_cloud, CANARY_FLEET, faults=faults)
            options: dict[str, Any] = {"retry": dataclasses.replace(FAST_RETRY, max_attempts=2)}
            failed = 1
        else:
            mock = await serve(make_mock_cloud, CANARY_FLEET, transition_delay=30.0)
            options = {"wait_timeout": 0.1}
            failed = 3
        report = await stop(mock, rails=Rails(canary=3), **options)
        assert set(stopped(mock)) == set(canary)
        first = [r.status for r in stop_requests(mock) if r.server_id == sid(canary[0])]
        assert first == ([500, 500] if cause == "5xx" else [202])
        assert report.halted_by == f"canary: {failed} of 3 did not reach SHUTOFF"
        rest = ALL_CANARY_FLEET - set(canary)
        assert {n: results(report)[n] for n in rest} == dict.fromkeys(
            rest, (Outcome.NOT_ATTEMPTED, report.halted_by)
        )
        assert exit_code(report) == EXIT_REFUSED


class TestCircuitBreaker:
    """--max-errors: once more requests than allowed have failed, dispatch stops."""

    async def test_count(self, make_mock_cloud: MakeMock, stop: Stop) -> None:
        doc = fleet(*(server(f"s{i}") for i in range(8)), projects=RAILS_PROJECTS)
        forbidden = Trigger(servers={s["id"]: 9 for s in doc["servers"]})
        mock = await serve(
            make_mock_cloud, doc, faults=Faults(server_error=forbidden, error_status=403)
        )
        report = await stop(mock, concurrency=1, rails=Rails(max_errors=ErrorBudget(count=2)))
        # N failures are tolerated, the (N+1)-th trips the breaker: nothing is sent after it.
        assert [r.status for r in stop_requests(mock)] == [403, 403, 403]
        assert stopped(mock) == ["s0", "s1", "s2"]
        assert report.halted_by == "max-errors: 3 of 3 requests failed"
        assert in_outcome(report, Outcome.NOT_ATTEMPTED) == {f"s{i}" for i in range(3, 8)}
        assert exit_code(report) == EXIT_REFUSED

    async def test_requests_waiting_for_their_turn_are_not_sent(
        self, make_mock_cloud: MakeMock, stop: Stop
    ) -> None:
        # Eight workers take a server each at once, then wait for their --rate turn (50 ms
        # apart): once the breaker trips, those still waiting must not go out.
        doc = fleet(*(server(f"s{i}") for i in range(10)), projects=RAILS_PROJECTS)
        forbidden = Trigger(servers={s["id"]: 9 for s in doc["servers"]})
        mock = await serve(
            make_mock_cloud, doc, faults=Faults(server_error=forbidden, error_status=403)
        )
        report = await stop(
            mock, rate=20.0, concurrency=8, rails=Rails(max_errors=ErrorBudget(count=2))
        )
        # The 3rd failure trips it; at most one more was already on the wire by then.
        assert 3 <= len(stop_requests(mock)) <= 4
        assert report.halted_by is not None and report.halted_by.startswith("max-errors: ")
        assert len(in_outcome(report, Outcome.NOT_ATTEMPTED)) == 10 - len(stop_requests(mock))

    async def test_percent_waits_for_enough_finished_requests(
        self, make_mock_cloud: MakeMock, stop: Stop
    ) -> None:
        doc = fleet(*(server(f"s{i:02d}") for i in range(24)), projects=RAILS_PROJECTS)
        first_five = Trigger(servers={s["id"]: 9 for s in doc["servers"][:5]})
        mock = await serve(
            make_mock_cloud, doc, faults=Faults(server_error=first_five, error_status=503)
        )
        report = await stop(
            mock,
            concurrency=1,
            retry=RetryPolicy(max_attempts=1),
            rails=Rails(max_errors=ErrorBudget(percent=10)),
        )
        # 5 of the first 5 failed (100%), yet the percentage is judged only from 20 finished on.
        statuses = [r.status for r in stop_requests(mock)]
        assert statuses == [503] * 5 + [202] * 15
        assert report.halted_by == "max-errors: 5 of 20 requests failed"
        assert in_outcome(report, Outcome.NOT_ATTEMPTED) == {f"s{i:02d}" for i in range(20, 24)}
        assert exit_code(report) == EXIT_REFUSED


#: Stops are paced ~0.25 s apart; the deadline falls after the second one.
DEADLINE_RATE: Final = 4.0
DEADLINE_IN: Final = 0.6


class TestDeadline:
    """--deadline: no stop is sent after it; the rest are not_attempted (real time, ~1.5 s each).

    ``--rate`` paces the stops a quarter of a second apart so that the deadline falls mid-run
    while requests wait for their turn: those must not go out once it has passed.
    """

    @pytest.mark.parametrize("concurrency", [1, 32])
    async def test_no_stop_arrives_after_the_deadline(
        self, make_mock_cloud: MakeMock, stop: Stop, concurrency: int
    ) -> None:
        mock = await serve(
            make_mock_cloud, fleet(*(server(f"s{i}") for i in range(6)), projects=RAILS_PROJECTS)
        )
        report = await stop(
            mock, rate=DEADLINE_RATE, concurrency=concurrency, deadline_in=DEADLINE_IN
        )
        late = [r for r in stop_requests(mock) if r.wall > deadline_of(report) + IN_FLIGHT_SLACK]
        assert names(mock, (r.server_id for r in late)) == []
        assert report.halted_by == "deadline"
        left = in_outcome(report, Outcome.NOT_ATTEMPTED)
        assert left and {results(report)[n][1] for n in left} == {"deadline"}
        assert not set(stopped(mock)) & left
        assert accepted(mock) == in_outcome(report, Outcome.ACCEPTED)
        assert exit_code(report) == EXIT_REFUSED

    async def test_throttled_stops_are_not_retried_after_the_deadline(
        self, make_mock_cloud: MakeMock, stop: Stop
    ) -> None:
        # The cloud admits 4 requests/s in bursts of 1: the listing passes, every stop sent at
        # once gets a 429 with Retry-After: 1, which ends after the deadline.
        doc = fleet(*(server(f"s{i}") for i in range(3)), projects=RAILS_PROJECTS)
        mock = await serve(make_mock_cloud, doc, faults=Faults(rate_limit=4, burst=1))
        report = await stop(mock, concurrency=3, deadline_in=0.5)
        late = [r for r in stop_requests(mock) if r.wall > deadline_of(report) + IN_FLIGHT_SLACK]
        assert names(mock, (r.server_id for r in late)) == []
        assert report.halted_by == "deadline"
        assert in_outcome(report, Outcome.NOT_ATTEMPTED) == {"s0", "s1", "s2"}


#: Waves 1, 2 and 10 and untagged servers in two projects, listed out of order.
WAVE_FLEET: Final = fleet(
    waved("u0", "p0", None),
    waved("w2-a", "p0", 2),
    waved("w1-a", "p0", 1),
    waved("w10", "p1", 10),
    waved("w2-b", "p1", 2),
    waved("u1", "p1", None),
    waved("w1-b", "p1", 1),
    projects=RAILS_PROJECTS,
)
WAVES: Final = (("w1-a", "w1-b"), ("w2-a", "w2-b"), ("w10",), ("u0", "u1"))


class TestWaves:
    """bulkstop:wave=<n>: every stop of a wave before any of the next, untagged last; with
    --wait, a wave starts only once the previous one is SHUTOFF."""

    @pytest.mark.parametrize("wait", [False, True], ids=["no-wait", "wait"])
    async def test_waves_in_order(self, make_mock_cloud: MakeMock, stop: Stop, wait: bool) -> None:
        mock = await serve(make_mock_cloud, WAVE_FLEET)
        report = await stop(mock, wait=wait)
        assert accepted(mock) == {n for wave in WAVES for n in wave}
        gap = DELAY if wait else 0.0
        for earlier, later in itertools.pairwise(WAVES):
            assert min(arrivals(mock, *later)) > max(arrivals(mock, *earlier)) + gap, later
        assert report.halted_by is None


class TestComposition:
    """Rails together."""

    async def test_deadline_during_waves(self, make_mock_cloud: MakeMock, stop: Stop) -> None:
        doc = fleet(
            waved("w1-a", "p0", 1),
            waved("w1-b", "p1", 1),
            waved("w2-a", "p0", 2),
            waved("w2-b", "p1", 2),
            waved("u", "p2", None),
            projects=RAILS_PROJECTS,
        )
        # Wave 1 is sent at once and is SHUTOFF 0.6 s later: the deadline falls in between.
        mock = await serve(make_mock_cloud, doc, transition_delay=0.6)
        report = await stop(mock, wait=True, deadline_in=0.3)
        assert set(stopped(mock)) == {"w1-a", "w1-b"}
        assert all(r.wall <= deadline_of(report) for r in stop_requests(mock))
        assert report.halted_by == "deadline"
        assert in_outcome(report, Outcome.STOPPED) == {"w1-a", "w1-b"}
        assert {n: r for n, (o, r) in results(report).items() if o is Outcome.NOT_ATTEMPTED} == {
            "w2-a": "deadline",
            "w2-b": "deadline",
            "u": "deadline",
        }

    async def test_canary_with_protection_and_waves(
        self, make_mock_cloud: MakeMock, stop: Stop
    ) -> None:
        # A protected server in the first wave is never the canary: it is not sent at all.
        doc = fleet(
            server("shield", "p0", tags=(TAG, f"{WAVE}1", PROTECT_TAG)),
            *CANARY_FLEET["servers"],
            projects=RAILS_PROJECTS,
        )
        mock = await serve(make_mock_cloud, doc)
        report = await stop(mock, rails=Rails(canary=2))
        assert set(stopped(mock)[:2]) == set(expected_canary(CANARY_FLEET, 2))
        assert "shield" not in stopped(mock)
        assert results(report)["shield"] == (Outcome.EXCLUDED, f"tag {PROTECT_TAG}")


class TestReportRecordsTheRails:
    """The report says how every rail was set and which one stopped the run."""

    async def test_every_rail_is_recorded(
        self, make_mock_cloud: MakeMock, stop: Stop, report_path: Path
    ) -> None:
        mock = await serve(
            make_mock_cloud, fleet(server("a"), server("b", "p1"), projects=RAILS_PROJECTS)
        )
        deadline = utc_now() + timedelta(minutes=5)
        rails = Rails(
            max_servers=10,
            max_percent=100,
            canary=1,
            max_errors=ErrorBudget(percent=5),
            deadline=deadline,
        )
        await stop(mock, rails=rails)
        written = read_report(str(report_path))
        assert written.options["rails"] == {
            "max_servers": 10,
            "max_percent": 100,
            "canary": 1,
            "max_errors": "5%",
            "deadline": format_time(deadline),
        }
        assert written.halted_by is None
        assert accepted(mock) == {"a", "b"}

    async def test_halting_rail_is_recorded(
        self, make_mock_cloud: MakeMock, stop: Stop, report_path: Path
    ) -> None:
        doc = fleet(server("a"), server("b"), server("c"), projects=RAILS_PROJECTS)
        mock = await serve(
            make_mock_cloud,
            doc,
            faults=Faults(server_error=Trigger(servers={sid("a"): 9}), error_status=403),
        )
        await stop(mock, concurrency=1, rails=Rails(max_errors=ErrorBudget(count=0)))
        written = read_report(str(report_path))
        assert written.halted_by == "max-errors: 1 of 1 requests failed"
        assert written.options["rails"]["max_errors"] == "0"
        assert stopped(mock) == ["a"]
        assert exit_code(written) == EXIT_REFUSED
