"""The Python API's parameters: their types, and the records a run is built from them.

:mod:`bulkstop.api` takes keyword arguments (documented there); this module turns them into
what :func:`bulkstop.runner.run` takes — a :class:`~bulkstop.select.selector.Selector`, the
projects, :class:`~bulkstop.execute.engine.RunOptions`, :class:`~bulkstop.cloud.auth.
AuthSettings`, the journal's path — and refuses, with a
:class:`~bulkstop.errors.ParameterError` naming the parameter, what cannot work. A parameter
not given takes the CLI's default (the same named constants).

Why one module of ~430 lines: it is the one translation of the public parameters into the
library's records; the parameter tables, their checks and their defaults must not drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypedDict

from bulkstop.cloud.auth import AuthSettings
from bulkstop.errors import ParameterError, UsageError, literal
from bulkstop.execute.batch import APIS, DEFAULT_BATCH_SIZE, ROUTINGS, BatchSettings
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
from bulkstop.record.journal import JournalState, journal_path_for
from bulkstop.record.planfile import DEFAULT_PLAN_MAX_AGE, load_plan
from bulkstop.redaction import MASK, redact
from bulkstop.runner import Confirm
from bulkstop.select.idfile import STDIN_PATH, STDIN_SOURCE, IdEntry, load_ids
from bulkstop.select.selector import Selector
from bulkstop.timespec import parse_deadline, parse_duration, utc_now

#: A file path, as a string or a :class:`pathlib.Path`.
PathArg = str | os.PathLike[str]
#: One value or several: ``"x"`` is the same as ``["x"]``.
Values = str | Iterable[str]

#: What ``only`` may name.
OUTCOME_NAMES: Final = frozenset(o.value for o in Outcome)
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
    """The parameters of every run (:mod:`bulkstop.api` says what each does)."""

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
    api: str
    service: str
    batch_size: int
    batch_endpoint: str | None


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
            *BATCH_PARAMS,
        )
        if recorded.get(name) is not None
    }
    if _unmasked(found.get("batch_endpoint")) is None:
        found.pop("batch_endpoint", None)
    found.update(
        (name, rails[name])
        for name in ("max_servers", "max_percent", "canary", "max_errors")
        if rails.get(name) is not None
    )
    return found


#: The batch API's parameters (besides ``stop_type``), recorded in the report's options.
BATCH_PARAMS: Final = ("api", "service", "batch_size", "batch_endpoint")


def batch_settings(params: Mapping[str, Any]) -> BatchSettings | None:
    """``api="batch"``'s settings, or None for one request per server (``api="native"``)."""
    api = params.get("api") or "native"
    if api not in APIS:
        raise ParameterError("{api} must be native or batch, not " + literal(api))
    given = {name: params[name] for name in BATCH_PARAMS[1:] if params.get(name) is not None}
    if api == "native":
        if given:
            names = " ".join(f"{{{name}}}" for name in given)
            raise ParameterError(names + " need(s) {api} batch")
        return None
    service = given.get("service", "auto")
    if service not in ROUTINGS:
        raise ParameterError("{service} must be auto, bms or ecs, not " + literal(service))
    try:
        return BatchSettings(
            service=service,
            batch_size=given.get("batch_size", DEFAULT_BATCH_SIZE),
            endpoint=given.get("batch_endpoint"),
        )
    except ValueError as exc:
        raise ParameterError("{batch_size}: " + literal(exc)) from None


def batch_options(settings: BatchSettings | None) -> dict[str, Any]:
    """The batch parameters as the report's ``options`` record them (and resume reads them)."""
    if settings is None:
        return {"api": "native"}
    return {
        "api": "batch",
        "service": settings.service,
        "batch_size": settings.batch_size,
        "batch_endpoint": None if settings.endpoint is None else redact(settings.endpoint),
    }


def endpoint_options(auth: AuthSettings) -> dict[str, Any]:
    """The endpoint and region a run was given, as the report's ``options`` record them
    (credentials in a URL masked: such an endpoint must be given again to resume)."""
    given = {"endpoint": auth.endpoint, "region_name": auth.region_name}
    return {name: redact(value) for name, value in given.items() if value is not None}


def recorded_cloud(state: JournalState, cloud: str | AuthSettings | None) -> AuthSettings:
    """``cloud`` for a resumed run: the endpoint and region the run was given, unless
    ``cloud`` is a settings object (which says everything itself)."""
    if isinstance(cloud, AuthSettings):
        return cloud
    recorded = state.options
    return AuthSettings(
        os_cloud=cloud,
        endpoint=_unmasked(recorded.get("endpoint")),
        region_name=recorded.get("region_name") or None,
    )


def _unmasked(url: object) -> str | None:
    """A recorded URL, unless it was recorded with its credentials masked (then unusable)."""
    if not isinstance(url, str) or not url or f"{MASK}@" in url:
        return None
    return url


def from_criteria(params: Mapping[str, Any]) -> tuple[Selector, tuple[str, ...]]:
    """The selector the criteria describe, and the projects to act in."""
    tags, any_tags = (
        strings(params, "tags", validate_tag),
        strings(params, "any_tags", validate_tag),
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
    projects = strings(params, "projects", validate_project_id)
    all_projects = all_projects_of(params)
    if not projects and ids and not all_projects:
        named = {e.project_id for e in ids}
        if None not in named:
            # The file says where each server lives: act in exactly those projects.
            projects = tuple(sorted(p for p in named if p is not None))
    selector = Selector(
        tags=tags,
        any_tags=any_tags,
        exclude_tags=strings(params, "exclude_tags", validate_tag),
        protect_tags=strings(params, "protect_tags", validate_tag),
        include_locked=bool(params.get("include_locked")),
        ids=ids,
        ids_source=source,
        select_all=select_all,
        all_projects=all_projects,
    )
    return selector, projects


def protections(params: Mapping[str, Any]) -> dict[str, Any]:
    """``protect_tags`` and ``include_locked``, for a selection made elsewhere (a journal's, a
    report's to undo)."""
    return {
        "protect_tags": strings(params, "protect_tags", validate_tag),
        "include_locked": bool(params.get("include_locked")),
    }


def _ids(params: Mapping[str, Any]) -> tuple[tuple[IdEntry, ...] | None, str | None]:
    """``ids`` read (a file) or checked (a list), and where they came from."""
    ids, only = params.get("ids"), _outcomes(params)
    if only is not None and (ids is None or not isinstance(ids, str | os.PathLike)):
        raise ParameterError("{only} needs {ids} pointing at a bulkstop report")
    if ids is None:
        return None, None
    if isinstance(ids, str | os.PathLike):
        path = os.fspath(ids)
        return load_ids(path, only=only), STDIN_SOURCE if path == STDIN_PATH else path
    try:
        checked = [validate_server_id(str(i)) for i in ids]
    except ValueError as exc:
        raise ParameterError("{ids}: " + literal(exc)) from None
    return tuple(IdEntry(id=i, line=n) for n, i in enumerate(checked, 1)), IDS_SOURCE


def _outcomes(params: Mapping[str, Any]) -> frozenset[str] | None:
    """``only``: the outcomes to keep of a report given as ``ids`` (``None``: all)."""
    if params.get("only") is None:
        return None
    only = frozenset(strings(params, "only"))
    unknown = sorted(only - OUTCOME_NAMES)
    if unknown or not only:
        problem = f"unknown outcome(s) {', '.join(unknown)}" if unknown else "no outcome given"
        valid = ", ".join(o.value for o in Outcome)
        raise ParameterError("{only}: " + literal(f"{problem}; valid outcomes: {valid}"))
    return only


def from_plan(action: Action, params: Mapping[str, Any]) -> tuple[Selector, tuple[str, ...]]:
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
    protect = strings(params, "protect_tags", validate_tag)
    selector = Selector(
        ids=plan.ids,
        ids_source=path,
        exclude_tags=plan.exclude_tags,
        protect_tags=tuple(dict.fromkeys((*plan.protect_tags, *protect))),
        include_locked=plan.include_locked or bool(params.get("include_locked")),
        all_projects=plan.all_projects,
    )
    return selector, () if plan.all_projects else plan.projects


def journal_path(journal: PathArg | bool, report_path: str | None) -> str | None:
    """``journal=True``: beside the report (none without a report file); a path: there."""
    if journal is True:
        return None if report_path in (None, STDIN_PATH) else journal_path_for(str(report_path))
    if journal is False:
        return None
    return os.fspath(journal)


def run_options(action: Action, params: Mapping[str, Any]) -> RunOptions:
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


def all_projects_of(params: Mapping[str, Any]) -> bool:
    """``all_projects``, from the parameter or the settings object (set once, used twice)."""
    cloud = params.get("cloud")
    return bool(params.get("all_projects")) or (
        isinstance(cloud, AuthSettings) and cloud.all_projects
    )


def auth_settings(
    params: Mapping[str, Any], projects: tuple[str, ...], *, all_projects: bool
) -> AuthSettings:
    """The credentials: a clouds.yaml entry's name or a settings object, scoped to the run."""
    cloud = params.get("cloud")
    settings = cloud if isinstance(cloud, AuthSettings) else AuthSettings(os_cloud=cloud)
    projects = projects or settings.projects
    if all_projects and projects:
        raise ParameterError("{all_projects} and {projects} exclude each other")
    return dataclasses.replace(settings, projects=projects, all_projects=all_projects)


def strings(
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


def check_keys(function: str, params: Mapping[str, object], allowed: type) -> None:
    """A TypedDict does not refuse unknown keys at run time: refuse them as Python would."""
    unknown = sorted(set(params) - allowed.__optional_keys__)  # type: ignore[attr-defined]
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
