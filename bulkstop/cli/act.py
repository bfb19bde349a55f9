"""``bulkstop stop`` and ``start``: the options become one call of :mod:`bulkstop.api`
(:func:`~bulkstop.api.stop`/:func:`~bulkstop.api.start`, :func:`~bulkstop.api.resume` for
``--resume``, :func:`~bulkstop.api.undo` for ``--from-report``); this module adds what only a
terminal has (the confirmation prompt, progress, signals) and turns the result into messages and
an exit code."""

from __future__ import annotations

import collections
import functools
import sys
from collections.abc import Coroutine
from typing import Any, Final

import anyio.to_thread
import click

from bulkstop import api
from bulkstop.api import RunResult
from bulkstop.arguments import SELECTION_PARAMS
from bulkstop.cli import log
from bulkstop.cli.console import fail, run_async, say_error
from bulkstop.cli.log import JsonProgress
from bulkstop.cli.options import action_options, cli_words, default_report_path, refuse_selection
from bulkstop.cli.progress import Progress, shown
from bulkstop.cli.recovery import (
    RecordedCommand,
    command_line,
    read_resumed,
    recovery_options,
    resume_hint,
    unfinished_journal,
)
from bulkstop.cli.unattended import after_run
from bulkstop.cloud.auth import AuthSettings
from bulkstop.errors import BulkstopError, RecordError, UsageError
from bulkstop.execute.engine import Plan
from bulkstop.models import Action
from bulkstop.record.journal import JournalState, journal_path_for
from bulkstop.runner import Confirm

#: A library call of :mod:`bulkstop.api` with every parameter but its hooks.
LibraryCall = functools.partial[Coroutine[Any, Any, RunResult]]

#: How many example server names the confirmation prompt shows per project.
EXAMPLES_SHOWN: Final = 3
#: Options passed to the library under their own names (the rest are renamed or combined).
_RUN_OPTIONS: Final = (
    *("request_timeout", "rate", "concurrency", "max_attempts", "wait", "wait_timeout"),
    *("max_servers", "max_percent", "canary", "max_errors", "deadline"),
    *("protect_tags", "include_locked"),
    *("api", "service", "batch_size", "batch_endpoint"),
)
_SELECTION_OPTIONS: Final = (
    *("tags", "any_tags", "exclude_tags", "select_all", "projects", "all_projects"),
    "plan_max_age",
)


@click.command(cls=RecordedCommand)
@action_options(Action.STOP)
@recovery_options
@click.option(
    "--stop-type",
    type=click.Choice(["SOFT", "HARD"], case_sensitive=False),
    help="Sent as os-stop.type (default: not sent; Huawei's native API ignores it; its "
    "batch API takes only HARD for bare metal).",
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
    """Shared body of ``stop`` and ``start``: options → a library call → messages, exit code;
    metrics and notifications (:func:`~bulkstop.cli.unattended.after_run`) however it ends."""
    with after_run(action, params) as ending:
        try:
            call = _library_call(action, params, stop_type=stop_type)
            ending.report_path = call.keywords["report"]
            _check_confirmable(action, params)
        except BulkstopError as exc:
            fail(exc)
        log.event("run_start", action=action.verb, dry_run=params["dry_run"], **_described(call))
        confirm = None if params["yes"] else functools.partial(_confirm, action)
        result, unrecorded = run_async(
            functools.partial(_run, call, progress=_progress(action, params), confirm=confirm),
            last_words=ending.last_words,
        )
        ending.report = result.report
        _print_summary(result, action.verb, unrecorded)
        if unrecorded is not None:
            # Metrics and notifications say 5 and why, as the error line does.
            ending.error = unrecorded
            sys.exit(unrecorded.exit_code)
        sys.exit(result.exit_code)


def _check_confirmable(action: Action, params: dict[str, Any]) -> None:
    """Without --yes, a prompt needs a terminal (and a human reader: no prompt in JSON mode)."""
    if params["yes"] or params["dry_run"]:
        return
    if log.is_json():
        raise UsageError(
            f"refusing to {action.verb} servers without confirmation: JSON log mode never "
            "prompts; pass --yes (or --dry-run to look first)"
        )
    if not (sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            f"refusing to {action.verb} servers without confirmation: there is no terminal "
            "to ask on; pass --yes (or --dry-run to look first)"
        )


def _progress(action: Action, params: dict[str, Any]) -> Progress | JsonProgress | None:
    """The live line, progress events in JSON log mode, or nothing (``--quiet``)."""
    if params["quiet"]:
        return None
    if log.is_json():
        return JsonProgress(verb=action.verb)
    return Progress(stream=sys.stderr, interactive=sys.stderr.isatty(), verb=action.verb)


async def _run(
    call: LibraryCall, *, progress: Progress | JsonProgress | None, confirm: Confirm | None
) -> tuple[RunResult, RecordError | None]:
    """The library call, with a run that could not be fully recorded returned, not raised:
    its :class:`RunResult` (the summary, the journal to resume) rides on the RecordError."""
    async with shown(progress):
        try:
            return await call(observer=progress, confirm=confirm, handle_signals=True), None
        except RecordError as exc:
            if not isinstance(exc.result, RunResult):
                raise
            return exc.result, exc


def _print_summary(result: RunResult, verb: str, unrecorded: RecordError | None) -> None:
    """The summary, where the report is, and how to finish a halted run; for a run that went on
    record only in part (``unrecorded``), what failed and how to finish it once that is fixed."""
    report_path = result.report_path if unrecorded is None else None
    hint = resume_hint(result, verb) if unrecorded is None else _finish_hint(result, verb)
    if log.is_json():
        report = result.report
        document = report.to_dict()
        log.event(
            "summary",
            level="info" if result.exit_code == 0 and unrecorded is None else "warning",
            action=report.action,
            dry_run=report.dry_run,
            duration=round((report.finished_at - report.started_at).total_seconds(), 3),
            halted_by=report.halted_by,
            requests=dict(report.requests),
            **document["summary"],
            projects=document["projects"],
            exit_code=result.exit_code if unrecorded is None else unrecorded.exit_code,
            report_path=report_path,
            journal_path=result.journal_path,
            hint=hint,
        )
    else:
        click.echo(cli_words(result.summary), err=True)
        if report_path not in (None, "-"):
            click.echo(f"report: {report_path}", err=True)
    if unrecorded is not None:
        say_error(unrecorded)
    if hint and not log.is_json():
        click.echo(hint, err=True)


def _finish_hint(result: RunResult, verb: str) -> str | None:
    """How to finish a run whose journal or report the disk refused."""
    if result.journal_path is None:
        return None
    return (
        f"journal: {result.journal_path}\nonce the disk is fixed, finish with: "
        f"bulkstop {verb} --resume {result.journal_path}"
    )


def _library_call(action: Action, params: dict[str, Any], *, stop_type: str | None) -> LibraryCall:
    """The :mod:`bulkstop.api` call this command line asks for, short of its hooks."""
    chosen: dict[str, Any] = {"stop_type": stop_type} if stop_type else {}
    if params["resume_unfinished"] and not (params["resume"] or params["dry_run"]):
        params["resume"] = unfinished_journal(params)
    if params["resume"]:
        state = read_resumed(action, params)  # first: it fills in the recorded options
        return functools.partial(api.resume, state, **_run_params(action, params), **chosen)
    fresh = {**_run_params(action, params), **_record_params(action, params)}
    if params.get("from_report"):
        refuse_selection(params, source="--from-report")
        return functools.partial(api.undo, params["from_report"], **fresh)
    act = api.stop if action is Action.STOP else api.start
    return functools.partial(act, **fresh, **_selection_params(params), **chosen)


def _run_params(action: Action, params: dict[str, Any]) -> dict[str, Any]:
    """The library parameters of every run; an option not given is a parameter not given."""
    given = {
        "cloud": AuthSettings(
            os_cloud=params["os_cloud"],
            endpoint=params["endpoint"],
            region_name=params["region"],
        ),
        "report": params["report_path"] or default_report_path(action),
        "command": command_line(),
        **{name: params[name] for name in _RUN_OPTIONS},
    }
    return {name: value for name, value in given.items() if value is not None}


def _record_params(action: Action, params: dict[str, Any]) -> dict[str, Any]:
    """A new run's dry-run flag and journal (with ``--report -``: beside the default report)."""
    journal = params["journal_path"] or True
    if journal is True and params["report_path"] == "-":
        journal = journal_path_for(default_report_path(action))
    return {"dry_run": params["dry_run"], "journal": journal}


def _selection_params(params: dict[str, Any]) -> dict[str, Any]:
    """The library parameters that choose servers (a plan among them)."""
    only = params["only"]
    return {
        **{name: params[name] for name in _SELECTION_OPTIONS},
        "ids": params["ids_file"],
        "only": [o.strip() for o in only.split(",") if o.strip()] if only else None,
        "plan": params["plan_path"],
    }


def _described(call: LibraryCall) -> dict[str, Any]:
    """The ``run_start`` event's fields: what the run continues (a journal, a report to undo),
    the selection and the options, as given to the library."""
    given = {k: v for k, v in call.keywords.items() if k not in ("cloud", "command")}
    selection = {
        name: given.pop(name)
        for name in (*SELECTION_PARAMS, "plan", "plan_max_age", "protect_tags", "include_locked")
        if name in given
    }
    source = call.args[0] if call.args else None
    cloud = call.keywords["cloud"]
    return {
        "resume": source.path if isinstance(source, JournalState) else None,
        "from_report": source if isinstance(source, str) else None,
        "os_cloud": cloud.os_cloud,
        "region": cloud.region_name,
        "selector": selection,
        "options": given,
    }


async def _confirm(action: Action, plan: Plan) -> bool:
    """Show what will happen, per project, and ask on the terminal."""
    click.echo(describe_plan(plan, action), err=True)
    question = f"{action.verb.capitalize()} {len(plan.to_send)} servers?"
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
        sample = ", ".join(examples.get(pid, []))
        lines.append(f"  project {pid}: {parts}" + (f" (e.g. {sample})" if sample else ""))
    if plan.missing:
        lines.append(f"  not found: {len(plan.missing)}")
    return "\n".join(lines)
