"""``wait`` polls the cheaper way, counted in the mock cloud's request journal.

Resolution notes the listing page of every server; while waiting, each project's pending
servers are read with one GET each or with the listing pages they are on, whichever costs
fewer requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from api_runner import Runner, run_options
from fleets import TAGGED, fleet, server

from bulkstop.mockcloud import MockCloud
from bulkstop.models import Outcome
from bulkstop.runner import RunRequest

pytestmark = pytest.mark.anyio

MakeMock = Callable[..., Awaitable[MockCloud]]


async def stop_and_wait(runner: Runner, mock: MockCloud, report: Path) -> list[str]:
    """Stop every tagged server with ``wait``; the kinds of requests sent after the first stop."""
    request = RunRequest(
        selector=TAGGED, options=run_options(wait=True, poll_interval=0.05), report_path=str(report)
    )
    result = await runner(mock, request)
    assert {r.outcome for r in result.servers} == {Outcome.STOPPED}
    kinds = [r.kind for r in mock.requests if r.kind in ("list", "get", "action")]
    return kinds[kinds.index("action") :]


async def test_21_pending_servers_on_one_page_cost_one_listing_per_poll(
    make_mock_cloud: MakeMock, runner: Runner, report_path: Path
) -> None:
    names = [f"s{n}" for n in range(21)]
    mock = await make_mock_cloud(fleet=fleet(*(server(n) for n in names)), transition_delay=0.3)
    after = await stop_and_wait(runner, mock, report_path)
    assert after.count("action") == 21
    polls = after.count("list")
    assert polls >= 2  # it polled several times while the servers powered off
    # 21 GETs per poll were sent before. A poll that comes while only one action has been
    # answered (a loaded machine) rightly reads that one server by GET, so allow a few of those.
    assert after.count("get") < len(names)


async def test_one_pending_server_is_read_by_get(
    make_mock_cloud: MakeMock, runner: Runner, report_path: Path
) -> None:
    mock = await make_mock_cloud(
        fleet=fleet(server("one"), server("other", tags=("env=prod",))), transition_delay=0.2
    )
    after = await stop_and_wait(runner, mock, report_path)
    assert after.count("get") >= 2 and after.count("list") == 0
