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
``poll_interval``, ``stop_type`` (``"SOFT"``/``"HARD"``, stops only). Rails: ``dry_run``,
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
(rate, concurrency, retries, ``wait``, ``stop_type``, the caps, canary and breaker; not the
deadline, a moment which has likely passed) unless they are given again.

Errors: :class:`~bulkstop.errors.ParameterError` (naming the parameter) before anything is
sent, the rest of :mod:`bulkstop.errors` as the CLI's exit codes describe; a server that fails
is a result in the report, never an exception.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, ParamSpec, TypedDict, TypeVar, Unpack

import anyio

from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.http import DEFAULT_REQUEST_TIMEOUT, open_compute
from bulkstop.errors import ParameterError, UsageError, literal
from bulkstop.execute.engine import (
    DEFAULT_CONCURRENCY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RATE,
    DEFAULT_WAIT_TIMEOUT,
    Observer,
    RunOptions,
)
from bulkstop.execute.gate import DEFAULT_MAX_ATTEMPTS, RetryPolicy
from bulkstop.identifiers import validate_project_id, validate_server_id, validate_tag
from bulkstop.models import Action, Outcome
from bulkstop.plan.rails import ErrorBudget, Rails
from bulkstop.record.journal import JournalState, journal_path_for, read_journal
from bulkstop.record.planfile import DEFAULT_PLAN_MAX_AGE, load_plan
from bulkstop.record.report import Report, exit_code, read_report, render_summary
from bulkstop.record.resume import recorded_projects, resume_selector, undo_selector
from bulkstop.runner import Confirm, RunRequest, run
from bulkstop.select.idfile import STDIN_PATH, STDIN_SOURCE, IdEntry, load_ids
from bulkstop.select.selector import Selector
from bulkstop.timespec import parse_deadline, parse_duration, utc_now

P = ParamSpec("P")
T = TypeVar("T")

#: A file path, as a string or a :class:`pathlib.Path`.
PathArg = str | os.PathLike[str]
#: One value or several: ``"x"`` is the same as ``["x"]``.
Values = str | Iterable[str]

#: Where a list of ids given as ``ids=[...]`` says it came from, in messages.
IDS_SOURCE: Final = "<ids>"
#: The stop types Nova's os-stop takes.
STOP_TYPES: Final = frozenset({"SOFT", "HARD"})
#: The parameters that choose servers: a plan, a report to undo and a journal have chosen them.
SELECTION_PARAMS: Final = (
    "tags",
    "any_tags",
    "exclude_tags",
    "ids",
    "only",
    "select_all",
    "projects",
    "all_projects",
)


class CommonParams(TypedDict, total=False):
    """The parameters of every run (see the module docstring)."""

    cloud: str | AuthSettings | None
    request_timeout: float
    rate: float
    concurrency: int
    max_attempts: int
    wait: bool
    wait_timeout: float
    poll_interval: float
    max_servers: int | None
    max_percent: float | None
    canary: int
    max_errors: int | str | ErrorBudget | None
    deadline: datetime | timedelta | str | None
    protect_tags: Values
    include_locked: bool
    report: PathArg | None
    observer: Observer | None
    confirm: Confirm | None
    handle_signals: bool
    command: Sequence[str]


class FreshParams(CommonParams, total=False):
    """The parameters of a new run (not a resumed one): :func:`undo`'s."""

    dry_run: bool
    journal: PathArg | bool


class SelectParams(FreshParams, total=False):
    """The parameters of a run that selects its servers: :func:`start`'s."""

    tags: Values
    any_tags: Values
    exclude_tags: Values
    ids: PathArg | Iterable[str] | None
    only: Values | None
    select_all: bool
    projects: Values
    all_projects: bool
    plan: PathArg | None
    plan_max_age: timedelta | str


class StopParams(SelectParams, total=False):
    """:func:`stop`'s parameters."""

    stop_type: str | None


class ResumeParams(CommonParams, total=False):
    """:func:`resume`'s parameters; any not given takes the interrupted run's value."""

    stop_type: str | None


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
    _check_keys("stop", params, StopParams)
    return await _act(Action.STOP, params)


async def start(**params: Unpack[SelectParams]) -> RunResult:
    """Start the selected servers (the parameters of :func:`stop`, without ``stop_type``)."""
    _check_keys("start", params, SelectParams)
    return await _act(Action.START, params)


async def undo(
    stopped: PathArg | Report | RunResult, /, **params: Unpack[FreshParams]
) -> RunResult:
    """Start exactly the servers a stop run stopped (``accepted`` or ``stopped``), never one
    that was off before it; ``stopped`` is that run's report (a path, or what it returned)."""
    _check_keys("undo", params, FreshParams)
    if isinstance(stopped, RunResult):
        report, source = stopped.report, stopped.report_path or "<report>"
    elif isinstance(stopped, Report):
        report, source = stopped, "<report>"
    else:
        source = os.fspath(stopped)
        report = read_report(source)
    selector, projects = undo_selector(
        report,
        source=source,
        protect_tags=_strings(params, "protect_tags"),
        include_locked=params.get("include_locked", False),
    )
    return await _perform(Action.START, selector, projects, params)


async def resume(
    journal: PathArg | RunResult | JournalState, /, **params: Unpack[ResumeParams]
) -> RunResult:
    """Finish an interrupted run from its journal (a path, a :class:`RunResult`, or a journal
    already read): its servers without an outcome, under its options unless given again."""
    _check_keys("resume", params, ResumeParams)
    if isinstance(journal, JournalState):
        state = journal
    else:
        path = journal.journal_path if isinstance(journal, RunResult) else os.fspath(journal)
        if path is None:
            raise ParameterError("{journal}: this run kept no journal; there is nothing to resume")
        state = read_journal(path)
    merged: dict[str, Any] = {**recorded_options(state), **params}
    merged.setdefault("report", state.report_path)
    selector = resume_selector(
        state,
        protect_tags=_strings(merged, "protect_tags"),
        include_locked=merged.get("include_locked", False),
    )
    return await _perform(
        state.action,
        selector,
        recorded_projects(state),
        merged,
        journal_path=state.path,
        resumed=state,
    )


def recorded_options(state: JournalState) -> dict[str, Any]:
    """The options a journal recorded for its latest part, as :func:`resume`'s parameters.

    The deadline is not among them: it was a moment, which has likely passed.
    """
    recorded, rails = state.options, state.options.get("rails") or {}
    found: dict[str, Any] = {
        name: recorded[name]
        for name in (
            "rate",
            "concurrency",
            "max_attempts",
            "wait",
            "wait_timeout",
            "stop_type",
            "request_timeout",
        )
        if recorded.get(name) is not None
    }
    found.update(
        (name, rails[name])
        for name in ("max_servers", "max_percent", "canary", "max_errors")
        if rails.get(name) is not None
    )
    return found


async def run_request(
    request: RunRequest,
    *,
    auth: AuthSettings,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    observer: Observer | None = None,
    confirm: Confirm | None = None,
    handle_signals: bool = False,
    on_open: Callable[[RunRequest], RunRequest] | None = None,
) -> Report:
    """Open the cloud, run ``request`` (:func:`bulkstop.runner.run`), close the cloud.

    The one copy of open → run → close, under :func:`stop` and the rest, for callers that
    build a :class:`~bulkstop.runner.RunRequest` themselves (the tests, to tune retries).
    ``on_open`` may change the request once every project has authenticated (the tests start
    a deadline's clock there, so that a slow Keystone cannot eat into it).
    """
    compute, scopes = await open_compute(
        auth, request_timeout=request_timeout, pool_size=request.options.concurrency
    )
    try:
        return await run(
            compute=compute,
            scopes=scopes,
            request=request if on_open is None else on_open(request),
            observer=observer,
            confirm=confirm,
            handle_signals=handle_signals,
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


def _check_keys(function: str, params: Mapping[str, object], allowed: type) -> None:
    """A TypedDict does not refuse unknown keys at run time: refuse them as Python would."""
    unknown = sorted(set(params) - allowed.__optional_keys__)  # type: ignore[attr-defined]
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")


async def _act(action: Action, params: SelectParams | StopParams) -> RunResult:
    """:func:`stop` and :func:`start`: a selection from the parameters, then the run."""
    given: Mapping[str, Any] = params
    if given.get("plan") is not None:
        selector, projects = _from_plan(action, given)
    else:
        selector, projects = _from_criteria(given)
    return await _perform(action, selector, projects, given)


def _from_criteria(params: Mapping[str, Any]) -> tuple[Selector, tuple[str, ...]]:
    """The selector the criteria describe, and the projects to act in."""
    tags, any_tags = (
        _strings(params, "tags", validate_tag),
        _strings(params, "any_tags", validate_tag),
    )
    ids, source = _ids(params)
    select_all = bool(params.get("select_all"))
    if select_all and (tags or any_tags or ids is not None):
        raise ParameterError("{select_all} cannot be combined with {tags}, {any_tags} or {ids}")
    if not (tags or any_tags or ids is not None or select_all):
        raise ParameterError(
            "nothing selected: give {tags}, {any_tags} or {ids}, "
            "or {select_all} to act on every server in scope"
        )
    projects = _strings(params, "projects", validate_project_id)
    all_projects = _all_projects(params)
    if not projects and ids and not all_projects:
        named = {e.project_id for e in ids}
        if None not in named:
            # The file says where each server lives: act in exactly those projects.
            projects = tuple(sorted(p for p in named if p is not None))
    selector = Selector(
        tags=tags,
        any_tags=any_tags,
        exclude_tags=_strings(params, "exclude_tags", validate_tag),
        protect_tags=_strings(params, "protect_tags", validate_tag),
        include_locked=bool(params.get("include_locked")),
        ids=ids,
        ids_source=source,
        select_all=select_all,
        all_projects=all_projects,
    )
    return selector, projects


def _ids(params: Mapping[str, Any]) -> tuple[tuple[IdEntry, ...] | None, str | None]:
    """``ids`` read (a file) or checked (a list), and where they came from."""
    ids, only = params.get("ids"), _strings(params, "only")
    if ids is None:
        if only:
            raise ParameterError("{only} needs {ids} pointing at a bulkstop report")
        return None, None
    if isinstance(ids, str | os.PathLike):
        path = os.fspath(ids)
        entries = load_ids(path, only=frozenset(only) if only else None)
        return entries, STDIN_SOURCE if path == STDIN_PATH else path
    if only:
        raise ParameterError("{only} needs {ids} pointing at a bulkstop report, not a list")
    try:
        checked = [validate_server_id(str(i)) for i in ids]
    except ValueError as exc:
        raise ParameterError("{ids}: " + literal(exc)) from None
    return tuple(IdEntry(id=i, line=n) for n, i in enumerate(checked, 1)), IDS_SOURCE


def _from_plan(action: Action, params: Mapping[str, Any]) -> tuple[Selector, tuple[str, ...]]:
    """Exactly the plan's servers, under its protections plus any ``protect_tags`` given now."""
    path = os.fspath(params["plan"])
    given = [name for name in SELECTION_PARAMS if params.get(name)]
    if given:
        drop = " ".join(f"{{{name}}}" for name in given)
        raise ParameterError("{plan} already says which servers and projects; drop " + drop)
    max_age = params.get("plan_max_age", DEFAULT_PLAN_MAX_AGE)
    if isinstance(max_age, str):
        try:
            max_age = parse_duration(max_age)
        except ValueError as exc:
            raise ParameterError("{plan_max_age}: " + literal(exc)) from None
    plan = load_plan(path, max_age=max_age, now=utc_now())
    if plan.action != action.verb:
        raise UsageError(f"{path} is a plan to {plan.action}, not to {action.verb}")
    protect = _strings(params, "protect_tags", validate_tag)
    selector = Selector(
        ids=plan.ids,
        ids_source=path,
        exclude_tags=plan.exclude_tags,
        protect_tags=tuple(dict.fromkeys((*plan.protect_tags, *protect))),
        include_locked=plan.include_locked or bool(params.get("include_locked")),
        all_projects=plan.all_projects,
    )
    return selector, () if plan.all_projects else plan.projects


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
        journal_path = _journal_path(params.get("journal", True), report_path)
    options = _options(action, params)
    request_timeout = params.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
    plan = params.get("plan")
    request = RunRequest(
        selector=selector,
        options=options,
        report_path=report_path,
        extra_options={
            "request_timeout": request_timeout,
            "plan": None if plan is None else os.fspath(plan),
        },
        journal_path=journal_path,
        resume=resumed,
        command=tuple(params.get("command", ())),
    )
    result = await run_request(
        request,
        auth=_auth(params, tuple(projects), all_projects=selector.all_projects),
        request_timeout=request_timeout,
        observer=params.get("observer"),
        confirm=params.get("confirm"),
        handle_signals=params.get("handle_signals", False),
    )
    return RunResult(
        report=result,
        report_path=report_path,
        journal_path=None if options.dry_run else journal_path,
    )


def _journal_path(journal: PathArg | bool, report_path: str | None) -> str | None:
    """``journal=True``: beside the report (none without a report file); a path: there."""
    if journal is True:
        return None if report_path in (None, STDIN_PATH) else journal_path_for(str(report_path))
    if journal is False:
        return None
    return os.fspath(journal)


def _options(action: Action, params: Mapping[str, Any]) -> RunOptions:
    """How the run acts, from the parameters (the CLI's defaults where not given)."""
    stop_type = params.get("stop_type")
    if stop_type is not None:
        if action is not Action.STOP:
            raise ParameterError("{stop_type} applies to stops only")
        stop_type = str(stop_type).upper()
        if stop_type not in STOP_TYPES:
            raise ParameterError("{stop_type} must be SOFT or HARD, not " + literal(stop_type))
    rails = Rails(
        max_servers=params.get("max_servers"),
        max_percent=params.get("max_percent"),
        canary=params.get("canary", 0),
        max_errors=_error_budget(params.get("max_errors")),
        deadline=_deadline(params.get("deadline")),
    )
    return RunOptions(
        action=action,
        rate=params.get("rate", DEFAULT_RATE),
        concurrency=params.get("concurrency", DEFAULT_CONCURRENCY),
        retry=RetryPolicy(max_attempts=params.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
        wait=params.get("wait", False),
        wait_timeout=params.get("wait_timeout", DEFAULT_WAIT_TIMEOUT),
        poll_interval=params.get("poll_interval", DEFAULT_POLL_INTERVAL),
        stop_type=stop_type,
        dry_run=params.get("dry_run", False),
        rails=rails,
    )


def _error_budget(value: int | str | ErrorBudget | None) -> ErrorBudget | None:
    if value is None or isinstance(value, ErrorBudget):
        return value
    try:
        return ErrorBudget.parse(str(value))
    except ValueError as exc:
        raise ParameterError("{max_errors}: " + literal(exc)) from None


def _deadline(value: datetime | timedelta | str | None) -> datetime | None:
    """A deadline as a moment: given as one, as a time from now, or as the CLI's text."""
    if value is None:
        return None
    now = utc_now()
    if isinstance(value, timedelta):
        value = now + value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ParameterError("{deadline} needs a timezone (e.g. datetime.UTC)")
        if value <= now:
            raise ParameterError("{deadline} " + literal(value.isoformat()) + " has passed")
        return value
    try:
        return parse_deadline(value, now=now)
    except ValueError as exc:
        raise ParameterError("{deadline}: " + literal(exc)) from None


def _all_projects(params: Mapping[str, Any]) -> bool:
    """``all_projects``, from the parameter or the settings object (set once, used twice)."""
    cloud = params.get("cloud")
    return bool(params.get("all_projects")) or (
        isinstance(cloud, AuthSettings) and cloud.all_projects
    )


def _auth(
    params: Mapping[str, Any], projects: tuple[str, ...], *, all_projects: bool
) -> AuthSettings:
    """The credentials: a clouds.yaml entry's name or a settings object, scoped to the run."""
    cloud = params.get("cloud")
    settings = cloud if isinstance(cloud, AuthSettings) else AuthSettings(os_cloud=cloud)
    projects = projects or settings.projects
    if all_projects and projects:
        raise ParameterError("{all_projects} and {projects} exclude each other")
    return dataclasses.replace(settings, projects=projects, all_projects=all_projects)


def _strings(
    params: Mapping[str, Any], name: str, check: Callable[[str], str] | None = None
) -> tuple[str, ...]:
    """A parameter that takes one string or several, as a tuple, each checked."""
    value = params.get(name) or ()
    values = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    if check is None:
        return values
    try:
        return tuple(check(v) for v in values)
    except ValueError as exc:
        raise ParameterError(f"{{{name}}}: " + literal(exc)) from None
