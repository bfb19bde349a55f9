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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import click

from bulkstop import api
from bulkstop.api import RunResult
from bulkstop.cli.console import run_async
from bulkstop.cli.options import cli_words
from bulkstop.cli.progress import Progress, shown
from bulkstop.cloud.auth import AuthSettings
from bulkstop.mockcloud import Faults, MockCloud, MockConfig

DEMO_SERVERS: Final = 3000
DEMO_PROJECTS: Final = 3
DEMO_TAG: Final = "nightly-stop"
DEMO_RATE: Final = 200
DEMO_CONCURRENCY: Final = 64
DEMO_LATENCY: Final = 0.005
DEMO_CLOUD: Final = "bulkstop-demo"
#: Seconds between two status polls: the mock's transitions take 0.5 s.
DEMO_POLL_INTERVAL: Final = 0.5


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
    progress = None if quiet else Progress(stream=sys.stderr, interactive=sys.stderr.isatty())
    demo_run = functools.partial(
        api.stop,
        tags=tag,
        rate=rate,
        concurrency=concurrency,
        wait=True,
        poll_interval=DEMO_POLL_INTERVAL,
        report=report_path,
        journal=False,
        observer=progress,
        handle_signals=True,
    )
    result = run_async(functools.partial(_demo, config, demo_run, tag=tag, progress=progress))
    click.echo(cli_words(result.summary), err=True)
    if report_path != "-":
        click.echo(f"report: {report_path}", err=True)


async def _demo(
    config: MockConfig,
    demo_run: Callable[..., Awaitable[RunResult]],
    *,
    tag: str,
    progress: Progress | None,
) -> RunResult:
    """Start the mock cloud, point a clouds.yaml entry at it, and run the demo's stop there."""
    async with MockCloud(config) as mock:
        with tempfile.TemporaryDirectory(prefix="bulkstop-demo-") as tmp:
            clouds_yaml = Path(tmp) / "clouds.yaml"
            mock.write_clouds_yaml(clouds_yaml, cloud=DEMO_CLOUD)
            # openstacksdk's loader reads this variable first: the demo's credentials never
            # mix with the user's own clouds.yaml or OS_* settings.
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds_yaml)
            if progress is not None:
                click.echo(
                    f"mock cloud on {mock.base_url}: {len(mock.servers)} servers in "
                    f"{len(mock.project_ids)} projects; stopping those tagged "
                    f"{tag!r}",
                    err=True,
                )
            async with shown(progress):
                return await demo_run(
                    cloud=AuthSettings(os_cloud=DEMO_CLOUD, projects=tuple(mock.project_ids))
                )
