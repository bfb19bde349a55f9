"""Dispatch: sending the action for the servers of a batch, and judging each answer.

The engine hands a dispatcher one :class:`~bulkstop.plan.rails.Batch` at a time (the canary,
then each wave) and starts the next batch only when :meth:`Dispatcher.dispatch` has returned.
:class:`Dispatcher` is the narrow contract; :class:`NativeDispatcher` implements it with one
request per server (``POST /servers/{id}/action``). A dispatcher that sends servers in chunks
(Huawei's batch API, one job per chunk) is a second implementation of the same Protocol, given
to the engine as a :data:`DispatcherFactory`; the engine does not change.

The contract, for every implementation:

* Every request goes through ``context.gate`` (rate, concurrency, retries, renewal). An
  action's call passes ``until=context.halting.deadline_at`` (no send, and no retry of one,
  after the deadline) and ``on_reply=partial(context.ledger.heard, server_id)`` (so that a
  result the ledger makes for a server left midway is true to the requests sent for it).
* Before a server's first request leaves, ``context.ledger.admit(entry)`` must say True (it
  journals the intent; False means the run is halted: send nothing for that server). Stop
  taking new servers once ``context.halting.may_dispatch()`` is False.
* What an answer means is :func:`bulkstop.cloud.verdict.judge`'s (the gate returns it as
  ``CallResult.verdict``); a dispatcher maps verdicts to outcomes, never status codes.
* Every server that got a request ends with ``context.ledger.answered(id)`` once its answer is
  known, then either ``context.ledger.finish(result)`` or — when the batch must wait for the
  final status (``wait``) — stays in ``context.ledger.awaiting`` until it is finished. A server
  left without a result (halt, cancellation) is reported by the ledger: ``not_attempted`` if
  never admitted, ``failed`` (state unknown) if still in flight.
* A run-wide failure (:class:`~bulkstop.errors.CloudAccessError`) is reported with
  ``context.halting.fail(exc)``, not raised: requests in flight finish first.
* Cancellation is re-raised, never swallowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Protocol

import anyio

from bulkstop.cloud.verdict import Kind
from bulkstop.errors import CloudAccessError
from bulkstop.execute.context import DispatchContext
from bulkstop.execute.gate import CallResult, NotAdmitted
from bulkstop.execute.ledger import result_for
from bulkstop.execute.wait import Waiter
from bulkstop.models import ErrorInfo, Outcome, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import Batch


class Dispatcher(Protocol):
    """Sends the run's action for the servers of one batch; results go to the ledger."""

    async def dispatch(self, batch: Batch, *, wait: bool) -> None:
        """Act on every server of ``batch`` that dispatch may still reach; return when each
        one sent has its result in ``context.ledger`` (with ``wait``: its final status, a
        failure, or the wait timeout), or when the run is halted and nothing is in flight."""
        ...


#: How the engine makes its dispatcher for the plan it executes.
DispatcherFactory = Callable[[DispatchContext], Dispatcher]


class NativeDispatcher:
    """One request per server: per-project workers, re-read after a conflict.

    Each project gets up to ``concurrency`` workers taking servers from that project's queue,
    so a throttled project does not hold the others back; the gate bounds the requests in
    flight across all projects to ``concurrency``.
    """

    def __init__(self, context: DispatchContext) -> None:
        self.context = context

    async def dispatch(self, batch: Batch, *, wait: bool) -> None:
        queues: dict[str, list[PlanEntry]] = {}
        for entry in batch.entries:
            queues.setdefault(entry.scope, []).append(entry)
        async with anyio.create_task_group() as tg:
            for scope, queue in queues.items():
                tg.start_soon(self._run_scope, scope, queue, wait)

    async def _run_scope(self, scope: str, entries: list[PlanEntry], wait: bool) -> None:
        queue = iter(entries)
        waiter = Waiter(context=self.context, scope=scope) if wait else None
        async with anyio.create_task_group() as tg:
            if waiter is not None:
                tg.start_soon(waiter.run)
            async with anyio.create_task_group() as workers:
                for _ in range(min(self.context.options.concurrency, len(entries))):
                    workers.start_soon(self._worker, queue, waiter)
            if waiter is not None:
                waiter.dispatch_done = True

    async def _worker(self, queue: Iterator[PlanEntry], waiter: Waiter | None) -> None:
        ledger = self.context.ledger
        for entry in queue:
            if not self.context.halting.may_dispatch():
                return
            result = await self._act(entry)
            if result is None:
                return
            if result.outcome is Outcome.ACCEPTED and waiter is not None:
                waiter.add(entry, result)
            else:
                ledger.finish(result)

    def _admit(self, entry: PlanEntry, waiting: anyio.CancelScope) -> bool:
        self.context.halting.on_the_wire(waiting)
        return self.context.ledger.admit(entry)

    async def _act(self, entry: PlanEntry) -> ServerResult | None:
        """Send the action for one server and judge the answer.

        None when the run was halted while the request waited for its turn (nothing was sent).
        """
        ctx = self.context
        sid, scope = entry.server.id, entry.scope
        request = partial(
            ctx.compute.action, scope, sid, ctx.options.action, stop_type=ctx.options.stop_type
        )
        try:
            # A halt cancels the request while it waits for its turn; once admitted, it is in
            # flight and only the runner's grace can cancel it.
            with ctx.halting.waiting() as waiting:
                res = await ctx.gate.call(
                    scope,
                    request,
                    admit=partial(self._admit, entry, waiting),
                    until=ctx.halting.deadline_at,
                    on_reply=partial(ctx.ledger.heard, sid),
                )
                result = await self._judge(entry, res)
                # Only an answered request leaves the in-flight set: one cut short by a
                # cancellation stays there, and the report says its state is unknown.
                ctx.ledger.answered(sid)
                return result
        except NotAdmitted:
            # Nothing reached the cloud (at most throttled attempts): not attempted, not unknown.
            ctx.ledger.answered(sid)
        except CloudAccessError as exc:
            # Run-wide (Keystone refused a renewal): halt, let the requests in flight finish;
            # the engine raises once they have. This one's last answer was a 401.
            ctx.halting.fail(exc)
            ctx.ledger.answered(sid)
            return result_for(
                entry,
                Outcome.FAILED,
                error=ErrorInfo(code="unauthorized", message=str(exc)),
                reason="token renewal refused",
                http_status=401,
                attempts=ctx.ledger.tries.get(sid, (1, 401))[0],
            )
        return None

    async def _judge(self, entry: PlanEntry, res: CallResult) -> ServerResult:
        """The server's result from the verdict on its answer (re-reading it after a conflict)."""
        ctx = self.context
        reply, verdict, spec = res.reply, res.verdict, ctx.options.spec
        judged = partial(
            result_for,
            entry,
            http_status=reply.status,
            attempts=res.attempts,
            request_id=reply.request_id,
            elapsed=ctx.clock() - res.started,
        )
        if verdict.kind is Kind.ACCEPTED:
            return judged(Outcome.ACCEPTED)
        error = reply.error or ErrorInfo(code=f"HTTP {reply.status}", message="")
        if res.gave_up is not None:
            return judged(Outcome.FAILED, error=error, reason=res.gave_up)
        if verdict.kind is Kind.ALREADY_DONE:
            return judged(spec.already, reason=verdict.reason)
        if verdict.kind is Kind.SKIPPED:
            return judged(Outcome.SKIPPED, error=error, reason=verdict.reason)
        if verdict.kind is Kind.NOT_FOUND:
            return judged(Outcome.NOT_FOUND, error=error, reason="the cloud does not know it")
        if verdict.kind is Kind.REREAD:
            return await self._reread(entry, res, judged, error=error)
        return judged(Outcome.FAILED, error=error, reason=f"refused (HTTP {reply.status})")

    async def _reread(
        self,
        entry: PlanEntry,
        res: CallResult,
        judged: Callable[..., ServerResult],
        *,
        error: ErrorInfo,
    ) -> ServerResult:
        """ "Not in a state to do that": find out which state."""
        spec = self.context.options.spec
        now = await self.context.reader.current(entry.scope, entry.server.id)
        status = res.reply.status
        if now is not None:
            if spec.is_done(now):
                # After an attempt that got no answer, that attempt is what did it.
                outcome = Outcome.ACCEPTED if res.uncertain else spec.already
                return judged(outcome, reason=f"already {spec.final_status} ({status})")
            if spec.in_progress(now):
                return judged(Outcome.ACCEPTED, reason=f"already {spec.task_state} ({status})")
        return judged(Outcome.FAILED, error=error, reason=f"conflict ({status})")
