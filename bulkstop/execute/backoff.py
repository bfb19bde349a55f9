"""Retry schedules: how long to wait before the next attempt.

Pure functions over an injected random source, so the schedule can be property-tested without
sleeping. Two kinds of waits exist and they are budgeted separately:

* transient failures (5xx, resets, timeouts) count against ``--max-attempts``;
* throttling (429, 413 overLimit, APIG.0308) never counts as a failed attempt: we wait as the
  cloud asks (``Retry-After``) or back off exponentially, until a total throttle wait per server
  (:data:`DEFAULT_MAX_THROTTLE_WAIT`) is spent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from bulkstop.limits import DEFAULT_BACKOFF_CAP, DEFAULT_MAX_THROTTLE_WAIT

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "DEFAULT_MAX_THROTTLE_WAIT",
    "Backoff",
    "throttle_delay",
]

#: First backoff step, in seconds.
DEFAULT_BACKOFF_BASE: Final = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff with "equal jitter".

    The n-th wait (n ≥ 1) is drawn uniformly from ``[d/2, d]`` with ``d = min(cap, base·2^(n-1))``:
    waits grow exponentially yet never collapse to zero, so a retry storm spreads out instead of
    re-synchronising.
    """

    base: float = DEFAULT_BACKOFF_BASE
    cap: float = DEFAULT_BACKOFF_CAP

    def ceiling(self, attempt: int) -> float:
        """The largest wait after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        # Cap the exponent first: 2**1000 is fine in Python, but floats overflow past ~2**1023.
        return min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait after failed attempt number ``attempt``, jittered with ``rng``."""
        top = self.ceiling(attempt)
        return top / 2 + rng.random() * top / 2


def throttle_delay(
    delay: float | None, attempt: int, backoff: Backoff, rng: random.Random
) -> float:
    """How long to wait after a throttle answer.

    ``delay`` is the verdict's (:attr:`bulkstop.cloud.verdict.Verdict.delay`: the cloud's
    ``Retry-After``, already clamped there, the one place). It wins, plus a little jitter so
    that all the requests the gateway bounced do not come back in the same millisecond.
    Without it, exponential backoff over the number of throttles this server has seen.
    """
    if delay is not None:
        return delay + rng.random() * min(1.0, 0.1 * delay + 0.05)
    return backoff.delay(attempt, rng)
