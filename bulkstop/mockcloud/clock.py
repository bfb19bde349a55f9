"""A manual clock for ``MockConfig(clock=...)``: time moves only when a test says so."""

from __future__ import annotations

from typing import Final

#: Any start works; a non-zero one catches code that treats 0.0 as "unset".
FAKE_CLOCK_START: Final = 1000.0


class FakeClock:
    """A monotonic clock to call like ``time.monotonic``; :meth:`advance` moves it."""

    def __init__(self, start: float = FAKE_CLOCK_START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward (never backward: the clock is monotonic)."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds
