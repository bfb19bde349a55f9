"""``bulkstop mock-cloud``: run the mock cloud as a process (thin: options → MockConfig)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from bulkstop.errors import InputError

from .config import (
    DEFAULT_ERROR_STATUS,
    DEFAULT_HOST,
    DEFAULT_HTML_STATUS,
    DEFAULT_JOB_DURATION,
    DEFAULT_MAX_LIMIT,
    DEFAULT_PORT,
    DEFAULT_PROJECTS,
    DEFAULT_SEED,
    DEFAULT_SERVERS,
    DEFAULT_SLOW_DELAY,
    DEFAULT_TOKEN_LIFETIME,
    DEFAULT_TRANSITION_DELAY,
    Faults,
    Flavour,
    MockConfig,
    Trigger,
)
from .standalone import run_standalone

#: Options that build the default :class:`Faults`; ``--faults-file`` with a "default" entry
#: excludes them.
FAULT_OPTIONS = (
    "latency",
    "jitter",
    "rate_limit",
    "burst",
    "throttle",
    "retry_after",
    "error_rate",
    "error_status",
    "fail_first",
    "reset_rate",
    "html_rate",
    "html_status",
    "slow_rate",
    "slow_delay",
    "race_rate",
    "token_ttl",
    "error_flavour",
)
_RATE = click.FloatRange(0.0, 1.0)
_SECONDS = click.FloatRange(min=0.0)


def _fail_first(values: tuple[str, ...]) -> dict[str, int]:
    """``SERVER_ID[:K]`` items → {server id: K} (K defaults to 1)."""
    out = {}
    for value in values:
        server_id, _, count = value.rpartition(":") if ":" in value else (value, "", "1")
        if not count.isdigit() or int(count) < 1:
            raise click.BadParameter(f"expected SERVER_ID[:K] with K >= 1, got {value!r}")
        out[server_id] = int(count)
    return out


def _faults_file(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(default faults document or None, {project: faults document}) from a JSON file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read faults file: {exc}", source=str(path)) from exc
    if not isinstance(document, dict) or set(document) - {"default", "projects"}:
        raise InputError('expected {"default": {...}, "projects": {...}}', source=str(path))
    return document.get("default"), document.get("projects", {})


def build_config(ctx: click.Context, options: dict[str, Any]) -> MockConfig:
    """The MockConfig the command line describes."""
    flavour: Flavour = options["error_flavour"] or ("huawei" if options["huawei"] else "nova")
    faults = Faults(
        latency=options["latency"],
        jitter=options["jitter"],
        rate_limit=options["rate_limit"],
        burst=options["burst"],
        throttle=options["throttle"],
        retry_after=options["retry_after"],
        server_error=Trigger(
            rate=options["error_rate"], servers=_fail_first(options["fail_first"])
        ),
        error_status=options["error_status"],
        reset=Trigger(rate=options["reset_rate"]),
        html=Trigger(rate=options["html_rate"]),
        html_status=options["html_status"],
        slow=Trigger(rate=options["slow_rate"]),
        slow_delay=options["slow_delay"],
        race=Trigger(rate=options["race_rate"]),
        token_ttl=options["token_ttl"],
        flavour=flavour,
    )
    project_faults: dict[str, Faults] = {}
    if options["faults_file"] is not None:
        default, projects = _faults_file(options["faults_file"])
        if default is not None:
            given = [
                "--" + name.replace("_", "-")
                for name in FAULT_OPTIONS
                if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
            ]
            if given:
                raise click.UsageError(
                    f"{', '.join(given)} cannot be combined with a faults file's 'default'"
                )
            faults = Faults.from_dict(default)
        project_faults = {key: Faults.from_dict(doc) for key, doc in projects.items()}
    return MockConfig(
        servers=options["servers"],
        projects=options["projects"],
        seed=options["seed"],
        fleet=options["fleet"],
        never_scheduled=options["never_scheduled"],
        host=options["host"],
        port=options["port"],
        huawei=options["huawei"],
        aksk=options["huawei"],
        job_duration=options["job_duration"],
        baremetal_fraction=options["baremetal_fraction"],
        job_failure_rate=options["job_failure_rate"],
        flow_limit_rate=options["flow_limit_rate"],
        legacy=options["legacy"],
        max_limit=options["max_limit"],
        transition_delay=options["transition_delay"],
        token_lifetime=options["token_lifetime"],
        faults=faults,
        project_faults=project_faults,
    )


@click.command("mock-cloud")
@click.option(
    "--servers",
    type=click.IntRange(min=0),
    default=DEFAULT_SERVERS,
    show_default=True,
    help="Size of the seeded fleet.",
)
@click.option(
    "--projects",
    type=click.IntRange(min=1),
    default=DEFAULT_PROJECTS,
    show_default=True,
    help="Projects the fleet is spread over.",
)
@click.option(
    "--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seeds fleet and faults."
)
@click.option(
    "--fleet",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve exactly this fleet (JSON) instead of a seeded one.",
)
@click.option(
    "--never-scheduled",
    type=_RATE,
    default=0.0,
    help="Share of the seeded fleet that are ERROR servers never scheduled to a host.",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--huawei",
    is_flag=True,
    help="Huawei mode: actions answer 204, Huawei error bodies, IAM's /v2/ compute URL in "
    "the catalog, AK/SK signatures accepted (and checked), the v1 batch API and its jobs.",
)
@click.option(
    "--baremetal-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Seeded fraction of servers that are bare metal (tagged __type_baremetal).",
)
@click.option(
    "--job-duration",
    type=_SECONDS,
    default=DEFAULT_JOB_DURATION,
    show_default=True,
    help="Seconds a batch job runs (Huawei mode).",
)
@click.option(
    "--job-failure-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Seeded fraction of a batch's servers whose sub-job fails (Huawei mode).",
)
@click.option(
    "--flow-limit-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Seeded fraction of batch calls answered 202 Common.0024 without a job (Huawei mode).",
)
@click.option(
    "--legacy",
    is_flag=True,
    help="No microversions: serve everything as 2.1 (tag filters ignored, no tags in records).",
)
@click.option(
    "--max-limit",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_LIMIT,
    show_default=True,
    help="Largest page; a bigger limit is clamped.",
)
@click.option(
    "--transition-delay",
    type=_SECONDS,
    default=DEFAULT_TRANSITION_DELAY,
    show_default=True,
    help="Seconds from an accepted stop to SHUTOFF.",
)
@click.option(
    "--token-lifetime",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TOKEN_LIFETIME,
    show_default=True,
    help="Seconds until a token's expires_at.",
)
@click.option("--latency", type=_SECONDS, default=0.0, help="Seconds added to each compute call.")
@click.option("--jitter", type=_SECONDS, default=0.0, help="Extra random [0, J) seconds.")
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second per project (token bucket).",
)
@click.option("--burst", type=click.IntRange(min=1), help="Bucket size [default: rate].")
@click.option(
    "--throttle",
    type=click.Choice(["429", "413", "apig"]),
    default="429",
    show_default=True,
    help="How throttling answers.",
)
@click.option(
    "--retry-after",
    type=click.Choice(["seconds", "date", "none"]),
    default="seconds",
    show_default=True,
    help="Retry-After on throttled answers.",
)
@click.option("--error-rate", type=_RATE, default=0.0, help="Share of calls answering 5xx.")
@click.option(
    "--error-status",
    type=click.IntRange(500, 599),
    default=DEFAULT_ERROR_STATUS,
    show_default=True,
    help="Status of injected server errors.",
)
@click.option(
    "--fail-first",
    multiple=True,
    metavar="SERVER_ID[:K]",
    help="The first K actions on this server answer 5xx (repeatable).",
)
@click.option(
    "--reset-rate", type=_RATE, default=0.0, help="Share of calls whose connection is reset."
)
@click.option(
    "--html-rate", type=_RATE, default=0.0, help="Share of calls answered by an HTML page."
)
@click.option(
    "--html-status",
    type=click.IntRange(400, 599),
    default=DEFAULT_HTML_STATUS,
    show_default=True,
    help="Status of injected HTML pages.",
)
@click.option("--slow-rate", type=_RATE, default=0.0, help="Share of calls answered late.")
@click.option(
    "--slow-delay",
    type=_SECONDS,
    default=DEFAULT_SLOW_DELAY,
    show_default=True,
    help="How late a slow answer is.",
)
@click.option(
    "--race-rate",
    type=_RATE,
    default=0.0,
    help="Share of stops that find the server just stopped by someone else.",
)
@click.option(
    "--token-ttl",
    type=click.FloatRange(min=0, min_open=True),
    help="Tokens stop working after this many seconds.",
)
@click.option(
    "--error-flavour",
    type=click.Choice(["nova", "huawei"]),
    help="Error body shape [default: huawei with --huawei, else nova].",
)
@click.option(
    "--faults-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON {"default": {...}, "projects": {"<id or name>": {...}}} of Faults fields.',
)
@click.pass_context
def mock_cloud(ctx: click.Context, /, **options: Any) -> None:
    """Run a mock OpenStack cloud (Keystone + Nova) on loopback.

    Prints one line of JSON (auth URL, credentials, project ids) once listening, and stops
    cleanly on SIGINT/SIGTERM.
    """
    try:
        config = build_config(ctx, options)
    except (InputError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    except (TypeError, KeyError) as exc:  # a fleet or faults file of the wrong shape
        raise click.UsageError(f"malformed fleet or faults file: {exc!r}") from exc
    try:
        ctx.exit(run_standalone(config))
    except (InputError, ValueError) as exc:  # the fleet is read when the cloud starts
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:  # the port is taken, the address is not ours, ...
        raise click.ClickException(
            f"cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}"
        ) from exc
