"""Backoff schedules are pure: property tests over attempts, caps and random sources."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bulkstop.cloud.verdict import judge
from bulkstop.execute.backoff import Backoff, throttle_delay
from bulkstop.limits import MAX_RETRY_AFTER
from bulkstop.models import Reply

bases = st.floats(min_value=0.001, max_value=10)
caps = st.floats(min_value=0.01, max_value=600)
attempts = st.integers(min_value=1, max_value=10_000)
seeds = st.integers(min_value=0, max_value=2**32)


class TestBackoff:
    """Equal-jitter exponential backoff."""

    @given(bases, caps, attempts, seeds)
    def test_delay_within_half_and_full_ceiling(
        self, base: float, cap: float, attempt: int, seed: int
    ) -> None:
        backoff = Backoff(base=base, cap=cap)
        top = backoff.ceiling(attempt)
        assert top <= cap
        assert top / 2 <= backoff.delay(attempt, random.Random(seed)) <= top

    @given(bases, caps, attempts)
    def test_ceiling_grows_until_the_cap(self, base: float, cap: float, attempt: int) -> None:
        backoff = Backoff(base=base, cap=cap)
        assert backoff.ceiling(attempt + 1) >= backoff.ceiling(attempt)
        assert backoff.ceiling(attempt) == min(cap, base * 2.0 ** min(attempt - 1, 64))

    def test_first_steps_double(self) -> None:
        backoff = Backoff(base=0.5, cap=30)
        assert [backoff.ceiling(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]

    def test_attempt_zero_is_a_bug(self) -> None:
        try:
            Backoff().ceiling(0)
        except ValueError:
            return
        raise AssertionError("attempt 0 must be refused")


class TestThrottleDelay:
    """Retry-After wins, clamped, with a little jitter; otherwise backoff."""

    @given(st.floats(min_value=0, max_value=10_000), attempts, seeds)
    def test_retry_after_is_honoured_and_clamped(
        self, retry_after: float, attempt: int, seed: int
    ) -> None:
        # The gate waits the verdict's delay: the cloud's Retry-After, clamped there.
        delay = judge(Reply(status=429, retry_after=retry_after)).delay
        wait = throttle_delay(delay, attempt, Backoff(), random.Random(seed))
        floor = min(retry_after, MAX_RETRY_AFTER)
        assert floor <= wait <= floor + 1.0

    @given(attempts, seeds)
    def test_without_retry_after_it_backs_off(self, attempt: int, seed: int) -> None:
        backoff = Backoff()
        wait = throttle_delay(None, attempt, backoff, random.Random(seed))
        assert backoff.ceiling(attempt) / 2 <= wait <= backoff.ceiling(attempt)
