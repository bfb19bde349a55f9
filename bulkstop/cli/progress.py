"""Progress on stderr: a live line on a terminal, a periodic status line otherwise.

:class:`Progress` is an :class:`~bulkstop.execute.engine.Observer`; the engine calls it for every
finished server, so it only counts there. It draws every :data:`TTY_INTERVAL` seconds (or
:data:`LOG_INTERVAL` when stderr is not a terminal) from :meth:`Progress.ticker`, so a run
that is waiting — throttled, slow, polling — still says where it is. :func:`shown` runs the
ticker around a run and closes the display after it: every command that shows progress uses it
(with this display, or :class:`~bulkstop.cli.log.JsonProgress` in JSON log mode).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Final, Protocol, TextIO

import anyio

from bulkstop.execute.engine import Observer, Plan, first_run_error
from bulkstop.models import ServerResult

#: Seconds between two redraws of the live line on a terminal.
TTY_INTERVAL: Final = 0.2
#: Seconds between two status lines when stderr is not a terminal (cron, CI, log files).
LOG_INTERVAL: Final = 10.0


class Progress(Observer):
    """Counts outcomes and shows done/total, rate, outcome counts and ETA."""

    def __init__(
        self,
        *,
        stream: TextIO,
        interactive: bool,
        verb: str = "stop",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interactive = interactive
        self._verb = verb
        self._clock = clock
        self._interval = TTY_INTERVAL if interactive else LOG_INTERVAL
        self._counts: collections.Counter[str] = collections.Counter()
        self._total = 0
        self._to_send = 0
        self._done = 0
        self._answered = 0
        self._planned = False
        self._started = clock()
        self._next_draw = self._started + self._interval
        self._drawn = False

    def planned(self, plan: Plan) -> None:
        self._total = len(plan.entries) + len(plan.missing)
        self._to_send = len(plan.to_send)
        self._started = self._clock()
        self._next_draw = self._started + self._interval
        self._planned = True
        self._stream.write(f"{self._verb}: {self._total} selected, {self._to_send} to send\n")
        self._stream.flush()

    def finished(self, result: ServerResult) -> None:
        self._done += 1
        self._answered += result.attempts > 0
        self._counts[result.outcome.value] += 1
        self.tick()

    def tick(self) -> None:
        """Draw if the interval has passed (called per result and by :meth:`ticker`)."""
        now = self._clock()
        if self._planned and now >= self._next_draw:
            self._next_draw = now + self._interval
            self._draw(now)

    async def ticker(self) -> None:
        """Draw periodically until cancelled, even while no server finishes."""
        while True:
            await anyio.sleep(self._interval)
            self.tick()

    def close(self) -> None:
        """Draw the final state and end the live line."""
        if self._drawn or self._done:
            self._draw(self._clock())
        if self._interactive and self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def line(self, now: float) -> str:
        """The status text at time ``now``."""
        elapsed = max(now - self._started, 1e-9)
        # Servers that needed no request finish at once: only requests say how fast it goes.
        rate = self._answered / elapsed
        parts = [f"{self._verb}: {self._done}/{self._total}", f"{rate:.0f} answered/s"]
        parts.extend(f"{k} {v}" for k, v in sorted(self._counts.items()))
        left = self._to_send - self._answered
        if left > 0 and rate > 0:
            parts.append(f"ETA {_duration(left / rate)}")
        return " · ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        if self._interactive:
            self._stream.write(f"\r\x1b[K{text}")
        else:
            self._stream.write(f"{text}\n")
        self._stream.flush()
        self._drawn = True


class Display(Protocol):
    """What :func:`shown` drives: a periodic ticker, and a last word."""

    async def ticker(self) -> None: ...

    def close(self) -> None: ...


@contextlib.asynccontextmanager
async def shown(progress: Display | None) -> AsyncIterator[None]:
    """Draw ``progress`` periodically while the block runs, and its final state after it
    (nothing with ``None``: ``--quiet``). A run-wide error leaves the block as itself."""
    if progress is None:
        yield
        return
    try:
        with first_run_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(progress.ticker)
                yield
                tg.cancel_scope.cancel()
    finally:
        progress.close()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
