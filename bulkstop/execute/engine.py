"""The engine: resolve a selector into a plan, then execute the plan.

Data flows one way::

    Selector ──resolve()──▶ Plan (PlanEntry per matched server) ──execute()──▶ ServerResult each

The engine knows nothing of click, aiohttp or terminals. It reaches the cloud only through a
:class:`~bulkstop.cloud.base.ComputeAPI`, every request through one
:class:`~bulkstop.execute.gate.Gate`,
and tells the outside world what happens through an :class:`Observer` (progress display,
journal). A failure that concerns one server becomes that server's result; only problems with
the run as a whole (credentials, an endpoint that cannot list, an unsafe cloud) raise, and they
raise before any action is sent.

Concurrency: each project (scope) gets up to ``concurrency`` workers that take servers from that
project's queue, so a throttled project does not hold the others back; a global semaphore in
the gate bounds the requests in flight across all projects to ``concurrency``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import random
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import anyio

from bulkstop.cloud.base import ComputeAPI
from bulkstop.errors import (
    AuthError,
    BulkstopError,
    CloudAccessError,
    EndpointError,
    InputError,
    RefusedError,
    UnsafeCloudError,
)
from bulkstop.execute.budget import Clock, ProjectBudget, Sleep
from bulkstop.execute.gate import CallResult, Gate, NotAdmitted, RetryPolicy
from bulkstop.models import (
    INTERRUPTED,
    Action,
    ErrorInfo,
    ListQuery,
    Outcome,
    Server,
    ServerPage,
    ServerResult,
)
from bulkstop.plan.eligibility import SPECS, ActionSpec, PlanEntry, classify
from bulkstop.plan.rails import Batch, Rails, batches
from bulkstop.select.selector import Selector
from bulkstop.timespec import utc_now

#: ``--rate``: compute API requests per second per project.
DEFAULT_RATE: Final = 10
#: ``--concurrency``: requests in flight overall.
DEFAULT_CONCURRENCY: Final = 32
#: ``--wait-timeout``: seconds to wait for each server to reach its final status.
DEFAULT_WAIT_TIMEOUT: Final = 600.0
#: Seconds between two status polls of a project while waiting.
DEFAULT_POLL_INTERVAL: Final = 2.0
#: Records per listing page we ask for (clouds clamp it to their ``max_limit``).
PAGE_LIMIT: Final = 1000
#: Up to this many servers of a project are read one GET each; more are read by listing.
GET_THRESHOLD: Final = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How a run acts. Defaults are the CLI's."""

    action: Action = Action.STOP
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    wait: bool = False
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    stop_type: str | None = None
    dry_run: bool = False
    rails: Rails = field(default_factory=Rails)

    @property
    def spec(self) -> ActionSpec:
        """What done / in progress / allowed mean for this run's action."""
        return SPECS[self.action]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The resolved selection: every matched server once, with what will happen to it."""

    entries: tuple[PlanEntry, ...]
    #: IDs from an ID file the cloud does not know.
    missing: tuple[ServerResult, ...] = ()
    scopes: tuple[str, ...] = ()
    #: Records the cloud returned while resolving.
    listed: int = 0
    #: Returned records that failed the client-side re-check (the cloud ignored a filter).
    rechecked_out: int = 0

    @property
    def to_send(self) -> tuple[PlanEntry, ...]:
        """The entries that will get a request."""
        return tuple(e for e in self.entries if e.sends)


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
        ``hold``: the seconds a throttle answer asked the project to wait (``Retry-After``).

        Called for every attempt (reads, listings, retries included): keep it to a counter."""

    def batch_started(self, batch: Batch) -> None:
        """The canary, a wave, or the final batch is about to be dispatched."""

    def halted(self, reason: str) -> None:
        """Dispatch was just halted (a rail, a deadline, an interruption): called once."""


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


class Engine:
    """Resolves and executes one run against one cloud. Create inside the running event loop."""

    def __init__(
        self,
        *,
        compute: ComputeAPI,
        scopes: Collection[str],
        options: RunOptions,
        observer: Observer | None = None,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if not scopes:
            raise ValueError("at least one project scope is needed")
        self.compute = compute
        self.scopes = tuple(dict.fromkeys(scopes))
        self.options = options
        self.observer = observer or Observer()
        self._clock = clock
        self._sleep = sleep
        budgets = {
            s: ProjectBudget(rate=options.rate, clock=clock, sleep=sleep) for s in self.scopes
        }
        self.gate = Gate(
            compute=compute,
            budgets=budgets,
            concurrency=options.concurrency,
            policy=options.retry,
            rng=rng,
            clock=clock,
            sleep=sleep,
            on_answer=self.observer.answered,
        )
        self.results: dict[str, ServerResult] = {}
        self._in_flight: set[str] = set()
        #: Accepted results waiting (--wait) to reach their final status.
        self._awaiting: dict[str, ServerResult] = {}
        #: Requests still waiting for their slot or rate turn; a halt cancels their wait.
        self._queued: dict[str, anyio.CancelScope] = {}
        self._halt: str | None = None
        #: A run-wide failure met while dispatching; raised once in-flight requests are done.
        self._fatal: CloudAccessError | None = None
        self._answered = self._failures = 0
        deadline = options.rails.deadline
        #: The deadline on our monotonic clock (wall clocks can jump during a long run).
        self._deadline = (
            None if deadline is None else clock() + (deadline - utc_now()).total_seconds()
        )
        self._poll_query = ListQuery(limit=PAGE_LIMIT)

    # -- resolution ---------------------------------------------------------------------------

    async def resolve(self, selector: Selector) -> Plan:
        """Expand the selector into a plan. Sends only reads; raises before any action."""
        if selector.ids is None:
            query = dataclasses.replace(selector.list_query(), limit=PAGE_LIMIT)
        else:
            # Every id of the file must come back, tagged or not: an untagged server is not
            # "not found". The tag criteria are re-checked on the records below.
            query = ListQuery(all_tenants=selector.all_projects, limit=PAGE_LIMIT)
        self._poll_query = query
        wanted = self._wanted_by_scope(selector)
        found: dict[str, list[Server]] = {}

        async def fetch(scope: str, ids: set[str] | None) -> None:
            found[scope] = list((await self._fetch(scope, ids, query)).values())

        with first_run_error():
            async with anyio.create_task_group() as tg:
                for scope, ids in wanted.items():
                    tg.start_soon(fetch, scope, ids)

        entries: dict[str, PlanEntry] = {}
        seen: set[str] = set()
        now = utc_now()
        listed = rechecked_out = 0
        # An ID list's order is the plan's (its first servers are the canary); a listing keeps
        # the cloud's order (every rank is 0 and the sort is stable).
        rank: dict[str, int] = {}
        for n, target in enumerate(selector.ids or ()):
            rank.setdefault(target.id, n)
        for scope in self.scopes:
            ids = wanted.get(scope)
            for server in sorted(found.get(scope, ()), key=lambda s: rank.get(s.id, 0)):
                listed += 1
                if server.tags is None:
                    raise UnsafeCloudError(
                        f"the cloud returned server {server.id} without its tags "
                        "(compute microversion 2.26 not honoured?): bulkstop cannot check "
                        "tag filters or the bulkstop:protect tag, so it refuses to act"
                    )
                if ids is not None and server.id not in ids:
                    continue
                if not selector.all_projects and server.project_id not in ("", scope):
                    continue  # an admin's GET reaches other projects; --project is a boundary
                seen.add(server.id)
                if not selector.matches(server):
                    rechecked_out += 1
                    continue
                if server.id not in entries:
                    entries[server.id] = classify(
                        server, scope=scope, selector=selector, spec=self.options.spec, now=now
                    )
        # With one project in scope, that is where an id without a project was looked for.
        only_scope = self.scopes[0] if len(self.scopes) == 1 and not selector.all_projects else ""
        missing = tuple(
            ServerResult(
                id=t.id,
                project_id=t.project_id or only_scope,
                name=t.name,
                outcome=Outcome.NOT_FOUND,
                reason="not found in the projects in scope",
            )
            for t in (selector.ids or ())
            if t.id not in seen
        )
        plan_entries = tuple(entries.values())
        try:
            batches([e for e in plan_entries if e.sends])
        except ValueError as exc:
            raise RefusedError(
                f"{exc}: wave order cannot be guaranteed; nothing was sent"
            ) from None
        return Plan(
            entries=plan_entries,
            missing=tuple({r.id: r for r in missing}.values()),
            scopes=self.scopes,
            listed=listed,
            rechecked_out=rechecked_out,
        )

    def _wanted_by_scope(self, selector: Selector) -> dict[str, set[str] | None]:
        """Which ids to look for in which scope (``None`` = everything the query matches)."""
        if selector.ids is None:
            return dict.fromkeys(self.scopes)
        wanted: dict[str, set[str] | None] = {s: set() for s in self.scopes}
        for target in selector.ids:
            if target.project_id is None or selector.all_projects:
                homes: tuple[str, ...] = self.scopes
            elif target.project_id in wanted:
                homes = (target.project_id,)
            else:
                raise InputError(
                    f"server {target.id} is in project {target.project_id}, which is not in "
                    "scope (add --project or leave project_id out of the file)",
                    source=selector.ids_source,
                    line=target.line,
                )
            for home in homes:
                ids = wanted[home]
                assert ids is not None
                ids.add(target.id)
        return {s: ids for s, ids in wanted.items() if ids}

    async def _fetch(self, scope: str, ids: set[str] | None, query: ListQuery) -> dict[str, Server]:
        """Current records of ``ids`` in ``scope`` (all matching ``query`` when ``ids`` is None).

        Few ids: one GET each. Otherwise: page through the listing. Raises CloudAccessError when
        the cloud cannot be read.
        """
        if ids is not None and len(ids) <= GET_THRESHOLD:
            out: dict[str, Server] = {}

            async def get(server_id: str) -> None:
                res = await self.gate.call(
                    scope, partial(self.compute.get_server, scope, server_id)
                )
                if res.reply.status == 404:
                    return
                body = res.reply.body
                if not res.reply.ok or not isinstance(body, Server):
                    raise _read_error(scope, res, what=f"read server {server_id}")
                out[server_id] = body

            with first_run_error():
                async with anyio.create_task_group() as tg:
                    for server_id in sorted(ids):
                        tg.start_soon(get, server_id)
            return out
        servers = await self._list(scope, query)
        return {s.id: s for s in servers if ids is None or s.id in ids}

    async def census(self, *, all_projects: bool = False) -> dict[str, int]:
        """How many servers each project has (every server, whatever its tags or state).

        For ``--max-percent``: the listing is paced and counted like any other.
        """
        query = ListQuery(all_tenants=all_projects, limit=PAGE_LIMIT)
        counts: collections.Counter[str] = collections.Counter()

        async def count(scope: str) -> None:
            unique = {s.id: s for s in await self._list(scope, query)}
            for server in unique.values():
                counts[server.project_id or scope] += 1

        with first_run_error():
            async with anyio.create_task_group() as tg:
                for scope in self.scopes:
                    tg.start_soon(count, scope)
        return dict(counts)

    async def _list(self, scope: str, query: ListQuery) -> list[Server]:
        out: list[Server] = []
        marker: str | None = None
        followed: set[str] = set()
        while True:
            res = await self.gate.call(scope, partial(self.compute.list_page, scope, query, marker))
            page = res.reply.body
            if not res.reply.ok or res.reply.error is not None or not isinstance(page, ServerPage):
                raise _read_error(scope, res, what="list servers")
            out.extend(page.servers)
            if page.next_marker is None:
                return out
            if page.next_marker in followed:
                raise EndpointError(f"project {scope}: the listing's next links loop")
            followed.add(page.next_marker)
            marker = page.next_marker

    # -- execution ----------------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        """Dispatch nothing new; requests in flight finish. The rest become ``not_attempted``."""
        if self._halt is None:
            self._halt = reason
            self.observer.halted(reason)
        for waiting in self._queued.values():
            waiting.cancel()
        self._queued.clear()

    @property
    def halted(self) -> str | None:
        """Why dispatch was stopped, or None."""
        return self._halt

    async def execute(self, plan: Plan) -> tuple[ServerResult, ...]:
        """Carry out the plan; returns one result per server, in plan order.

        Cancellation-safe: if cancelled, :meth:`final_results` still gives a complete list.
        """
        self.observer.planned(plan)
        for missing in plan.missing:
            self._finish(missing)
        sends: list[PlanEntry] = []
        for entry in plan.entries:
            if entry.sends and not self.options.dry_run:
                sends.append(entry)
            elif entry.sends:
                self._finish(_result(entry, Outcome.PLANNED, reason="dry run"))
            else:
                assert entry.outcome is not None
                self._finish(_result(entry, entry.outcome, reason=entry.reason))
        for batch in batches(sends, canary=self.options.rails.canary):
            if self._halt is not None:
                break
            self.observer.batch_started(batch)
            await self._run_batch(batch.entries, wait=self.options.wait or batch.canary)
            if batch.canary:
                self._judge_canary(batch)
        if self._fatal is not None:
            raise self._fatal
        return self.final_results(plan)

    async def _run_batch(self, entries: Sequence[PlanEntry], *, wait: bool) -> None:
        queues: dict[str, list[PlanEntry]] = {}
        for entry in entries:
            queues.setdefault(entry.scope, []).append(entry)
        async with anyio.create_task_group() as tg:
            for scope, queue in queues.items():
                tg.start_soon(self._run_scope, scope, queue, wait)

    def _judge_canary(self, batch: Batch) -> None:
        spec = self.options.spec
        good = (spec.finished, spec.already)
        # A halt (deadline, Ctrl-C, max-errors) can leave canary servers without a result.
        bad = [
            e
            for e in batch.entries
            if (r := self.results.get(e.server.id)) is None or r.outcome not in good
        ]
        if bad:
            self.halt(
                f"canary: {len(bad)} of {len(batch.entries)} did not reach {spec.final_status}"
            )

    def final_results(self, plan: Plan) -> tuple[ServerResult, ...]:
        """Every server of the plan once: its result, or what is known of it if it has none yet
        (``not_attempted`` when nothing was sent, ``failed`` when its request's fate is unknown).
        """
        reason = self._halt or INTERRUPTED
        out: list[ServerResult] = [self.results.get(m.id, m) for m in plan.missing]
        for entry in plan.entries:
            sid = entry.server.id
            if sid in self.results:
                out.append(self.results[sid])
            elif entry.outcome is not None:  # needed no request: its outcome stands
                out.append(_result(entry, entry.outcome, reason=entry.reason))
            elif sid in self._awaiting:
                final_status = self.options.spec.final_status
                out.append(
                    dataclasses.replace(
                        self._awaiting[sid], reason=f"{reason} before {final_status}"
                    )
                )
            elif sid in self._in_flight:
                out.append(
                    _result(
                        entry,
                        Outcome.FAILED,
                        reason=f"{reason} with the request in flight: state unknown",
                    )
                )
            else:
                out.append(_result(entry, Outcome.NOT_ATTEMPTED, reason=reason))
        return tuple(out)

    async def _run_scope(self, scope: str, entries: list[PlanEntry], wait: bool) -> None:
        queue = iter(entries)
        waiter = _Waiter(wait=wait)
        async with anyio.create_task_group() as tg:
            if wait:
                tg.start_soon(self._poll, scope, waiter)
            async with anyio.create_task_group() as workers:
                for _ in range(min(self.options.concurrency, len(entries))):
                    workers.start_soon(self._worker, queue, waiter)
            waiter.dispatch_done = True

    async def _worker(self, queue: Iterator[PlanEntry], waiter: _Waiter) -> None:
        for entry in queue:
            if not self._may_dispatch():
                return
            result = await self._act(entry)
            if result is None:
                return
            if result.outcome is Outcome.ACCEPTED and waiter.wait:
                if entry.server.vm_state == "error":
                    waiter.errored.add(entry.server.id)
                self._awaiting[entry.server.id] = result
                waiter.pending[entry.server.id] = (
                    result,
                    self._clock() + self.options.wait_timeout,
                )
            else:
                self._finish(result)

    def _may_dispatch(self) -> bool:
        """False once the run is halted (the deadline passing halts it)."""
        if self._deadline is not None and self._clock() >= self._deadline:
            self.halt("deadline")
        return self._halt is None

    def _admit(self, entry: PlanEntry) -> bool:
        """Just before a server's first request goes out: still dispatching? Then record it."""
        if not self._may_dispatch():
            return False
        if entry.server.id not in self._in_flight:  # asked again before a retry of a 429
            self._queued.pop(entry.server.id, None)
            self.observer.sending(entry)
            if self._halt is not None:  # the journal could not record the intent
                return False
            self._in_flight.add(entry.server.id)
        return True

    async def _act(self, entry: PlanEntry) -> ServerResult | None:
        """Send the action for one server and judge the answer.

        None when the run was halted while the request waited for its turn (nothing was sent).
        """
        sid, scope = entry.server.id, entry.scope
        # A halt cancels this scope while the request waits for its turn; once admitted, the
        # request is in flight and only the runner's grace can cancel it.
        waiting = self._queued[sid] = anyio.CancelScope()
        try:
            with waiting:
                res = await self.gate.call(
                    scope,
                    partial(
                        self.compute.action,
                        scope,
                        sid,
                        self.options.action,
                        stop_type=self.options.stop_type,
                    ),
                    admit=partial(self._admit, entry),
                )
                result = await self._judge(entry, res)
                # Only an answered request leaves the in-flight set: one cut short by a
                # cancellation stays there, and the report says its state is unknown.
                self._in_flight.discard(sid)
                return result
        except NotAdmitted:
            # Nothing reached the cloud (at most throttled attempts): not attempted, not unknown.
            self._in_flight.discard(sid)
        except CloudAccessError as exc:
            # Run-wide (Keystone refused a renewal): halt, let the requests in flight finish,
            # and raise once they have (see execute). This one's last answer was a 401.
            self._fatal = self._fatal or exc
            self.halt(f"{type(exc).__name__}: {exc}")
            self._in_flight.discard(sid)
            error = ErrorInfo(code="unauthorized", message=str(exc))
            return _result(
                entry,
                Outcome.FAILED,
                error=error,
                reason="token renewal refused",
                http_status=401,
                attempts=1,
            )
        finally:
            self._queued.pop(sid, None)
        return None

    async def _judge(self, entry: PlanEntry, res: CallResult) -> ServerResult:
        reply = res.reply
        spec = self.options.spec
        judged = partial(
            _result,
            entry,
            http_status=reply.status,
            attempts=res.attempts,
            request_id=reply.request_id,
            elapsed=self._clock() - res.started,
        )
        if reply.ok:
            return judged(Outcome.ACCEPTED)
        error = reply.error or ErrorInfo(code=f"HTTP {reply.status}", message="")
        if res.gave_up is not None:
            return judged(Outcome.FAILED, error=error, reason=res.gave_up)
        if reply.status == 404:
            return judged(Outcome.NOT_FOUND, error=error, reason="the cloud does not know it")
        if reply.status == 409:
            # Nova says "not in a state to do that": find out which state.
            reread = await self.gate.call(
                entry.scope, partial(self.compute.get_server, entry.scope, entry.server.id)
            )
            now = reread.reply.body if reread.reply.ok else None
            if isinstance(now, Server):
                if spec.is_done(now):
                    # After an attempt that got no answer, that attempt is what did it.
                    outcome = Outcome.ACCEPTED if res.uncertain else spec.already
                    return judged(outcome, reason=f"already {spec.final_status} (409)")
                if spec.in_progress(now):
                    return judged(Outcome.ACCEPTED, reason=f"already {spec.task_state} (409)")
            return judged(Outcome.FAILED, error=error, reason="conflict (409)")
        return judged(Outcome.FAILED, error=error, reason=f"refused (HTTP {reply.status})")

    async def _poll(self, scope: str, waiter: _Waiter) -> None:
        """With --wait: read the project's servers in batches until each pending one is done."""
        spec = self.options.spec
        while not (waiter.dispatch_done and not waiter.pending):
            await self._sleep(self.options.poll_interval)
            if not waiter.pending:
                continue
            if self._halt is not None and waiter.dispatch_done:
                for result, _ in waiter.pending.values():
                    self._finish(
                        dataclasses.replace(
                            result, reason=f"{self._halt} before {spec.final_status}"
                        )
                    )
                waiter.pending.clear()
                return
            try:
                servers = await self._fetch(scope, set(waiter.pending), self._poll_query)
            except (EndpointError, AuthError):
                servers = {}  # a failed poll is retried at the next interval, until the deadline
            now = self._clock()
            for sid, (result, deadline) in list(waiter.pending.items()):
                server = servers.get(sid)
                if server is not None and spec.is_done(server):
                    final = dataclasses.replace(result, outcome=spec.finished)
                elif server is not None and _went_to_error(
                    server, errored_before=sid in waiter.errored
                ):
                    final = dataclasses.replace(
                        result, outcome=Outcome.FAILED, reason="went to ERROR"
                    )
                elif now >= deadline:
                    final = dataclasses.replace(
                        result,
                        outcome=Outcome.FAILED,
                        reason=f"not {spec.final_status} after {self.options.wait_timeout:g}s",
                    )
                else:
                    continue
                del waiter.pending[sid]
                self._finish(final)

    def _finish(self, result: ServerResult) -> None:
        self.results[result.id] = result
        self._awaiting.pop(result.id, None)
        self.observer.finished(result)
        if result.attempts:
            self._answered += 1
            self._failures += result.outcome.is_failure
            budget = self.options.rails.max_errors
            if budget is not None and budget.crossed(
                failures=self._failures, finished=self._answered
            ):
                self.halt(f"max-errors: {self._failures} of {self._answered} requests failed")


@dataclass(slots=True)
class _Waiter:
    """Servers of one project accepted and waiting to reach their final status."""

    #: True when accepted servers must be seen reaching their final status.
    wait: bool
    pending: dict[str, tuple[ServerResult, float]] = field(default_factory=dict)
    #: Pending servers that were in ERROR before we acted (Nova may stop those).
    errored: set[str] = field(default_factory=set)
    dispatch_done: bool = False


def _went_to_error(server: Server, *, errored_before: bool) -> bool:
    """The action ended in ERROR (a server that was in ERROR already must first settle)."""
    if server.vm_state != "error":
        return False
    return not errored_before or server.task_state is None


def _result(
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


@contextlib.contextmanager
def first_run_error() -> Iterator[None]:
    """Raise a run-wide error from a task group as itself, not wrapped in an ExceptionGroup."""
    try:
        yield
    except* BulkstopError as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def _read_error(scope: str, res: CallResult, *, what: str) -> Exception:
    """Translate a failed read during resolution into a run-wide error."""
    reply = res.reply
    detail = f"{reply.error.code}: {reply.error.message}" if reply.error else f"HTTP {reply.status}"
    message = f"project {scope}: could not {what} ({detail})"
    if reply.status in (401, 403):
        return AuthError(message)
    return EndpointError(message)
