"""Project budgets: throttle holds, slow-down and recovery, on a fake clock."""

from __future__ import annotations

import itertools

import pytest
from fakes import FakeClock

from bulkstop.execute.budget import MIN_RATE, PACE_TOLERANCE, RATE_HEADROOM, ProjectBudget

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def budget(rate: float, clock: FakeClock) -> ProjectBudget:
    return ProjectBudget(rate=rate, clock=clock, sleep=clock.sleep)


class TestHold:
    """Retry-After closes the project's gate for everyone."""

    async def test_wait_open_waits_out_the_hold(self) -> None:
        clock = FakeClock()
        b = budget(0, clock)
        b.throttled(retry_after=12.0)
        start = clock.now
        await b.wait_open()
        assert clock.now - start == pytest.approx(12.0)

    async def test_open_gate_costs_no_sleep(self) -> None:
        clock = FakeClock()
        await budget(0, clock).wait_open()
        assert clock.slept == []


class TestSlowDown:
    """Throttles halve the effective rate; quiet seconds bring it back."""

    def test_limited_rate_halves_then_recovers_to_the_ceiling(self) -> None:
        clock = FakeClock()
        b = budget(10, clock)
        assert b.effective_rate == pytest.approx(10 * RATE_HEADROOM)
        b.throttled(None)
        assert b.effective_rate == pytest.approx(5 * RATE_HEADROOM)
        b.throttled(None)  # same second: one signal, not two
        assert b.effective_rate == pytest.approx(5 * RATE_HEADROOM)
        for _ in range(20):
            clock.now += 1.0
            b.succeeded()
        assert b.effective_rate == pytest.approx(10 * RATE_HEADROOM)

    def test_unlimited_starts_from_what_was_sent_and_returns_to_unlimited(self) -> None:
        clock = FakeClock()
        b = budget(0, clock)
        assert not b.paced
        for _ in range(40):
            clock.now += 0.01
            b.note_send()
        b.throttled(None)
        assert b.paced
        assert b.effective_rate == pytest.approx(20)
        for _ in range(40):
            clock.now += 1.0
            b.succeeded()
        assert not b.paced

    def test_never_below_the_minimum(self) -> None:
        clock = FakeClock()
        b = budget(1, clock)
        for _ in range(30):
            clock.now += 1.0
            b.throttled(None)
        assert b.effective_rate == MIN_RATE

    async def test_slowed_pacing_spaces_calls(self) -> None:
        clock = FakeClock()
        b = budget(0, clock)
        b.note_send()
        b.throttled(None)  # one call in the last second: slowed to half of that
        assert b.effective_rate == pytest.approx(0.5)
        sends = []
        for _ in range(3):
            await b.pace()
            sends.append(clock.now)
        gaps = [later - earlier for earlier, later in itertools.pairwise(sends)]
        assert gaps == [pytest.approx(2.0, abs=PACE_TOLERANCE)] * 2

    def test_negative_rate_is_refused(self) -> None:
        with pytest.raises(ValueError):
            ProjectBudget(rate=-1)


class TestPacing:
    """--rate R: calls on slots 1/(R x headroom) apart; late wake-ups are made up, not lost."""

    @pytest.mark.parametrize("rate", [1.0, 50.0, 500.0])
    async def test_late_wake_ups_cost_no_rate_and_no_window_exceeds_it(self, rate: float) -> None:
        clock = FakeClock()

        async def late_sleep(seconds: float) -> None:
            await clock.sleep(seconds + 0.002)  # every wake-up 2 ms late, as on a busy loop

        b = ProjectBudget(rate=rate, clock=clock, sleep=late_sleep)
        sends = []
        for _ in range(int(rate * 5)):
            await b.pace()
            sends.append(clock.now)
        achieved = (len(sends) - 1) / (sends[-1] - sends[0])
        assert achieved == pytest.approx(rate * RATE_HEADROOM, rel=0.01)
        busiest = max(sum(start <= t < start + 1.0 for t in sends) for start in sends)
        assert busiest <= rate

    async def test_an_idle_spell_gives_no_burst(self) -> None:
        clock = FakeClock()
        b = budget(10, clock)
        await b.pace()
        clock.now += 60.0
        first = clock.now
        await b.pace()
        await b.pace()
        assert clock.now - first == pytest.approx(1 / (10 * RATE_HEADROOM) - PACE_TOLERANCE)
