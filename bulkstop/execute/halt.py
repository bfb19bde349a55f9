"""Halting: whether dispatch may go on, and why it stopped.

One :class:`Halting` per run holds every reason dispatch can stop, checked in one place:

* the ``deadline`` rail (on the monotonic clock: wall clocks can jump during a long run);
* the ``max_errors`` breaker, fed every answered result (:meth:`Halting.count`);
* the canary's judgement (:meth:`Halting.judge_canary`);
* an interruption or a failed journal write (anyone calls :meth:`Halting.halt`);
* a run-wide failure met while dispatching (:meth:`Halting.fail`: Keystone refused a renewal),
  raised by the engine once the requests in flight are done.

The first reason wins and is the report's ``halted_by``. A halt also cancels every request
still waiting for its slot or rate turn (:meth:`Halting.waiting`); requests already on the wire
finish. The deadline stops sends (and retries of sends: the gate's ``until``), not ``wait``'s
status polls, which go on until each server's ``wait_timeout``; any other halt ends them too
(:attr:`Halting.ends_waiting`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Final

import anyio

from bulkstop.errors import CloudAccessError
from bulkstop.execute.budget import Clock
from bulkstop.models import ServerResult
from bulkstop.plan.eligibility import ActionSpec, PlanEntry
from bulkstop.plan.rails import ErrorBudget

#: The halt reason when the ``deadline`` rail passes.
DEADLINE: Final = "deadline"


class Halting:
    """Says whether dispatch may continue, and why it stopped. Create inside the event loop."""

    def __init__(
        self,
        *,
        deadline_at: float | None,
        max_errors: ErrorBudget | None,
        clock: Clock,
        on_halt: Callable[[str], None] | None = None,
    ) -> None:
        #: The deadline on ``clock``, or None.
        self.deadline_at = deadline_at
        self.max_errors = max_errors
        self._clock = clock
        #: Told the first reason, once (``Observer.halted``).
        self._on_halt = on_halt
        self._reason: str | None = None
        #: A run-wide failure met while dispatching; the engine raises it at the end.
        self.fatal: CloudAccessError | None = None
        self._waiting: set[anyio.CancelScope] = set()
        self._answered = self._failures = 0

    @property
    def reason(self) -> str | None:
        """Why dispatch was stopped, or None."""
        return self._reason

    def halt(self, reason: str) -> None:
        """Dispatch nothing new; requests in flight finish. The first reason is kept."""
        if self._reason is None:
            self._reason = reason
            if self._on_halt is not None:
                self._on_halt(reason)
        for scope in self._waiting:
            scope.cancel()
        self._waiting.clear()

    def fail(self, exc: CloudAccessError) -> None:
        """A run-wide failure while dispatching: halt, and keep the first such error."""
        self.fatal = self.fatal or exc
        self.halt(f"{type(exc).__name__}: {exc}")

    def may_dispatch(self) -> bool:
        """False once the run is halted (the deadline passing halts it)."""
        if self.deadline_at is not None and self._clock() >= self.deadline_at:
            self.halt(DEADLINE)
        return self._reason is None

    @property
    def ends_waiting(self) -> bool:
        """Halted for a reason that ends ``wait``'s polls too: anything but the deadline."""
        return self._reason is not None and self._reason != DEADLINE

    @contextlib.contextmanager
    def waiting(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope for a request waiting for its turn: a halt cancels it, until
        :meth:`on_the_wire` says the request has gone out (then only the runner's grace can)."""
        scope = anyio.CancelScope()
        self.arm(scope)
        try:
            with scope:
                yield scope
        finally:
            self._waiting.discard(scope)

    def arm(self, scope: anyio.CancelScope) -> None:
        """A :meth:`waiting` scope's task waits for its next request's turn: a halt cancels it
        again (a worker keeps one scope for all its requests: a scope per request cost as much
        as the rest of the gate)."""
        self._waiting.add(scope)
        if self._reason is not None:
            scope.cancel()

    def on_the_wire(self, scope: anyio.CancelScope) -> None:
        """The request of a :meth:`waiting` scope is being sent: a halt no longer cancels it."""
        self._waiting.discard(scope)

    def count(self, result: ServerResult) -> None:
        """Feed the breaker a final result; results that needed no request do not count."""
        if not result.attempts:
            return
        self._answered += 1
        self._failures += result.outcome.is_failure
        budget = self.max_errors
        if budget is not None and budget.crossed(failures=self._failures, finished=self._answered):
            self.halt(f"max-errors: {self._failures} of {self._answered} requests failed")

    def judge_canary(
        self, entries: Collection[PlanEntry], results: Mapping[str, ServerResult], spec: ActionSpec
    ) -> None:
        """Halt unless every canary server reached the action's final status (or was there)."""
        good = (spec.finished, spec.already)
        # A halt (deadline, Ctrl-C, max-errors) can leave canary servers without a result.
        bad = [
            e for e in entries if (r := results.get(e.server.id)) is None or r.outcome not in good
        ]
        if bad:
            self.halt(f"canary: {len(bad)} of {len(entries)} did not reach {spec.final_status}")
