"""Rails as pure logic: waves and canaries, error budgets, caps, durations, exemptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import make_server
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.errors import RefusedError
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import (
    MIN_FINISHED_FOR_PERCENT,
    WAVE_PREFIX,
    ErrorBudget,
    Rails,
    batches,
    check_caps,
    wave_of,
)
from bulkstop.select.selector import EXEMPT_PREFIX, Selector
from bulkstop.timespec import parse_deadline, parse_duration, parse_moment

NOW = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def entry(n: int, *, scope: str = "p1", wave: int | None = None) -> PlanEntry:
    tags = [f"{WAVE_PREFIX}{wave}"] if wave is not None else []
    return PlanEntry(server=make_server(n, project_id=scope, tags=tags), scope=scope)


entries = st.lists(
    st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.none() | st.integers(0, 4)),
    max_size=40,
).map(lambda specs: [entry(n, scope=s, wave=w) for n, (s, w) in enumerate(specs)])


class TestBatches:
    """Waves ascend, untagged servers go last, the canary comes first and from the first wave."""

    @given(entries, st.integers(min_value=0, max_value=10))
    def test_every_entry_once_in_wave_order(self, plan: list[PlanEntry], canary: int) -> None:
        out = batches(plan, canary=canary)
        flat = [e for b in out for e in b.entries]
        assert sorted(id(e) for e in flat) == sorted(id(e) for e in plan)
        order = [b.wave for b in out]
        numbered = [w for w in order if w is not None]
        assert numbered == sorted(numbered)
        assert None not in order or order.index(None) >= len(numbered)
        for batch in out:
            assert {wave_of(e.server) for e in batch.entries} <= {batch.wave}

    @given(entries, st.integers(min_value=1, max_value=10))
    def test_canary_is_first_spread_and_within_the_first_wave(
        self, plan: list[PlanEntry], canary: int
    ) -> None:
        out = batches(plan, canary=canary)
        if not plan:
            assert out == []
            return
        first = out[0]
        assert first.canary and all(not b.canary for b in out[1:])
        first_wave = [e for e in plan if wave_of(e.server) == first.wave]
        assert len(first.entries) == min(canary, len(first_wave))
        scopes = {e.scope for e in first_wave}
        assert len({e.scope for e in first.entries}) == min(len(scopes), len(first.entries))

    def test_malformed_wave_tags_are_refused(self) -> None:
        bad = make_server(1, tags=[f"{WAVE_PREFIX}two"])
        with pytest.raises(ValueError, match="malformed wave tag"):
            wave_of(bad)
        double = make_server(2, tags=[f"{WAVE_PREFIX}1", f"{WAVE_PREFIX}2"])
        with pytest.raises(ValueError, match="more than one wave tag"):
            wave_of(double)


class TestErrorBudget:
    """``--max-errors N`` or ``P%``."""

    @pytest.mark.parametrize(
        ("text", "budget"),
        [
            ("5", ErrorBudget(count=5)),
            ("0", ErrorBudget(count=0)),
            ("2.5%", ErrorBudget(percent=2.5)),
        ],
    )
    def test_parse(self, text: str, budget: ErrorBudget) -> None:
        assert ErrorBudget.parse(text) == budget

    @pytest.mark.parametrize("text", ["", "x", "-1", "1.5", "100%", "5%%"])
    def test_parse_refuses(self, text: str) -> None:
        with pytest.raises(ValueError):
            ErrorBudget.parse(text)

    @given(st.integers(0, 100), st.integers(0, 1000), st.integers(0, 1000))
    def test_count_is_crossed_only_above_it(self, n: int, failures: int, finished: int) -> None:
        assert ErrorBudget(count=n).crossed(failures=failures, finished=finished) is (failures > n)

    @given(st.floats(0, 99), st.integers(0, 1000), st.integers(0, 1000))
    def test_percent_needs_enough_finished_requests(
        self, p: float, failures: int, finished: int
    ) -> None:
        crossed = ErrorBudget(percent=p).crossed(failures=failures, finished=finished)
        if finished < MIN_FINISHED_FOR_PERCENT:
            assert not crossed
        else:
            assert crossed is (failures * 100 > p * finished)


class TestCaps:
    """Refusals before anything is sent."""

    def test_max_servers(self) -> None:
        sends = [entry(n) for n in range(5)]
        check_caps(sends, Rails(max_servers=5), past="stopped", totals=None)
        with pytest.raises(RefusedError, match="5 servers would be stopped, more than"):
            check_caps(sends, Rails(max_servers=4), past="stopped", totals=None)

    def test_max_percent_per_project(self) -> None:
        sends = [entry(n, scope="p1") for n in range(3)] + [entry(9, scope="p2")]
        totals = {"p1": 10, "p2": 2}
        check_caps(sends, Rails(max_percent=50), past="stopped", totals=totals)
        with pytest.raises(RefusedError, match=r"project p1: 3 of its 10 servers \(30.0%\)"):
            check_caps(sends, Rails(max_percent=25), past="stopped", totals=totals)


class TestTimes:
    """Durations, ISO moments and deadlines as users write them."""

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("90s", 90), ("25m", 1500), ("1h30m", 5400), ("2d", 172800), ("45", 45), ("1.5s", 1.5)],
    )
    def test_durations(self, text: str, seconds: float) -> None:
        assert parse_duration(text) == timedelta(seconds=seconds)

    @pytest.mark.parametrize("text", ["", "0s", "h", "1x", "-5m", "1m30"])
    def test_bad_durations(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_duration(text)

    @given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
    def test_duration_round_trip(self, d: int, h: int, m: int, s: int) -> None:
        text = "".join(f"{v}{u}" for v, u in zip((d, h, m, s), "dhms", strict=True) if v)
        if not text:
            return
        assert parse_duration(text) == timedelta(days=d, hours=h, minutes=m, seconds=s)

    def test_moments_default_to_utc(self) -> None:
        assert parse_moment("2026-11-28T06:00") == datetime(2026, 11, 28, 6, tzinfo=UTC)
        assert parse_moment("2026-11-28T07:00+01:00") == datetime(2026, 11, 28, 6, tzinfo=UTC)
        assert parse_moment("2026-11-28") == datetime(2026, 11, 28, tzinfo=UTC)
        assert parse_moment("2026-11-28", end_of_day=True) == datetime(2026, 11, 29, tzinfo=UTC)

    def test_deadlines(self) -> None:
        assert parse_deadline("25m", now=NOW) == NOW + timedelta(minutes=25)
        assert parse_deadline("2026-11-28T06:00Z", now=NOW) == datetime(2026, 11, 28, 6, tzinfo=UTC)
        with pytest.raises(ValueError, match="already passed"):
            parse_deadline("2026-11-27T21:00Z", now=NOW)
        with pytest.raises(ValueError, match="not a duration or an ISO 8601 time"):
            parse_deadline("tonight", now=NOW)


class TestExemption:
    """``bulkstop:exempt-until=`` keeps a server out until then; unreadable keeps it out."""

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("2026-11-28", "exempt until 2026-11-29T00:00:00.000Z"),
            ("2026-11-27", "exempt until 2026-11-28T00:00:00.000Z"),
            ("2026-11-27T21:59Z", None),
            ("2026-11-26", None),
            ("soon", f"unreadable exemption tag '{EXEMPT_PREFIX}soon'"),
        ],
    )
    def test_exempt_until(self, value: str, reason: str | None) -> None:
        server = make_server(1, tags=["nightly-stop", f"{EXEMPT_PREFIX}{value}"])
        assert Selector(select_all=True).exclusion(server, now=NOW) == reason

    def test_protect_tags_add_to_the_default(self) -> None:
        selector = Selector(select_all=True, protect_tags=("db",))
        assert selector.exclusion(make_server(1, tags=["db"]), now=NOW) == "tag db"
        assert selector.exclusion(make_server(2, tags=["bulkstop:protect"]), now=NOW) is not None
        assert selector.exclusion(make_server(3, tags=["web"]), now=NOW) is None
