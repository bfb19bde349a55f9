"""What the execution stage tells the outside world: the :class:`Observer` hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    """Several observers as one, called in order (e.g. journal first, then progress).

    Each hook calls only the observers that override it, bound once: ``sending``, ``answered``
    and ``finished`` run for every server, and most observers leave most hooks alone.
    """

    def __init__(self, *observers: Observer | None) -> None:
        self.observers = tuple(o for o in observers if o is not None)
        self._planned = self._hooks("planned")
        self._sending = self._hooks("sending")
        self._finished = self._hooks("finished")
        self._answered = self._hooks("answered")
        self._batch_started = self._hooks("batch_started")
        self._halted = self._hooks("halted")
        self._job_started = self._hooks("job_started")

    def _hooks(self, name: str) -> tuple[Callable[..., None], ...]:
        default = getattr(Observer, name)
        return tuple(
            getattr(o, name) for o in self.observers if getattr(type(o), name) is not default
        )

    def planned(self, plan: Plan) -> None:
        for hook in self._planned:
            hook(plan)

    def sending(self, entry: PlanEntry) -> None:
        for hook in self._sending:
            hook(entry)

    def finished(self, result: ServerResult) -> None:
        for hook in self._finished:
            hook(result)

    def answered(self, scope: str, *, throttled: bool, hold: float | None) -> None:
        for hook in self._answered:
            hook(scope, throttled=throttled, hold=hold)

    def batch_started(self, batch: Batch) -> None:
        for hook in self._batch_started:
            hook(batch)

    def halted(self, reason: str) -> None:
        for hook in self._halted:
            hook(reason)

    def job_started(self, scope: str, service: str, job_id: str, ids: Sequence[str]) -> None:
        for hook in self._job_started:
            hook(scope, service, job_id, ids)
