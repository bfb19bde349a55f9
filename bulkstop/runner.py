"""One run end to end: resolve, check the rails, confirm, execute, and always write the report.

:mod:`bulkstop.api` (the front door, and through it the CLI) builds the :class:`RunRequest`
from keyword arguments and opens and closes the cloud around :func:`run`. Whatever happens once
execution has started — success, a safety rail, Ctrl-C, SIGTERM, a crash of our own — the
report is built from what is known and written under a shielded cancel scope before the
exception (if any) goes on.

Interruption (``handle_signals=True``): the first SIGINT/SIGTERM halts dispatch, gives requests
in flight ``grace`` seconds, then cancels them; a second signal cancels at once. Either way the
report is complete: servers never reached are ``not_attempted``.

With ``journal_path`` the run is recorded as it goes (:mod:`bulkstop.record.journal`), so that a run
killed outright can be finished; with ``resume`` it finishes one (:mod:`bulkstop.record.resume`).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import anyio

from bulkstop.cloud.base import ComputeAPI
from bulkstop.errors import BulkstopError, RecordError, RefusedError
from bulkstop.execute.dispatch import NativeDispatcher
from bulkstop.execute.engine import (
    DispatcherFactory,
    Engine,
    Observer,
    Observers,
    Plan,
    RunOptions,
    first_run_error,
)
from bulkstop.limits import DEFAULT_GRACE
from bulkstop.models import INTERRUPTED
from bulkstop.plan.rails import check_caps
from bulkstop.record.journal import Journal, JournalState
from bulkstop.record.report import Report, check_writable, refuse_foreign_link, write_report
from bulkstop.record.resume import adopt, merge
from bulkstop.record.timeline import Timeline
from bulkstop.select.selector import Selector
from bulkstop.timespec import utc_now

Confirm = Callable[[Plan], Awaitable[bool]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """Everything a run needs besides the cloud connection."""

    selector: Selector
    options: RunOptions = field(default_factory=RunOptions)
    #: Where to write the JSON report (``-`` = stdout); ``None`` writes none.
    report_path: str | None = None
    #: Extra settings recorded in the report's ``options`` (e.g. the request timeout).
    extra_options: Mapping[str, Any] = field(default_factory=dict)
    #: Where to keep the run's journal (see :mod:`bulkstop.record.journal`); ``None`` keeps none.
    #: A dry run never keeps one. With ``resume``, the journal it was read from.
    journal_path: str | None = None
    #: The interrupted run this one finishes (its journal, read), or ``None``.
    resume: JournalState | None = None
    #: The command line after the command name, recorded in the journal for ``--resume``.
    command: tuple[str, ...] = ()

    def describe_options(self) -> dict[str, Any]:
        """The ``options`` object of the report."""
        o = self.options
        return {
            "rate": o.rate,
            "concurrency": o.concurrency,
            "max_attempts": o.retry.max_attempts,
            "wait": o.wait,
            "wait_timeout": o.wait_timeout,
            "stop_type": o.stop_type,
            "dry_run": o.dry_run,
            "rails": o.rails.describe(),
            **self.extra_options,
        }


async def run(
    *,
    compute: ComputeAPI,
    scopes: Collection[str],
    request: RunRequest,
    observer: Observer | None = None,
    confirm: Confirm | None = None,
    handle_signals: bool = False,
    grace: float = DEFAULT_GRACE,
    dispatcher: DispatcherFactory = NativeDispatcher,
) -> Report:
    """Resolve and execute ``request``; return the report (also written if a path is set).

    ``dispatcher`` sends the actions (default: one request per server; the batch API's is
    :func:`bulkstop.execute.batch.batch_dispatcher`).

    Raises :class:`~bulkstop.errors.RefusedError` (nothing sent) when a cap is exceeded or
    ``confirm`` says no, and CloudAccessError subclasses when the selection cannot be resolved.
    An interrupted run returns a report with ``halted_by == "interrupted"``.
    """
    started = utc_now()
    if request.report_path not in (None, "-"):
        check_writable(request.report_path)
    if request.journal_path is not None:
        refuse_foreign_link(request.journal_path, "journal")
    journal = None
    if request.journal_path is not None and not request.options.dry_run:
        journal = Journal(request.journal_path)
    timeline = Timeline()
    engine = Engine(
        compute=compute,
        scopes=scopes,
        options=request.options,
        observer=Observers(journal, timeline, observer),
        dispatcher=dispatcher,
    )
    plan = await engine.resolve(request.selector)
    if request.resume is not None:
        plan = adopt(plan, request.resume, options=request.options)
    refusal = await _refusal(engine, plan, request, confirm)
    if refusal is not None:
        # A dry run still reports its plan, saying the real run would be refused (exit 4).
        engine.halt(refusal)
        if not request.options.dry_run:
            _publish(engine, plan, request, started, timeline)
            raise RefusedError(f"{refusal}; nothing was sent")
    if journal is not None:
        _open_journal(journal, engine, plan, request, started)
    execution = anyio.CancelScope()
    try:
        with first_run_error():
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    tg.start_soon(_watch_signals, engine, execution, grace)
                with execution:
                    await engine.execute(plan)
                tg.cancel_scope.cancel()
    except BulkstopError as exc:
        # A run-wide failure mid-run (Keystone refusing a renewal): the report says why the
        # rest was not attempted, and the error reaches the CLI as itself (one line, exit 3).
        engine.halt(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        # Synchronous on purpose, and deaf to further signals: neither a cancellation (Ctrl-C's
        # grace ending included) nor a third Ctrl-C can cut the report or the journal short.
        with _signals_ignored(handle_signals):
            try:
                report = _publish(engine, plan, request, started, timeline)
            finally:
                if journal is not None:
                    journal.close(halted_by=engine.halted)
    if journal is not None and journal.failed is not None:
        raise RecordError(f"could not write {journal.failed}", report=report)
    return report


async def _refusal(
    engine: Engine, plan: Plan, request: RunRequest, confirm: Confirm | None
) -> str | None:
    """Why the run must not start (a cap; the operator said no), or None."""
    rails = request.options.rails
    totals = None
    if rails.max_percent is not None:
        totals = await engine.census(all_projects=request.selector.all_projects)
    try:
        check_caps(plan.to_send, rails, past=request.options.action.past, totals=totals)
    except RefusedError as exc:
        return str(exc)
    if request.options.dry_run or confirm is None or not plan.to_send:
        return None
    return None if await confirm(plan) else "not confirmed"


def _publish(
    engine: Engine, plan: Plan, request: RunRequest, started: datetime, timeline: Timeline
) -> Report:
    """Build the report from what is known now, merge a resumed run's, and write it."""
    report = _report(engine, plan, request, started, timeline)
    if request.resume is not None:
        report = merge(report, request.resume)
    if request.report_path is not None:
        try:
            write_report(report, request.report_path)
        except OSError as exc:
            where = request.journal_path or (request.resume and request.resume.path)
            kept = f"; the journal {where} has the run" if where else ""
            raise RecordError(
                f"could not write the report {request.report_path}: {exc.strerror or exc}{kept}",
                report=report,
            ) from None
    return report


def _open_journal(
    journal: Journal, engine: Engine, plan: Plan, request: RunRequest, started: datetime
) -> None:
    """Start the journal (or continue the resumed one) before anything is sent.

    A journal that cannot be written later halts dispatch: no request goes out unrecorded
    for long.
    """
    if request.resume is None:
        journal.start(
            action=request.options.action,
            started_at=started,
            selector=_selection(request, plan),
            options=request.describe_options(),
            command=request.command,
            report_path=request.report_path,
            plan=plan,
            on_error=engine.halt,
        )
    else:
        journal.resume(
            request.resume,
            started_at=started,
            options=request.describe_options(),
            command=request.command,
            on_error=engine.halt,
        )


def _report(
    engine: Engine, plan: Plan, request: RunRequest, started: datetime, timeline: Timeline
) -> Report:
    return Report(
        action=request.options.action.verb,
        dry_run=request.options.dry_run,
        started_at=started,
        finished_at=utc_now(),
        servers=engine.final_results(plan),
        selector=_selection(request, plan),
        options=request.describe_options(),
        halted_by=engine.halted,
        requests=dict(engine.gate.sent),
        timeline=timeline.to_dict(),
    )


def _selection(request: RunRequest, plan: Plan) -> dict[str, Any]:
    """The ``selector`` object of the report and the journal header."""
    return {
        **request.selector.describe(),
        "projects": list(plan.scopes),
        "listed": plan.listed,
        "rechecked_out": plan.rechecked_out,
        "dropped_records": plan.dropped_records,
    }


#: What a run watches while it dispatches, and ignores while it writes the report.
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_ignored(active: bool) -> Iterator[None]:
    """Once the signal watcher is gone, SIGINT/SIGTERM would kill the report half-written."""
    if not active:
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in _SIGNALS}
    with _handlers_restored(previous):
        yield


@contextlib.contextmanager
def _handlers_restored(previous: dict[signal.Signals, Any]) -> Iterator[None]:
    """Put ``previous`` signal handlers back on the way out."""
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(s, handler)


async def _watch_signals(engine: Engine, execution: anyio.CancelScope, grace: float) -> None:
    """First SIGINT/SIGTERM: halt dispatch, cancel in-flight work after ``grace``. Second: now."""
    interrupted = False
    # Closing the receiver resets the handlers to Python's defaults (SIGTERM: die at once),
    # not to what was there (the CLI's, which end a run in one line and tell its end).
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    with _handlers_restored(previous), anyio.open_signal_receiver(*previous) as signals:
        async for _ in signals:
            if interrupted:
                execution.cancel()
                continue
            interrupted = True
            engine.halt(INTERRUPTED)
            execution.deadline = min(execution.deadline, anyio.current_time() + grace)
