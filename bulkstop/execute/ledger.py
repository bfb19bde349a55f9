"""The ledger: where every server of a run stands, and the one path by which it gets its result.

A server moves through the ledger in one direction::

    (planned) ──admit()──▶ in flight ──answered()──▶ (judged) ──finish()──▶ result
                                                          └──awaiting()──▶ awaiting ──finish()──▶

:meth:`Ledger.admit` tells the observer (the journal records the intent) just before a
server's first request leaves; :meth:`Ledger.finish` records a final result, tells the observer
and feeds the breaker; :meth:`Ledger.heard` counts every answer (the gate's ``on_reply``).
Whatever stops a run midway, :meth:`Ledger.final_results` says what is
known of every server: a request cut short is ``failed`` with its state unknown, one never sent
is ``not_attempted``. Every dispatcher goes through these methods, so every dispatcher's results
are journalled, shown and counted alike.
"""

from __future__ import annotations

import dataclasses

from bulkstop.execute.halt import Halting
from bulkstop.execute.observer import Observer
from bulkstop.execute.resolve import Plan
from bulkstop.models import INTERRUPTED, ErrorInfo, Outcome, Reply, ServerResult
from bulkstop.plan.eligibility import ActionSpec, PlanEntry


class Ledger:
    """Results, requests in flight and accepted servers awaiting their final status."""

    def __init__(self, *, observer: Observer, halting: Halting, spec: ActionSpec) -> None:
        self.observer = observer
        self.halting = halting
        self.spec = spec
        #: Final results by server id.
        self.results: dict[str, ServerResult] = {}
        #: Servers admitted (their intent journalled) whose request has no final answer yet.
        self.in_flight: set[str] = set()
        #: In-flight servers one of whose requests may have been carried out (not every answer
        #: so far was a throttle): their state is unknown.
        self.maybe_served: set[str] = set()
        #: Requests sent per server so far and the last answer's status, for the report.
        self.tries: dict[str, tuple[int, int | None]] = {}
        #: Accepted results waiting (``wait``) to reach their final status, by server id.
        self.pending: dict[str, ServerResult] = {}

    def admit(self, entry: PlanEntry) -> bool:
        """Just before a server's first request goes out: still dispatching? Then record it.

        False (send nothing) once the run is halted, or when the observer halted it (a journal
        that cannot record the intent). Asking again for a server in flight (a retry after a
        throttle) only checks the halt.
        """
        if not self.halting.may_dispatch():
            return False
        if entry.server.id not in self.in_flight:
            self.observer.sending(entry)
            if self.halting.reason is not None:
                return False
            self.in_flight.add(entry.server.id)
        self.maybe_served.add(entry.server.id)
        return True

    def heard(self, server_id: str, reply: Reply, unserved: bool) -> None:
        """One answer to a server's action: count it (the gate's ``on_reply`` hook).

        ``unserved``: every answer so far was a throttle, so the cloud carried none out.
        """
        attempts, _ = self.tries.get(server_id, (0, None))
        self.tries[server_id] = (attempts + 1, reply.status)
        if unserved:
            self.maybe_served.discard(server_id)

    def answered(self, server_id: str) -> None:
        """The server's request got an answer, or was never sent: it is no longer in flight."""
        self.in_flight.discard(server_id)
        self.maybe_served.discard(server_id)

    def awaiting(self, result: ServerResult) -> None:
        """Accepted; its final status is still to be seen."""
        self.pending[result.id] = result

    def finish(self, result: ServerResult) -> None:
        """The server's final result: record it, tell the observer, feed the breaker."""
        self.results[result.id] = result
        self.pending.pop(result.id, None)
        self.observer.finished(result)
        self.halting.count(result)

    def final_results(self, plan: Plan) -> tuple[ServerResult, ...]:
        """Every server of the plan once: its result, or what is known of it if it has none yet
        (``not_attempted`` when nothing was sent or every answer was a throttle, ``failed``
        when its request's fate is unknown), with the requests sent for it so far.
        """
        reason = self.halting.reason or INTERRUPTED
        out: list[ServerResult] = [self.results.get(m.id, m) for m in plan.missing]
        for entry in plan.entries:
            sid = entry.server.id
            if sid in self.results:
                out.append(self.results[sid])
            elif entry.outcome is not None:  # needed no request: its outcome stands
                out.append(result_for(entry, entry.outcome, reason=entry.reason))
            elif sid in self.pending:
                out.append(
                    dataclasses.replace(
                        self.pending[sid], reason=f"{reason} before {self.spec.final_status}"
                    )
                )
            elif sid in self.maybe_served:
                out.append(
                    self._tried(
                        entry,
                        Outcome.FAILED,
                        reason=f"{reason} with the request in flight: state unknown",
                    )
                )
            elif sid in self.in_flight:
                # Every request sent for it so far was throttled: the cloud carried none out.
                out.append(
                    self._tried(entry, Outcome.NOT_ATTEMPTED, reason=f"{reason} (throttled)")
                )
            else:
                out.append(self._tried(entry, Outcome.NOT_ATTEMPTED, reason=reason))
        return tuple(out)

    def _tried(self, entry: PlanEntry, outcome: Outcome, *, reason: str) -> ServerResult:
        """A result without a final answer, true to the requests sent so far."""
        attempts, status = self.tries.get(entry.server.id, (0, None))
        return result_for(entry, outcome, reason=reason, attempts=attempts, http_status=status)


def result_for(
    entry: PlanEntry,
    outcome: Outcome,
    *,
    reason: str | None = None,
    error: ErrorInfo | None = None,
    http_status: int | None = None,
    attempts: int = 0,
    request_id: str | None = None,
    elapsed: float | None = None,
) -> ServerResult:
    """The report line of a plan entry's server."""
    server = entry.server
    return ServerResult(
        id=server.id,
        project_id=server.project_id or entry.scope,
        name=server.name,
        outcome=outcome,
        http_status=http_status,
        attempts=attempts,
        error=error,
        reason=reason,
        request_id=request_id,
        elapsed=elapsed,
    )
