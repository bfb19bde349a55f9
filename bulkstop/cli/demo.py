"""``bulkstop demo``: a mass shutdown rehearsed end to end against the built-in mock cloud.

It starts the mock cloud in-process on 127.0.0.1, authenticates against its Keystone through
the very same clouds.yaml path a real run uses, stops the servers carrying a tag across every
project, waits for them to reach SHUTOFF, prints the summary and writes the report. Nothing
leaves the machine.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Final

import click

from bulkstop.cli.console import run_async
from bulkstop.cli.progress import Progress
from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.http import open_compute
from bulkstop.execute.engine import RunOptions
from bulkstop.limits import DEFAULT_REQUEST_TIMEOUT
from bulkstop.mockcloud import Faults, MockCloud, MockConfig
from bulkstop.record.report import Report, render_summary
from bulkstop.runner import RunRequest, run
from bulkstop.select.selector import Selector

DEMO_SERVERS: Final = 3000
DEMO_PROJECTS: Final = 3
DEMO_TAG: Final = "nightly-stop"
DEMO_RATE: Final = 200
DEMO_CONCURRENCY: Final = 64
DEMO_LATENCY: Final = 0.005
DEMO_CLOUD: Final = "bulkstop-demo"


@click.command()
@click.option(
    "--servers",
    type=click.IntRange(min=1),
    default=DEMO_SERVERS,
    show_default=True,
    help="Servers in the mock fleet.",
)
@click.option(
    "--projects",
    type=click.IntRange(min=1),
    default=DEMO_PROJECTS,
    show_default=True,
    help="Projects the fleet is spread over.",
)
@click.option("--tag", default=DEMO_TAG, show_default=True, help="Stop the servers with it.")
@click.option(
    "--rate",
    type=click.IntRange(min=0),
    default=DEMO_RATE,
    show_default=True,
    help="Requests per second per project.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEMO_CONCURRENCY,
    show_default=True,
    help="Requests in flight overall.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seeds the mock fleet.")
@click.option(
    "--report",
    "report_path",
    default="bulkstop-demo-report.json",
    show_default=True,
    metavar="PATH|-",
    help="Where to write the JSON report.",
)
@click.option("--quiet", is_flag=True, help="No progress output.")
def demo(
    servers: int,
    projects: int,
    tag: str,
    rate: int,
    concurrency: int,
    seed: int,
    report_path: str,
    quiet: bool,
) -> None:
    """Rehearse a tagged mass shutdown against the built-in mock cloud (nothing leaves 127.0.0.1).

    The mock's fleet is seeded: about 30% of servers carry 'nightly-stop', a few are already
    stopped, locked, paused, in error or tagged bulkstop:protect, so every outcome shows up.
    """
    config = MockConfig(
        servers=servers,
        projects=projects,
        seed=seed,
        transition_delay=0.5,
        faults=Faults(latency=DEMO_LATENCY),
    )
    request = RunRequest(
        selector=Selector(tags=(tag,)),
        options=RunOptions(rate=rate, concurrency=concurrency, wait=True, poll_interval=0.5),
        report_path=report_path,
    )
    report = run_async(functools.partial(_demo, config, request, quiet=quiet))
    click.echo(render_summary(report), err=True)
    if report_path != "-":
        click.echo(f"report: {report_path}", err=True)


async def _demo(config: MockConfig, request: RunRequest, *, quiet: bool) -> Report:
    async with MockCloud(config) as mock:
        with tempfile.TemporaryDirectory(prefix="bulkstop-demo-") as tmp:
            clouds_yaml = Path(tmp) / "clouds.yaml"
            mock.write_clouds_yaml(clouds_yaml, cloud=DEMO_CLOUD)
            # openstacksdk's loader reads this variable first: the demo's credentials never
            # mix with the user's own clouds.yaml or OS_* settings.
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds_yaml)
            auth = AuthSettings(os_cloud=DEMO_CLOUD, projects=tuple(mock.project_ids))
            compute, scopes = await open_compute(
                auth,
                request_timeout=DEFAULT_REQUEST_TIMEOUT,
                pool_size=request.options.concurrency,
            )
        if not quiet:
            click.echo(
                f"mock cloud on {mock.base_url}: {len(mock.servers)} servers in "
                f"{len(scopes)} projects; stopping those tagged {request.selector.tags[0]!r}",
                err=True,
            )
        progress = None if quiet else Progress(stream=sys.stderr, interactive=sys.stderr.isatty())
        try:
            return await run(
                compute=compute,
                scopes=scopes,
                request=request,
                observer=progress,
                handle_signals=True,
            )
        finally:
            if progress is not None:
                progress.close()
            await compute.aclose()
