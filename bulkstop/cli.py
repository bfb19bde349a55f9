"""The ``bulkstop`` command line: parse options, call the library, print, exit.

Exit codes: 0 nothing failed; 1 at least one server ``failed``/``not_found``; 2 bad usage or
input; 3 authentication, configuration or endpoint failure; 4 refused or stopped by a safety
rail; 130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import collections
import functools
import sys
from collections.abc import Callable
from typing import Any, Final

import anyio.to_thread
import click

from .auth import AuthSettings
from .calls import DEFAULT_MAX_ATTEMPTS, RetryPolicy
from .compute_http import DEFAULT_REQUEST_TIMEOUT, open_compute
from .console import fail, run_async
from .demo import demo
from .engine import DEFAULT_CONCURRENCY, DEFAULT_RATE, DEFAULT_WAIT_TIMEOUT, Plan, RunOptions
from .errors import BulkstopError, UsageError
from .identifiers import validate_project_id, validate_tag
from .idfile import IdEntry, load_ids
from .mockcloud.cli import mock_cloud
from .models import Action
from .progress import Progress
from .report import Report, exit_code, render_summary, utc_now
from .runner import RunRequest, run
from .selector import Selector

#: How many example server names the confirmation prompt shows per project.
EXAMPLES_SHOWN: Final = 3


def default_report_path(action: Action) -> str:
    """``./bulkstop-report-<UTC time>.json`` (``bulkstop-start-report-...`` for a start)."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    prefix = "bulkstop-report" if action is Action.STOP else "bulkstop-start-report"
    return f"{prefix}-{stamp}.json"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="bulkstop")
def main() -> None:
    """Stop many OpenStack / Huawei Cloud servers at once: safely, fast, and on the record.

    \b
    Quick look:
      bulkstop demo                               rehearse against a built-in mock cloud
      bulkstop stop --tag nightly-stop --dry-run  what would be stopped
      bulkstop stop --tag nightly-stop --yes      stop them, report to ./bulkstop-report-*.json
    """


def _validated(kind: str, check: Callable[[str], str]) -> Callable[..., tuple[str, ...]]:
    def callback(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
        try:
            return tuple(check(v) for v in values)
        except ValueError as exc:
            raise click.BadParameter(f"{kind}: {exc}") from None

    return callback


def _action_options(action: Action) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options ``stop`` and ``start`` share (one definition, so they cannot drift apart)."""
    verb = action.verb

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            # where
            click.option(
                "--os-cloud",
                metavar="NAME",
                envvar="OS_CLOUD",
                show_envvar=True,
                help="clouds.yaml entry (default: the OS_* environment).",
            ),
            click.option(
                "--project",
                "projects",
                metavar="ID",
                multiple=True,
                callback=_validated("project id", validate_project_id),
                help="Act in this project; repeatable (default: the credentials' "
                "project, or the projects named in --ids-file).",
            ),
            click.option(
                "--all-projects",
                is_flag=True,
                help="Admin: select across all projects (Nova all_tenants).",
            ),
            click.option(
                "--endpoint",
                metavar="URL",
                help="Compute endpoint instead of the catalog's; '{project_id}' in it "
                "is replaced by each project id.",
            ),
            # what
            click.option(
                "--tag",
                "tags",
                metavar="TAG",
                multiple=True,
                callback=_validated("tag", validate_tag),
                help="Server must carry this tag; repeatable, all must match.",
            ),
            click.option(
                "--any-tag",
                "any_tags",
                metavar="TAG",
                multiple=True,
                callback=_validated("tag", validate_tag),
                help="Server must carry at least one of these; repeatable.",
            ),
            click.option(
                "--exclude-tag",
                "exclude_tags",
                metavar="TAG",
                multiple=True,
                callback=_validated("tag", validate_tag),
                help="Never touch servers carrying it; repeatable. "
                "bulkstop:protect always applies.",
            ),
            click.option(
                "--ids-file",
                metavar="PATH|-",
                help="Server IDs: text (one per line, '#' comments), CSV with an 'id' "
                "column (optional 'project_id'), JSON, or a bulkstop report.",
            ),
            click.option(
                "--only",
                metavar="OUTCOMES",
                help="With a report as --ids-file: only servers with these outcomes "
                "(comma-separated, e.g. failed,not_attempted).",
            ),
            click.option(
                "--all",
                "select_all",
                is_flag=True,
                help="Every server in scope; required without --tag/--any-tag/--ids-file.",
            ),
            # how
            click.option(
                "--rate",
                type=click.FloatRange(min=0),
                default=DEFAULT_RATE,
                show_default=True,
                help="Compute API requests per second per project (0 = no limit).",
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(min=1),
                default=DEFAULT_CONCURRENCY,
                show_default=True,
                help="Requests in flight overall.",
            ),
            click.option(
                "--max-attempts",
                type=click.IntRange(min=1),
                default=DEFAULT_MAX_ATTEMPTS,
                show_default=True,
                help="Attempts per request on transient failures (5xx, resets, "
                "timeouts). Throttling is waited out separately.",
            ),
            click.option(
                "--request-timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=DEFAULT_REQUEST_TIMEOUT,
                show_default=True,
                metavar="S",
                help="Seconds per request.",
            ),
            click.option(
                "--wait/--no-wait",
                default=False,
                show_default=True,
                help=f"After acceptance, wait until each server is "
                f"{'SHUTOFF' if action is Action.STOP else 'ACTIVE'}.",
            ),
            click.option(
                "--wait-timeout",
                type=click.FloatRange(min=0),
                metavar="S",
                default=DEFAULT_WAIT_TIMEOUT,
                show_default=True,
                help="Seconds to wait for each server with --wait.",
            ),
            # safety
            click.option(
                "--dry-run",
                is_flag=True,
                help=f"Resolve and check state; report what would be {verb}ped "
                "(outcome 'planned'); send nothing.",
            ),
            click.option(
                "-y",
                "--yes",
                is_flag=True,
                help="Do not ask for confirmation. Without it and without a terminal, "
                "bulkstop refuses (exit 2).",
            ),
            click.option(
                "--max-servers",
                type=click.IntRange(min=0),
                metavar="N",
                help=f"Refuse (exit 4, nothing sent) if more than N servers would be {verb}ped.",
            ),
            # output
            click.option(
                "--report",
                "report_path",
                metavar="PATH|-",
                help=f"Where to write the JSON report (default ./bulkstop-"
                f"{'report' if action is Action.STOP else 'start-report'}"
                f"-<UTC time>.json; '-' for stdout).",
            ),
            click.option("--quiet", is_flag=True, help="No progress output."),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


@main.command()
@_action_options(Action.STOP)
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
          --yes --quiet --report /var/log/bulkstop/$(date +%F).json
      # evacuation: exactly these servers, in two projects
      bulkstop stop --ids-file evacuate.csv --project 1f2e... --project 9a8b... --yes
    """
    stop_type = params.pop("stop_type")
    _action_command(Action.STOP, params, stop_type=stop_type.upper() if stop_type else None)


def _action_command(action: Action, params: dict[str, Any], *, stop_type: str | None) -> None:
    """Shared body of ``stop`` and ``start``."""
    try:
        request, auth = _build_request(action, params, stop_type=stop_type)
        interactive = sys.stdin.isatty() and sys.stderr.isatty()
        if not (params["yes"] or params["dry_run"] or interactive):
            raise UsageError(
                f"refusing to {action.verb} servers without confirmation: there is no terminal "
                "to ask on; pass --yes (or --dry-run to look first)"
            )
    except BulkstopError as exc:
        fail(exc)
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
    click.echo(render_summary(report), err=True)
    if request.report_path not in (None, "-"):
        click.echo(f"report: {request.report_path}", err=True)
    sys.exit(exit_code(report))


def _build_request(
    action: Action, params: dict[str, Any], *, stop_type: str | None
) -> tuple[RunRequest, AuthSettings]:
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
        ids=ids,
        ids_source="<stdin>" if source == "-" else source,
        select_all=params["select_all"],
        all_projects=params["all_projects"],
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
    )
    request = RunRequest(
        selector=selector,
        options=options,
        max_servers=params["max_servers"],
        report_path=params["report_path"] or default_report_path(action),
        extra_options={"request_timeout": params["request_timeout"]},
    )
    auth = AuthSettings(
        os_cloud=params["os_cloud"],
        projects=projects,
        endpoint=params["endpoint"],
        all_projects=params["all_projects"],
    )
    return request, auth


async def _execute(
    *, request: RunRequest, auth: AuthSettings, request_timeout: float, quiet: bool, ask: bool
) -> Report:
    compute, scopes = await open_compute(
        auth, request_timeout=request_timeout, pool_size=request.options.concurrency
    )
    progress = None
    if not quiet:
        progress = Progress(
            stream=sys.stderr, interactive=sys.stderr.isatty(), verb=request.options.action.verb
        )
    try:
        return await run(
            compute=compute,
            scopes=scopes,
            request=request,
            observer=progress,
            confirm=functools.partial(_confirm, request) if ask else None,
            handle_signals=True,
        )
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


main.add_command(demo)
main.add_command(mock_cloud)
