"""``wait``: poll accepted servers until each reaches its final status, fails, or times out.

One :class:`Waiter` per project and batch. Every ``poll_interval`` it reads the project's
pending servers the cheaper way (:func:`poll_by_listing`): one GET each, or the listing pages
they are on — resolution noted each server's page, so 21 pending servers on one page cost one
listing request instead of 21 GETs. A failed poll is retried at the next interval; each
server's own ``wait_timeout`` bounds the wait. The ``deadline`` does not end the polls (it
stops sends only); any other halt does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field

from bulkstop.errors import AuthError, EndpointError
from bulkstop.execute.context import DispatchContext
from bulkstop.execute.resolve import GET_THRESHOLD
from bulkstop.models import Outcome, Server, ServerResult
from bulkstop.plan.eligibility import PlanEntry


def poll_by_listing(pages: Collection[int | None]) -> bool:
    """True when listing costs fewer requests than one GET per pending server.

    ``pages`` holds the listing page (0-based) of each pending server, ``None`` when it is not
    known (the server was resolved by GET). Listing from the first page to the last one needed
    costs ``max(pages) + 1`` requests; a tie goes to the GETs, which read exactly what is
    needed. With a page unknown, only more than :data:`GET_THRESHOLD` servers are listed.
    """
    if not pages:
        return False
    if None in pages:
        return len(pages) > GET_THRESHOLD
    return max(p for p in pages if p is not None) + 1 < len(pages)


@dataclass(slots=True)
class _Pending:
    result: ServerResult
    #: On the run's clock: when this server's ``wait_timeout`` runs out.
    deadline: float
    #: It was in ERROR before we acted (Nova may stop those): it must first settle.
    errored_before: bool


@dataclass(slots=True)
class Waiter:
    """Accepted servers of one project, polled until each is done (or failed, or timed out)."""

    context: DispatchContext
    scope: str
    pending: dict[str, _Pending] = field(default_factory=dict)
    #: Set by the dispatcher once it will add no more servers.
    dispatch_done: bool = False

    def add(self, entry: PlanEntry, result: ServerResult) -> None:
        """An accepted server whose final status is still to be seen."""
        ctx = self.context
        ctx.ledger.awaiting(result)
        self.pending[result.id] = _Pending(
            result=result,
            deadline=ctx.clock() + ctx.options.wait_timeout,
            errored_before=entry.server.vm_state == "error",
        )

    async def run(self) -> None:
        """Poll until dispatch is done and nothing is pending."""
        ctx = self.context
        spec = ctx.options.spec
        while not (self.dispatch_done and not self.pending):
            await ctx.sleep(ctx.options.poll_interval)
            if not self.pending:
                continue
            if ctx.halting.ends_waiting and self.dispatch_done:
                for waiting in self.pending.values():
                    ctx.ledger.finish(
                        dataclasses.replace(
                            waiting.result,
                            reason=f"{ctx.halting.reason} before {spec.final_status}",
                        )
                    )
                self.pending.clear()
                return
            try:
                servers = await self._read()
            except (EndpointError, AuthError):
                servers = {}  # a failed poll is retried at the next interval, until the timeout
            self._judge(servers, now=ctx.clock())

    async def _read(self) -> dict[str, Server]:
        """The pending servers' records, read the cheaper way."""
        ctx = self.context
        ids = set(self.pending)
        pages = [ctx.plan.pages.get(sid) for sid in ids]
        if not poll_by_listing(pages):
            return await ctx.reader.get_each(self.scope, ids)
        listed = await ctx.reader.listing(self.scope, ctx.plan.query, wanted=ids)
        return {s.id: s for _, s in listed if s.id in ids}

    def _judge(self, servers: dict[str, Server], *, now: float) -> None:
        """Finish every pending server that is done, went to ERROR, or ran out of time."""
        ctx = self.context
        spec = ctx.options.spec
        for sid, waiting in list(self.pending.items()):
            server = servers.get(sid)
            if server is not None and spec.is_done(server):
                final = dataclasses.replace(waiting.result, outcome=spec.finished)
            elif server is not None and _went_to_error(
                server, errored_before=waiting.errored_before
            ):
                final = dataclasses.replace(
                    waiting.result, outcome=Outcome.FAILED, reason="went to ERROR"
                )
            elif now >= waiting.deadline:
                final = dataclasses.replace(
                    waiting.result,
                    outcome=Outcome.FAILED,
                    reason=f"not {spec.final_status} after {ctx.options.wait_timeout:g}s",
                )
            else:
                continue
            del self.pending[sid]
            ctx.ledger.finish(final)


def _went_to_error(server: Server, *, errored_before: bool) -> bool:
    """The action ended in ERROR (a server that was in ERROR already must first settle)."""
    if server.vm_state != "error":
        return False
    return not errored_before or server.task_state is None
