"""``bulkstop stop`` and ``start``: build a run request from the options, drive the run, print,
exit."""

from __future__ import annotations

import collections
import functools
import sys
from datetime import datetime
from typing import Any, Final

import anyio
import anyio.to_thread
import click

from bulkstop.cli import log
from bulkstop.cli.console import fail, run_async
from bulkstop.cli.log import JsonProgress
from bulkstop.cli.options import action_options, default_report_path, refuse_selection
from bulkstop.cli.progress import Progress
from bulkstop.cli.recovery import (
    RecordedCommand,
    Resumed,
    command_line,
    from_report,
    journal_path,
    recovery_options,
    resume_hint,
    resume_run,
    unfinished_journal,
)
from bulkstop.cli.unattended import after_run
from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.http import open_compute
from bulkstop.errors import BulkstopError, UsageError
from bulkstop.execute.engine import Plan, RunOptions, first_run_error
from bulkstop.execute.gate import RetryPolicy
from bulkstop.models import Action
from bulkstop.plan.rails import Rails
from bulkstop.record.planfile import load_plan
from bulkstop.record.report import Report, exit_code, render_summary
from bulkstop.runner import RunRequest, run
from bulkstop.select.idfile import IdEntry, load_ids
from bulkstop.select.selector import Selector
from bulkstop.timespec import parse_deadline, utc_now

#: How many example server names the confirmation prompt shows per project.
EXAMPLES_SHOWN: Final = 3


@click.command(cls=RecordedCommand)
@action_options(Action.STOP)
@recovery_options
@click.option(
    "--stop-type",
    type=click.Choice(["SOFT", "HARD"], case_sensitive=False),
    help="Sent as os-stop.type (default: not sent; Huawei ignores it today).",
)
def stop(**params: Any) -> None:
    """Stop every selected server, under per-project rate limits.

    \b
    Examples:
      # maintenance window: everything tagged for it, waiting for SHUTOFF
      bulkstop stop --tag maint=2026-11-28 --wait --yes
      # nightly cost saving from cron, never more than 500, report kept
      bulkstop stop --tag nightly-stop --exclude-tag keep-on --max-servers 500 \\
          --yes --quiet --report /var/log/bulkstop/$(date +%F).json  # in crontab: \\%F
      # evacuation: exactly these servers, in two projects
      bulkstop stop --ids-file evacuate.csv --project 1f2e... --project 9a8b... --yes
    """
    stop_type = params.pop("stop_type")
    _action_command(Action.STOP, params, stop_type=stop_type.upper() if stop_type else None)


@click.command(cls=RecordedCommand)
@action_options(Action.START)
@recovery_options
@click.option(
    "--from-report",
    "from_report",
    metavar="REPORT",
    help="Undo a stop run: start exactly the servers it stopped (outcome accepted or "
    "stopped), not those that were already stopped before it.",
)
def start(**params: Any) -> None:
    """Start every selected server, under per-project rate limits (the undo of a stop).

    \b
    Examples:
      # undo last night's stop: exactly the servers it stopped, waiting for ACTIVE
      bulkstop start --from-report bulkstop-report-20261128T020000Z.json --wait --yes
      # finish an interrupted start
      bulkstop start --resume bulkstop-start-report-20261128T060000Z.journal.jsonl --yes
    """
    _action_command(Action.START, params, stop_type=None)


def _action_command(action: Action, params: dict[str, Any], *, stop_type: str | None) -> None:
    """Shared body of ``stop`` and ``start``."""
    with after_run(action, params) as ending:
        try:
            request, auth = _build_request(action, params, stop_type=stop_type)
            ending.report_path = request.report_path
            _check_confirmable(action, params)
        except BulkstopError as exc:
            fail(exc)
        log.event(
            "run_start",
            action=action.verb,
            dry_run=request.options.dry_run,
            selector=request.selector.describe(),
            options=request.describe_options(),
            report_path=request.report_path,
            journal_path=request.journal_path,
            resumed=request.resume is not None,
        )
        report = run_async(
            functools.partial(
                _execute,
                request=request,
                auth=auth,
                request_timeout=params["request_timeout"],
                quiet=params["quiet"],
                ask=not params["yes"],
            )
        )
        ending.report = report
        _print_summary(request, report)
        sys.exit(exit_code(report))


def _check_confirmable(action: Action, params: dict[str, Any]) -> None:
    """Without --yes, a prompt needs a terminal (and a human reader: no prompt in JSON mode)."""
    if params["yes"] or params["dry_run"]:
        return
    if log.is_json():
        raise UsageError(
            f"refusing to {action.verb} servers without confirmation: JSON log mode never "
            "prompts; pass --yes (or --dry-run to look first)"
        )
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            f"refusing to {action.verb} servers without confirmation: there is no terminal "
            "to ask on; pass --yes (or --dry-run to look first)"
        )


def _print_summary(request: RunRequest, report: Report) -> None:
    """The summary, where the report is, and how to finish a halted run."""
    hint = resume_hint(request, report)
    if log.is_json():
        summary = report.to_dict()
        log.event(
            "summary",
            level="info" if exit_code(report) == 0 else "warning",
            action=report.action,
            dry_run=report.dry_run,
            duration=round((report.finished_at - report.started_at).total_seconds(), 3),
            halted_by=report.halted_by,
            requests=dict(report.requests),
            **summary["summary"],
            projects=summary["projects"],
            exit_code=exit_code(report),
            report_path=request.report_path,
            journal_path=request.journal_path,
            hint=hint,
        )
        return
    click.echo(render_summary(report), err=True)
    if request.report_path not in (None, "-"):
        click.echo(f"report: {request.report_path}", err=True)
    if hint:
        click.echo(hint, err=True)


def _build_request(
    action: Action, params: dict[str, Any], *, stop_type: str | None
) -> tuple[RunRequest, AuthSettings]:
    now = utc_now()
    resumed: Resumed | None = None
    if params["resume_unfinished"] and not (params["resume"] or params["dry_run"]):
        params["resume"] = unfinished_journal(action, params)
    if params["resume"]:
        resumed = resume_run(action, params)
        selector, projects = resumed.selector, resumed.projects
        stop_type = stop_type or resumed.stop_type
    elif params.get("from_report"):
        selector, projects = from_report(params)
    elif params["plan_path"]:
        selector, projects = _selector_from_plan(action, params, now=now)
    else:
        selector, projects = _selector_from_options(params)
    deadline = None
    if params["deadline"]:
        try:
            deadline = parse_deadline(params["deadline"], now=now)
        except ValueError as exc:
            raise UsageError(f"--deadline: {exc}") from None
    rails = Rails(
        max_servers=params["max_servers"],
        max_percent=params["max_percent"],
        canary=params["canary"],
        max_errors=params["max_errors"],
        deadline=deadline,
    )
    options = RunOptions(
        action=action,
        rate=params["rate"],
        concurrency=params["concurrency"],
        retry=RetryPolicy(max_attempts=params["max_attempts"]),
        wait=params["wait"],
        wait_timeout=params["wait_timeout"],
        stop_type=stop_type,
        dry_run=params["dry_run"],
        rails=rails,
    )
    report_path = params["report_path"] or default_report_path(action)
    request = RunRequest(
        selector=selector,
        options=options,
        report_path=report_path,
        extra_options={"request_timeout": params["request_timeout"], "plan": params["plan_path"]},
        journal_path=journal_path(action, params, report_path),
        resume=resumed.state if resumed else None,
        command=command_line(),
    )
    auth = AuthSettings(
        os_cloud=params["os_cloud"],
        projects=projects,
        endpoint=params["endpoint"],
        region_name=params["region"],
        all_projects=selector.all_projects,
    )
    return request, auth


def _selector_from_options(params: dict[str, Any]) -> tuple[Selector, tuple[str, ...]]:
    """The selector the criteria options describe, and the projects to act in."""
    ids: tuple[IdEntry, ...] | None = None
    source = params["ids_file"]
    only = params["only"]
    if only and not source:
        raise UsageError("--only needs --ids-file pointing at a bulkstop report")
    if source:
        wanted = frozenset(o.strip() for o in only.split(",") if o.strip()) if only else None
        ids = load_ids(source, only=wanted)
    projects: tuple[str, ...] = params["projects"]
    if not projects and ids and not params["all_projects"]:
        named = {e.project_id for e in ids}
        if None not in named:
            # The file says where each server lives: act in exactly those projects.
            projects = tuple(sorted(p for p in named if p is not None))
    selector = Selector(
        tags=params["tags"],
        any_tags=params["any_tags"],
        exclude_tags=params["exclude_tags"],
        protect_tags=params["protect_tags"],
        include_locked=params["include_locked"],
        ids=ids,
        ids_source="<stdin>" if source == "-" else source,
        select_all=params["select_all"],
        all_projects=params["all_projects"],
    )
    return selector, projects


def _selector_from_plan(
    action: Action, params: dict[str, Any], *, now: datetime
) -> tuple[Selector, tuple[str, ...]]:
    """Exactly the plan's servers, under its protections plus any --protect-tag given now."""
    refuse_selection(params, source="--plan")
    plan = load_plan(params["plan_path"], max_age=params["plan_max_age"], now=now)
    if plan.action != action.verb:
        raise UsageError(f"{params['plan_path']} is a plan to {plan.action}, not to {action.verb}")
    selector = Selector(
        ids=plan.ids,
        ids_source=params["plan_path"],
        exclude_tags=plan.exclude_tags,
        protect_tags=tuple(dict.fromkeys((*plan.protect_tags, *params["protect_tags"]))),
        include_locked=plan.include_locked or params["include_locked"],
        all_projects=plan.all_projects,
    )
    return selector, () if plan.all_projects else plan.projects


async def _execute(
    *, request: RunRequest, auth: AuthSettings, request_timeout: float, quiet: bool, ask: bool
) -> Report:
    compute, scopes = await open_compute(
        auth, request_timeout=request_timeout, pool_size=request.options.concurrency
    )
    progress: Progress | JsonProgress | None = None
    if quiet:
        pass
    elif log.is_json():
        progress = JsonProgress(verb=request.options.action.verb)
    else:
        progress = Progress(
            stream=sys.stderr, interactive=sys.stderr.isatty(), verb=request.options.action.verb
        )
    try:
        with first_run_error():
            async with anyio.create_task_group() as tg:
                if progress is not None:
                    tg.start_soon(progress.ticker)
                report = await run(
                    compute=compute,
                    scopes=scopes,
                    request=request,
                    observer=progress,
                    confirm=functools.partial(_confirm, request) if ask else None,
                    handle_signals=True,
                )
                tg.cancel_scope.cancel()
        return report
    finally:
        if progress is not None:
            progress.close()
        await compute.aclose()


async def _confirm(request: RunRequest, plan: Plan) -> bool:
    """Show what will happen, per project, and ask on the terminal."""
    click.echo(describe_plan(plan, request.options.action), err=True)
    question = f"{request.options.action.verb.capitalize()} {len(plan.to_send)} servers?"
    return await anyio.to_thread.run_sync(
        functools.partial(click.confirm, question, default=False, err=True)
    )


def describe_plan(plan: Plan, action: Action) -> str:
    """Per project: how many get a request, and how many are left alone and why."""
    per_project: dict[str, collections.Counter[str]] = {}
    examples: dict[str, list[str]] = {}
    for entry in plan.entries:
        pid = entry.server.project_id or entry.scope
        key = f"to {action.verb}" if entry.sends else (entry.outcome or "?")
        per_project.setdefault(pid, collections.Counter())[key] += 1
        if entry.sends and len(examples.setdefault(pid, [])) < EXAMPLES_SHOWN:
            examples[pid].append(entry.server.name or entry.server.id)
    lines = [f"bulkstop will {action.verb} {len(plan.to_send)} of {len(plan.entries)} matched:"]
    for pid, counts in sorted(per_project.items()):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        shown = ", ".join(examples.get(pid, []))
        lines.append(f"  project {pid}: {parts}" + (f" (e.g. {shown})" if shown else ""))
    if plan.missing:
        lines.append(f"  not found: {len(plan.missing)}")
    return "\n".join(lines)
