"""Options shared by the commands that act on servers (one definition, so they cannot drift).

Why one module of ~450 lines: every flag of ``stop``/``start`` is declared here, with its
parameter name (:data:`FLAGS`, which error messages use), so a flag and its naming cannot part.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import click

from bulkstop.cli import log
from bulkstop.errors import UsageError
from bulkstop.execute.engine import DEFAULT_CONCURRENCY, DEFAULT_RATE
from bulkstop.execute.gate import DEFAULT_MAX_ATTEMPTS
from bulkstop.identifiers import validate_project_id, validate_tag
from bulkstop.limits import DEFAULT_REQUEST_TIMEOUT, DEFAULT_WAIT_TIMEOUT, MAX_ID_FILE_BYTES
from bulkstop.models import Action
from bulkstop.plan.rails import MIN_FINISHED_FOR_PERCENT, ErrorBudget
from bulkstop.record.notify import FORMATS as NOTIFY_FORMATS
from bulkstop.record.planfile import DEFAULT_PLAN_MAX_AGE
from bulkstop.record.runend import METRIC_LABELS
from bulkstop.redaction import redact, redact_url
from bulkstop.timespec import parse_duration, utc_now

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: The options that choose servers (parameter name → flag). A plan, a report to undo and a
#: journal to resume have chosen the servers already, so none of these may come with them.
SELECTION_FLAGS: Final = {
    "tags": "--tag",
    "any_tags": "--any-tag",
    "exclude_tags": "--exclude-tag",
    "ids_file": "--ids-file",
    "only": "--only",
    "select_all": "--all",
    "projects": "--project",
    "all_projects": "--all-projects",
    "plan_path": "--plan",
    "from_report": "--from-report",
}

#: The library's parameter names as the command line spells them: in
#: :class:`~bulkstop.errors.ParameterError` fields and in library messages (written `name`). A
#: parameter not here is named alike by :func:`flag_of` (``--`` + dashes).
FLAGS: Final[Mapping[str, str]] = {
    **SELECTION_FLAGS,
    "ids": "--ids-file",
    "plan": "--plan",
    "protect_tags": "--protect-tag",
    "report": "--report",
    "journal": "--journal",
    "resume": "--resume",
    "cloud": "--os-cloud",
    "os_cloud": "--os-cloud",
    "endpoint": "--endpoint",
    "region_name": "--region",
    "max_servers": "--max-servers",
    "max_percent": "--max-percent",
    "max_errors": "--max-errors",
    "deadline": "--deadline",
    "dry_run": "--dry-run",
    "plan_max_age": "--plan-max-age",
    "wait": "--wait",
    "wait_timeout": "--wait-timeout",
    "rate": "--rate",
    "concurrency": "--concurrency",
}
_NAMED_PARAMETER: Final = re.compile(r"`([a-z_]+)`")


def flag_of(param: str) -> str:
    """The flag of a Python API parameter."""
    return FLAGS.get(param) or "--" + param.replace("_", "-")


def cli_words(text: str) -> str:
    """A library message as the CLI says it: each known `parameter` becomes its ``--flag``."""
    return _NAMED_PARAMETER.sub(lambda m: FLAGS.get(m.group(1), m.group(0)), text)


#: What each source of servers decides already, for the refusal message.
_ALREADY_CHOSEN: Final = {
    "--from-report": "already says which servers",
    "--resume": "takes the servers and the journal from its journal",
}


def refuse_selection(
    params: dict[str, Any], *, source: str, extra: Mapping[str, str] | None = None
) -> None:
    """UsageError naming every selection option (and ``extra`` one) given beside ``source``."""
    flags = {**SELECTION_FLAGS, **(extra or {})}
    given = [flag for name, flag in flags.items() if flag != source and params.get(name)]
    if given:
        raise UsageError(f"{source} {_ALREADY_CHOSEN[source]}; drop {' '.join(given)}")


def default_report_path(action: Action) -> str:
    """``./bulkstop-report-<UTC time>.json`` (``bulkstop-start-report-...`` for a start)."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    prefix = "bulkstop-report" if action is Action.STOP else "bulkstop-start-report"
    return f"{prefix}-{stamp}.json"


def _validated(kind: str, check: Callable[[str], str]) -> Callable[..., tuple[str, ...]]:
    def callback(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
        try:
            return tuple(check(v) for v in values)
        except ValueError as exc:
            raise click.BadParameter(f"{kind}: {exc}") from None

    return callback


def _endpoint_url(value: str) -> str:
    """An ``--endpoint`` that is an http(s) URL at all (ValueError names what is wrong)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact(value)}")
    return value


def _parsed(parse: Callable[[str], T]) -> Callable[..., T | None]:
    """A click callback that turns a parser's ValueError into a usage error."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> T | None:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def action_options(action: Action) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options ``stop`` and ``start`` share (one definition, so they cannot drift apart)."""
    verb = action.verb

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        options: list[Decorator] = [
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
                callback=_parsed(_endpoint_url),
                help="Compute endpoint instead of the catalog's; '{project_id}' in it "
                "is replaced by each project id.",
            ),
            click.option(
                "--region",
                metavar="NAME",
                help="Region (default: the configuration's region_name or OS_REGION_NAME); "
                "with Huawei AK/SK it names the regional endpoints.",
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
                "column (optional 'project_id'), JSON, or a bulkstop report; at most "
                f"{MAX_ID_FILE_BYTES >> 20} MiB.",
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
                type=click.IntRange(min=0),
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
                help="Seconds to wait for each server with --wait (--api batch: for each job).",
            ),
            # Huawei's batch API
            click.option(
                "--api",
                type=click.Choice(["native", "batch"]),
                help="native: one request per server (the default); batch: Huawei's batch "
                "API, up to --batch-size servers per call, each fate read from its job.",
            ),
            click.option(
                "--service",
                type=click.Choice(["auto", "bms", "ecs"]),
                help="--api batch: the service to send to (default auto: servers tagged "
                "__type_baremetal to bms, the rest to ecs).",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                metavar="N",
                help="--api batch: servers per call (default and most: 1000).",
            ),
            click.option(
                "--batch-endpoint",
                metavar="URL",
                help="--api batch: endpoint instead of the region's; '{project_id}' and "
                "'{service}' (bms or ecs) in it are replaced.",
            ),
            # safety
            click.option(
                "--dry-run",
                is_flag=True,
                help=f"Resolve and check state; report what would be {action.past} "
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
                help=f"Refuse (exit 4, nothing sent) if more than N would be {action.past}.",
            ),
            click.option(
                "--max-percent",
                type=click.FloatRange(min=0, max=100),
                metavar="P",
                help=f"Refuse (exit 4, nothing sent) if more than P% of the servers of any "
                f"project in scope would be {action.past} (counts every server: one more listing).",
            ),
            click.option(
                "--protect-tag",
                "protect_tags",
                metavar="TAG",
                multiple=True,
                callback=_validated("tag", validate_tag),
                help="Servers carrying it are never touched, whatever the selector, ID file or "
                "plan says; repeatable; adds to bulkstop:protect.",
            ),
            click.option(
                "--include-locked",
                is_flag=True,
                help=f"Also {verb} locked servers (Nova allows admins); skipped otherwise.",
            ),
            click.option(
                "--canary",
                type=click.IntRange(min=0),
                default=0,
                metavar="N",
                help=f"{verb.capitalize()} N servers first (spread across projects, from the "
                f"first wave), wait for them, and continue only if all succeeded; else exit 4.",
            ),
            click.option(
                "--max-errors",
                metavar="N|P%",
                callback=_parsed(ErrorBudget.parse),
                help="Circuit breaker: once more than N requests (or P% of at least "
                f"{MIN_FINISHED_FOR_PERCENT} finished ones) failed, {verb} no more; the rest "
                "are not_attempted; exit 4.",
            ),
            click.option(
                "--deadline",
                metavar="WHEN",
                help=f"No new {verb} is sent after this: a duration from now (90s, 25m, 1h30m) "
                "or an ISO 8601 time (UTC unless it says otherwise); the rest are "
                "not_attempted; exit 4.",
            ),
            click.option(
                "--plan",
                "plan_path",
                metavar="PLAN",
                help="Execute exactly the servers of a plan written by --dry-run --report "
                "(each re-checked for state and protection); refuses an edited or stale plan.",
            ),
            click.option(
                "--plan-max-age",
                metavar="DURATION",
                default=DEFAULT_PLAN_MAX_AGE,
                show_default=True,
                callback=_parsed(parse_duration),
                help="Refuse a --plan older than this.",
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
        for option in reversed(options + unattended_options()):
            f = option(f)
        return f

    return decorate


#: A Prometheus label name (names starting with ``__`` are reserved).
LABEL_NAME: Final = re.compile(r"(?!__)[a-zA-Z_][a-zA-Z0-9_]*")

#: Environment variable with the webhook URL(s) of ``--notify`` (whitespace-separated).
NOTIFY_ENVVAR: Final = "BULKSTOP_NOTIFY_URL"
#: Options whose values are secrets: recorded in the journal only as ``scheme://host/***``.
SECRET_URL_FLAGS: Final = ("--notify", "--pushgateway")


def _labels(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not LABEL_NAME.fullmatch(key) or key in METRIC_LABELS:
            raise click.BadParameter(
                f"{value!r}: expected KEY=VALUE, KEY a Prometheus label name other than "
                f"{', '.join(sorted(METRIC_LABELS))}"
            )
        labels[key] = text
    return labels


def _urls(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """Each URL must be http(s) with a host; an error shows it redacted (it holds a secret)."""
    for url in (value,) if isinstance(value, str) else value or ():
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise click.BadParameter(f"{redact_url(url)}: expected an http:// or https:// URL")
    return value


def unattended_options() -> list[Decorator]:
    """Running it every night: metrics, notifications, the log format."""
    return [
        click.option(
            "--metrics-file",
            metavar="PATH",
            help="Write the run's metrics in Prometheus text format for node_exporter's "
            "textfile collector (atomically; *.prom).",
        ),
        click.option(
            "--pushgateway",
            metavar="URL",
            callback=_urls,
            help="Push the run's metrics to this Prometheus Pushgateway (job bulkstop, "
            "grouped by action and --metrics-label).",
        ),
        click.option(
            "--metrics-label",
            "metrics_labels",
            metavar="KEY=VALUE",
            multiple=True,
            callback=_labels,
            help="A label on every metric (and the push's grouping key); repeatable.",
        ),
        click.option(
            "--notify",
            "notify_urls",
            metavar="URL",
            multiple=True,
            envvar=NOTIFY_ENVVAR,
            callback=_urls,
            show_envvar=True,
            help="POST the run's summary here when it ends, however it ends; repeatable. "
            "Only scheme and host are ever shown or recorded.",
        ),
        click.option(
            "--notify-format",
            type=click.Choice(NOTIFY_FORMATS),
            default="json",
            show_default=True,
            help="json: the report without its servers, plus the failed ones; slack: an "
            "incoming-webhook message (Slack, Mattermost).",
        ),
        log.log_format_option,
    ]
