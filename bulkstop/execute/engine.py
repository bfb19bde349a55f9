"""The engine: resolve a selector into a plan, then execute the plan.

Data flows one way::

    Selector ──resolve()──▶ Plan (PlanEntry per matched server) ──execute()──▶ ServerResult each

The engine knows nothing of click, aiohttp or terminals. It composes parts with one job each:

* :mod:`~bulkstop.execute.resolve` — selector → :class:`Plan` (reads only);
* :mod:`~bulkstop.execute.dispatch` — sending the action for each server of a batch
  (:class:`~bulkstop.execute.dispatch.Dispatcher`; :class:`NativeDispatcher` by default);
* :mod:`~bulkstop.execute.wait` — ``wait``: polling until each server's final status;
* :mod:`~bulkstop.execute.halt` — canary, ``max_errors``, deadline, interruption;
* :mod:`~bulkstop.execute.ledger` — where each server stands; the one finish path.

It reaches the cloud only through a :class:`~bulkstop.cloud.base.ComputeAPI`, every request
through one :class:`~bulkstop.execute.gate.Gate`, and what an answer means is decided by
:mod:`bulkstop.cloud.verdict`. It tells the outside world what happens through an
:class:`Observer` (progress display, journal). A failure that concerns one server becomes that
server's result; only problems with the run as a whole (credentials, an endpoint that cannot
list, an unsafe cloud) raise, and they raise before any action is sent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection

import anyio

from bulkstop.cloud.base import ComputeAPI
from bulkstop.execute.budget import Clock, ProjectBudget, Sleep
from bulkstop.execute.context import DispatchContext
from bulkstop.execute.dispatch import Dispatcher, DispatcherFactory, NativeDispatcher
from bulkstop.execute.gate import Gate
from bulkstop.execute.halt import Halting
from bulkstop.execute.ledger import Ledger, result_for
from bulkstop.execute.observer import Observer, Observers
from bulkstop.execute.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RATE,
    DEFAULT_WAIT_TIMEOUT,
    RunOptions,
)
from bulkstop.execute.resolve import GET_THRESHOLD, PAGE_LIMIT, Plan, Reader, Resolver
from bulkstop.execute.taskgroup import first_run_error
from bulkstop.models import Outcome, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import batches
from bulkstop.select.selector import Selector
from bulkstop.timespec import utc_now

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RATE",
    "DEFAULT_WAIT_TIMEOUT",
    "GET_THRESHOLD",
    "PAGE_LIMIT",
    "Dispatcher",
    "DispatcherFactory",
    "Engine",
    "Observer",
    "Observers",
    "Plan",
    "RunOptions",
    "first_run_error",
]


class Engine:
    """Resolves and executes one run against one cloud. Create inside the running event loop.

    ``dispatcher`` makes the part that sends the actions (default: one request per server,
    :class:`~bulkstop.execute.dispatch.NativeDispatcher`).
    """

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
        dispatcher: DispatcherFactory = NativeDispatcher,
    ) -> None:
        if not scopes:
            raise ValueError("at least one project scope is needed")
        self.compute = compute
        self.scopes = tuple(dict.fromkeys(scopes))
        self.options = options
        self.observer = observer or Observer()
        self._clock = clock
        self._sleep = sleep
        self._dispatcher = dispatcher
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
        self.reader = Reader(compute=compute, gate=self.gate)
        self.resolver = Resolver(reader=self.reader, scopes=self.scopes, spec=options.spec)
        deadline = options.rails.deadline
        # On our monotonic clock: wall clocks can jump during a long run.
        deadline_at = None if deadline is None else clock() + (deadline - utc_now()).total_seconds()
        self.halting = Halting(
            deadline_at=deadline_at,
            max_errors=options.rails.max_errors,
            clock=clock,
            on_halt=self.observer.halted,
        )
        self.ledger = Ledger(observer=self.observer, halting=self.halting, spec=options.spec)

    @property
    def results(self) -> dict[str, ServerResult]:
        """Final results so far, by server id."""
        return self.ledger.results

    async def resolve(self, selector: Selector) -> Plan:
        """Expand the selector into a plan. Sends only reads; raises before any action."""
        return await self.resolver.resolve(selector)

    async def census(self, *, all_projects: bool = False) -> dict[str, int]:
        """How many servers each project has (for ``max_percent``)."""
        return await self.resolver.census(all_projects=all_projects)

    def halt(self, reason: str) -> None:
        """Dispatch nothing new; requests in flight finish. The rest become ``not_attempted``."""
        self.halting.halt(reason)

    @property
    def halted(self) -> str | None:
        """Why dispatch was stopped, or None."""
        return self.halting.reason

    async def execute(self, plan: Plan) -> tuple[ServerResult, ...]:
        """Carry out the plan; returns one result per server, in plan order.

        Cancellation-safe: if cancelled, :meth:`final_results` still gives a complete list.
        """
        self.observer.planned(plan)
        ledger = self.ledger
        for missing in plan.missing:
            ledger.finish(missing)
        sends: list[PlanEntry] = []
        for entry in plan.entries:
            if entry.sends and not self.options.dry_run:
                sends.append(entry)
            elif entry.sends:
                ledger.finish(result_for(entry, Outcome.PLANNED, reason="dry run"))
            else:
                assert entry.outcome is not None
                ledger.finish(result_for(entry, entry.outcome, reason=entry.reason))
        dispatcher = self._dispatcher(
            DispatchContext(
                compute=self.compute,
                gate=self.gate,
                reader=self.reader,
                halting=self.halting,
                ledger=ledger,
                options=self.options,
                plan=plan,
                clock=self._clock,
                sleep=self._sleep,
            )
        )
        for batch in batches(sends, canary=self.options.rails.canary):
            if self.halting.reason is not None:
                break
            self.observer.batch_started(batch)
            await dispatcher.dispatch(batch, wait=self.options.wait or batch.canary)
            if batch.canary:
                self.halting.judge_canary(batch.entries, ledger.results, self.options.spec)
        if self.halting.fatal is not None:
            raise self.halting.fatal
        return self.final_results(plan)

    def final_results(self, plan: Plan) -> tuple[ServerResult, ...]:
        """Every server of the plan once: its result, or what is known of it if it has none yet
        (``not_attempted`` when nothing was sent, ``failed`` when its request's fate is unknown).
        """
        return self.ledger.final_results(plan)
