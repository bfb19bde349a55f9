"""The front door: stop, start, resume and undo servers from Python.

::

    import bulkstop

    result = bulkstop.run_stop(
        ids="evac.csv", projects=["9a8b..."], cloud="prod", report="evac.json", wait=True
    )
    print(result.summary)                  # what the CLI prints
    bulkstop.run_resume(result)            # finish it, had it been interrupted
    bulkstop.run_undo(result, wait=True)   # start again exactly what it stopped

**Why this shape.** A run is one operation, as a request is in httpx: ``httpx.get(url)`` needs
no client to manage, and neither does ``await bulkstop.stop(tags=["x"])``. Each run
authenticates every project it acts in, sizes its connection pool to its ``concurrency``, and
closes everything before it returns, so the returned result is final and nothing is left open;
a ``Client`` object would promise state shared between runs that there is none of. The
coroutines :func:`stop`, :func:`start`, :func:`resume` and :func:`undo` are the API (call them
from any anyio or asyncio program); :func:`run_stop`, :func:`run_start`, :func:`run_resume` and
:func:`run_undo` are their blocking twins for plain scripts, made from them by one decorator,
so a twin can never take other parameters than its coroutine.

**Parameters** are keyword arguments, every one optional, with the CLI's defaults (the same
named constants). A string is one value wherever a list is expected (``tags="x"``).

What (:func:`stop`, :func:`start`): ``tags``, ``any_tags``, ``exclude_tags`` (all/any/none of
these tags); ``ids`` (an ID file's path in any format the CLI reads, ``"-"`` for standard
input, or a list of server ids); ``only`` (with a report as ``ids``: the outcomes to keep);
``select_all=True`` (every server in scope); ``plan`` (a dry run's report: exactly its servers,
if younger than ``plan_max_age``). Protections, everywhere: ``protect_tags``,
``include_locked``.

Where: ``cloud`` (a clouds.yaml entry's name, or an :class:`~bulkstop.cloud.auth.AuthSettings`;
default: ``$OS_CLOUD`` or the ``OS_*`` environment); ``projects`` (project ids; default: those an
ID file names, else the credentials' own); ``all_projects=True`` (admin: every project, through
the credentials' own); ``request_timeout``.

How: ``rate``, ``concurrency``, ``max_attempts``, ``wait``, ``wait_timeout``,
``poll_interval``, ``stop_type`` (``"SOFT"``/``"HARD"``, stops only). Huawei's batch API:
``api="batch"`` (default ``"native"``: one request per server), ``service`` (``"auto"``,
``"bms"``, ``"ecs"``), ``batch_size`` (1 to 1000, default 1000), ``batch_endpoint`` (a URL
template with ``{project_id}`` and ``{service}``). Rails: ``dry_run``,
``max_servers``, ``max_percent``, ``canary``, ``max_errors`` (``5``, ``"2%"``), ``deadline``
(a ``datetime``, a ``timedelta`` from now, or the CLI's ``"25m"``/ISO text).

Records (files only where asked): ``report`` (a path, ``"-"`` for stdout; default none);
``journal`` (``True``: beside the report, ``run.json`` → ``run.journal.jsonl``, as the CLI
does; ``False``: none; or a path). The returned :class:`RunResult` carries both paths.

Hooks: ``observer`` (an :class:`~bulkstop.execute.engine.Observer`: progress, metrics),
``confirm`` (``async (plan) -> bool``, asked before anything is sent), ``handle_signals``
(SIGINT/SIGTERM halt the run as in the CLI), ``command`` (recorded in the journal for the CLI's
``--resume``; scripts leave it out). What happens at the end of a run is the
:class:`RunResult` itself: hand it to whatever reports on runs.

:func:`resume` takes a journal and :func:`undo` a stop run's report (a path or a
:class:`RunResult`); neither takes a selection. A resumed run repeats the recorded options
(rate, concurrency, retries, ``wait``, ``stop_type``, the batch API's, the caps, canary and
breaker; not the deadline, a moment which has likely passed) unless they are given again.

Errors: :class:`~bulkstop.errors.ParameterError` (naming the parameter) before anything is
sent, the rest of :mod:`bulkstop.errors` as the CLI's exit codes describe; a server that fails
is a result in the report, never an exception. A run whose journal or report the disk refused
raises :class:`~bulkstop.errors.RecordError` at its end, with the run's :class:`RunResult` as
its ``result`` (resume from its ``journal_path`` once the disk is fixed).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, Unpack

import anyio
import anyio.to_thread

from bulkstop import arguments
from bulkstop.arguments import FreshParams, PathArg, ResumeParams, SelectParams, StopParams
from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.batch import HttpBatch
from bulkstop.cloud.http import open_compute
from bulkstop.errors import ParameterError, RecordError
from bulkstop.execute.batch import BatchSettings, batch_dispatcher
from bulkstop.execute.dispatch import NativeDispatcher
from bulkstop.execute.engine import DispatcherFactory, Observer
from bulkstop.limits import DEFAULT_REQUEST_TIMEOUT
from bulkstop.models import Action, Outcome
from bulkstop.record.journal import JournalState, read_journal
from bulkstop.record.report import Report, exit_code, read_report, render_summary
from bulkstop.record.resume import recorded_projects, resume_selector, undo_selector
from bulkstop.runner import Confirm, RunRequest, run
from bulkstop.select.selector import Selector

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What a run returns: its report, and where its report and journal were written.

    It is what :func:`resume` (from ``journal_path``) and :func:`undo` (from ``report``) take,
    and what anything observing the end of a run (metrics, notifications) consumes.
    """

    report: Report
    #: Where the report was written (``-``: stdout), or ``None``.
    report_path: str | None
    #: The journal the run kept (resume with it), or ``None`` (none asked for; a dry run).
    journal_path: str | None

    @property
    def summary(self) -> str:
        """The human summary the CLI prints after a run."""
        return render_summary(self.report)

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this run (0 all well, 1 failures, 4 halted, 130 interrupted)."""
        return exit_code(self.report)

    @property
    def resumable(self) -> bool:
        """A journal was kept and the run halted or left servers ``not_attempted``."""
        if self.journal_path is None:
            return False
        return self.report.halted_by is not None or any(
            s.outcome is Outcome.NOT_ATTEMPTED for s in self.report.servers
        )


async def stop(**params: Unpack[StopParams]) -> RunResult:
    """Stop the selected servers; the parameters are in the module docstring."""
    arguments.check_keys("stop", params, StopParams)
    return await _act(Action.STOP, params)


async def start(**params: Unpack[SelectParams]) -> RunResult:
    """Start the selected servers (the parameters of :func:`stop`, without ``stop_type``)."""
    arguments.check_keys("start", params, SelectParams)
    return await _act(Action.START, params)


async def undo(
    stopped: PathArg | Report | RunResult, /, **params: Unpack[FreshParams]
) -> RunResult:
    """Start exactly the servers a stop run stopped (``accepted`` or ``stopped``), never one
    that was off before it; ``stopped`` is that run's report (a path, or what it returned)."""
    arguments.check_keys("undo", params, FreshParams)
    if isinstance(stopped, RunResult):
        report, source = stopped.report, stopped.report_path or "<report>"
    elif isinstance(stopped, Report):
        report, source = stopped, "<report>"
    else:
        source = os.fspath(stopped)
        report = read_report(source)
    selector, projects = undo_selector(report, source=source, **arguments.protections(params))
    return await _perform(Action.START, selector, projects, params)


async def resume(
    journal: PathArg | RunResult | JournalState, /, **params: Unpack[ResumeParams]
) -> RunResult:
    """Finish an interrupted run from its journal (a path, a :class:`RunResult`, or a journal
    already read): its servers without an outcome, under its options unless given again."""
    arguments.check_keys("resume", params, ResumeParams)
    if isinstance(journal, JournalState):
        state = journal
    else:
        path = journal.journal_path if isinstance(journal, RunResult) else os.fspath(journal)
        if path is None:
            raise ParameterError("{journal}: this run kept no journal; there is nothing to resume")
        state = read_journal(path)
    merged: dict[str, Any] = {**arguments.recorded_options(state), **params}
    merged.setdefault("report", state.report_path)
    merged["cloud"] = arguments.recorded_cloud(state, params.get("cloud"))
    if state.jobs and merged.get("api") != "batch":
        raise ParameterError(
            "{journal}: its run sent batch jobs, which only the batch API can poll: "
            "resume it with {api} batch"
        )
    selector = resume_selector(state, **arguments.protections(merged))
    return await _perform(
        state.action,
        selector,
        recorded_projects(state),
        merged,
        journal_path=state.path,
        resumed=state,
    )


async def run_request(
    request: RunRequest,
    *,
    auth: AuthSettings,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    observer: Observer | None = None,
    confirm: Confirm | None = None,
    handle_signals: bool = False,
    on_open: Callable[[RunRequest], RunRequest] | None = None,
    batch: BatchSettings | None = None,
) -> Report:
    """Open the cloud, run ``request`` (:func:`bulkstop.runner.run`), close the cloud.

    The one copy of open → run → close, under :func:`stop` and the rest, for callers that
    build a :class:`~bulkstop.runner.RunRequest` themselves (the tests, to tune retries).
    ``on_open`` may change the request once every project has authenticated (the tests start
    a deadline's clock there, so that a slow Keystone cannot eat into it). ``batch`` sends
    through Huawei's batch API (a resumed run polls the jobs its journal recorded).
    """
    compute, scopes = await open_compute(
        auth, request_timeout=request_timeout, pool_size=request.options.concurrency
    )
    dispatcher: DispatcherFactory = NativeDispatcher
    if batch is not None:
        endpoints = HttpBatch(
            compute, region=auth.region_name or compute.region, template=batch.endpoint
        )
        jobs = request.resume.jobs if request.resume is not None else None
        dispatcher = batch_dispatcher(endpoints, batch, jobs=jobs)
    try:
        return await run(
            compute=compute,
            scopes=scopes,
            request=request if on_open is None else on_open(request),
            observer=observer,
            confirm=confirm,
            handle_signals=handle_signals,
            dispatcher=dispatcher,
        )
    finally:
        await compute.aclose()


def _blocking(coroutine: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """The blocking twin of ``coroutine``: the same parameters, run to the end by anyio."""

    @functools.wraps(coroutine)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return anyio.run(functools.partial(coroutine, *args, **kwargs))

    twin.__name__ = twin.__qualname__ = f"run_{coroutine.__name__}"
    twin.__doc__ = (
        f"Blocking :func:`{coroutine.__name__}`, for scripts without an event loop (not "
        f"callable from inside one).\n\n{coroutine.__doc__}"
    )
    return twin


run_stop = _blocking(stop)
run_start = _blocking(start)
run_resume = _blocking(resume)
run_undo = _blocking(undo)


async def _act(action: Action, params: SelectParams | StopParams) -> RunResult:
    """:func:`stop` and :func:`start`: a selection from the parameters, then the run."""
    given: Mapping[str, Any] = params
    if given.get("plan") is not None:
        read = functools.partial(arguments.from_plan, action, given)
    else:
        read = functools.partial(arguments.from_criteria, given)
    # Files are read off the event loop: a FIFO without a writer, or a slow pipe on standard
    # input, must leave the run cancellable (Ctrl-C is exit 130, not a hang).
    selector, projects = await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
    return await _perform(action, selector, projects, given)


async def _perform(
    action: Action,
    selector: Selector,
    projects: Collection[str],
    params: Mapping[str, Any],
    *,
    journal_path: str | None = None,
    resumed: JournalState | None = None,
) -> RunResult:
    """Build the run's request from the parameters, run it, and say where its records are."""
    report = params.get("report")
    report_path = None if report is None else os.fspath(report)
    if resumed is None:
        journal_path = arguments.journal_path(params.get("journal", True), report_path)
    options = arguments.run_options(action, params)
    batch = arguments.batch_settings(params)
    request_timeout = params.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
    plan = params.get("plan")
    auth = arguments.auth_settings(params, tuple(projects), all_projects=selector.all_projects)
    request = RunRequest(
        selector=selector,
        options=options,
        report_path=report_path,
        extra_options={
            "request_timeout": request_timeout,
            "plan": None if plan is None else os.fspath(plan),
            **arguments.batch_options(batch),
            **arguments.endpoint_options(auth),
        },
        journal_path=journal_path,
        resume=resumed,
        command=tuple(params.get("command", ())),
    )
    kept = None if options.dry_run else journal_path
    try:
        result = await run_request(
            request,
            auth=auth,
            request_timeout=request_timeout,
            observer=params.get("observer"),
            confirm=params.get("confirm"),
            handle_signals=params.get("handle_signals", False),
            batch=batch,
        )
    except RecordError as exc:
        # The run ended but is on record only in part: its result says where to resume from.
        if isinstance(exc.report, Report):
            exc.result = RunResult(report=exc.report, report_path=report_path, journal_path=kept)
        raise
    return RunResult(report=result, report_path=report_path, journal_path=kept)
