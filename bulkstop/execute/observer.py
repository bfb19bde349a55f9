"""What the execution stage tells the outside world: the :class:`Observer` hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bulkstop.models import ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import Batch

if TYPE_CHECKING:
    from bulkstop.execute.resolve import Plan


class Observer:
    """Hooks the engine calls as a run progresses. The default does nothing.

    Subclass for a progress display or a journal. Hooks must be quick and must not raise.
    """

    def planned(self, plan: Plan) -> None:
        """The plan is known; execution is about to start."""

    def sending(self, entry: PlanEntry) -> None:
        """A request for this server is about to be sent for the first time: it has its slot
        and its rate turn, and the run is not halted. Nothing is sent before this returns, and
        nothing at all if the hook halts the run (a journal that cannot record the intent)."""

    def finished(self, result: ServerResult) -> None:
        """A server has its final result."""

    def answered(self, scope: str, *, throttled: bool, hold: float | None) -> None:
        """One compute request of ``scope`` got an answer (or none: a reset, a timeout);
        ``hold``: the seconds a throttle answer made the project wait (its ``Retry-After``,
        clamped).

        Called for every attempt (reads, listings, retries included): keep it to a counter."""

    def batch_started(self, batch: Batch) -> None:
        """The canary, a wave, or the final batch is about to be dispatched."""

    def halted(self, reason: str) -> None:
        """Dispatch was just halted (a rail, a deadline, an interruption): called once."""

    def job_started(self, scope: str, service: str, job_id: str, ids: Sequence[str]) -> None:
        """A batch call (Huawei's batch API) was answered with ``job_id`` for servers ``ids``:
        a resumed run polls that job instead of sending them again."""


class Observers(Observer):
    """Several observers as one, called in order (e.g. journal first, then progress)."""

    def __init__(self, *observers: Observer | None) -> None:
        self.observers = tuple(o for o in observers if o is not None)

    def planned(self, plan: Plan) -> None:
        for o in self.observers:
            o.planned(plan)

    def sending(self, entry: PlanEntry) -> None:
        for o in self.observers:
            o.sending(entry)

    def finished(self, result: ServerResult) -> None:
        for o in self.observers:
            o.finished(result)

    def answered(self, scope: str, *, throttled: bool, hold: float | None) -> None:
        for o in self.observers:
            o.answered(scope, throttled=throttled, hold=hold)

    def batch_started(self, batch: Batch) -> None:
        for o in self.observers:
            o.batch_started(batch)

    def halted(self, reason: str) -> None:
        for o in self.observers:
            o.halted(reason)

    def job_started(self, scope: str, service: str, job_id: str, ids: Sequence[str]) -> None:
        for o in self.observers:
            o.job_started(scope, service, job_id, ids)
