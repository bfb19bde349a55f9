"""Per-project request budgets: ``--rate`` pacing, throttle holds and adaptive slow-down.

Semantics of ``--rate N`` (a whole number N > 0; the CLI takes no fractions, since no window can
hold "1.5 calls"): every compute API call of a project counts, and no sliding
one-second window ever holds more than N of them. Calls are paced *evenly*, on slots ``1/N'``
seconds apart, ``N' = N x RATE_HEADROOM``, and never burst. A call may go up to
``PACE_TOLERANCE`` before its slot: an event loop wakes a sleeper a little late every time, and
without the tolerance each late wake-up would be lost for good (at 50/s, ~1 ms each cost 6 %
of the rate). Slots never move earlier than one interval after the last call's slot, so any
one-second window holds at most ``N' x (1 + PACE_TOLERANCE)`` slots: below N, with room left for
the jitter between our send time and the cloud's arrival time.

Only one task per project waits for its slot at a time (``turn``): the engine holds a global
concurrency slot while it waits, so a slow project can hold at most one slot idle and never starve
the others.

When the cloud throttles (429, 413, APIG.0308):

* ``hold(seconds)`` closes the project's gate until the ``Retry-After`` has passed: no call of that
  project is sent before, whichever task it belongs to;
* the project's effective rate is halved (from the configured rate, or from what was actually sent
  in the last second when ``--rate 0``), and recovers by 10 % per second without throttles until it
  is back at the configured rate (or unlimited).
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

#: Fraction of ``--rate`` we actually pace at, leaving room for network jitter (see module doc).
RATE_HEADROOM: Final = 0.98
#: Seconds a paced call may go before its slot (see module doc); keep
#: ``RATE_HEADROOM x (1 + PACE_TOLERANCE)`` well below 1.
PACE_TOLERANCE: Final = 0.01
#: On a throttle, the effective rate is multiplied by this.
THROTTLE_SLOWDOWN: Final = 0.5
#: Each second without a throttle, the effective rate grows by this factor.
RECOVERY_STEP: Final = 1.1
#: The effective rate never drops below this many calls per second.
MIN_RATE: Final = 0.2
#: With ``--rate 0``, once recovery passes this multiple of the slowed rate we are unlimited again.
UNLIMITED_RECOVERY_FACTOR: Final = 8.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class ProjectBudget:
    """The request budget of one project. Create inside the running event loop."""

    def __init__(
        self,
        *,
        rate: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if rate < 0 or math.isnan(rate):
            raise ValueError("rate must be >= 0 (0 means unlimited)")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._effective: float | None = rate * RATE_HEADROOM if rate else None
        self._unlimited_ceiling: float | None = None
        self._hold_until = 0.0
        self._next_slot = -math.inf
        self._last_change = 0.0
        self._recent: collections.deque[float] = collections.deque()
        self.turn = anyio.Lock()

    @property
    def paced(self) -> bool:
        """True when calls of this project must wait their turn (a rate is in force)."""
        return self._effective is not None

    @property
    def effective_rate(self) -> float | None:
        """Calls per second we currently allow; ``None`` = unlimited."""
        return self._effective

    async def wait_open(self, until: float | None = None) -> None:
        """Wait while a ``Retry-After`` hold is in force, but not past ``until`` (a deadline)."""
        while (delay := self._hold_until - self._clock()) > 0:
            if until is not None:
                if self._clock() >= until:
                    return
                delay = min(delay, until - self._clock())
            await self._sleep(delay)

    async def pace(self, until: float | None = None) -> None:
        """Wait until the next call of this project may be sent. Call with ``turn`` held.

        With ``until``, stop waiting once it has passed (the caller then sends nothing).
        """
        while True:
            await self.wait_open(until)
            if until is not None and self._clock() >= until:
                return
            if self._effective is None:
                break
            delay = self._next_slot - PACE_TOLERANCE - self._clock()
            if delay <= 0:
                # After an idle spell the schedule restarts from now: no burst to catch up.
                self._next_slot = max(self._next_slot, self._clock()) + 1 / self._effective
                break
            # A throttle may arrive (and hold the gate, or slow the rate) while we sleep.
            await self._sleep(delay)
        self.note_send()

    @property
    def is_open(self) -> bool:
        """No ``Retry-After`` hold is in force."""
        return self._hold_until <= self._clock()

    def note_send(self) -> None:
        """Record that a call is being sent now (used to estimate the rate when unlimited)."""
        if self.rate == 0:
            now = self._clock()
            recent = self._recent
            recent.append(now)
            while recent and recent[0] < now - 1.0:
                recent.popleft()

    def throttled(self, retry_after: float | None) -> None:
        """The cloud throttled a call: hold the gate and slow down."""
        now = self._clock()
        # The verdict's delay, clamped there like the request's own wait: a
        # "Retry-After: 999999" must not shut the project's gate for days.
        if retry_after is not None and retry_after > 0:
            self._hold_until = max(self._hold_until, now + retry_after)
        # Halve at most once per second: a burst of 429s for calls already in flight is one signal.
        if now - self._last_change < 1.0 and self._effective is not None:
            return
        current = self._effective if self._effective is not None else float(len(self._recent))
        self._effective = max(MIN_RATE, current * THROTTLE_SLOWDOWN)
        if self.rate == 0:
            self._unlimited_ceiling = self._effective * UNLIMITED_RECOVERY_FACTOR
        self._last_change = now

    def succeeded(self) -> None:
        """A call went through: recover the rate gradually after a throttle."""
        if self._effective is None:
            return
        now = self._clock()
        if now - self._last_change < 1.0:
            return
        ceiling = self.rate * RATE_HEADROOM if self.rate else self._unlimited_ceiling
        if ceiling is None or self._effective >= ceiling:
            return
        self._effective = self._effective * RECOVERY_STEP
        self._last_change = now
        if self._effective >= ceiling:
            # Recovered: back to the configured limiter alone (or to no limit at all).
            self._effective = ceiling if self.rate else None
