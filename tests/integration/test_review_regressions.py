"""Regressions found by review, against the mock cloud: each failed before its fix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from api_runner import Runner, run_options
from fleets import fleet, pid, server, sid

from bulkstop.errors import RefusedError, UsageError
from bulkstop.mockcloud import MockCloud
from bulkstop.models import Outcome
from bulkstop.plan.rails import Rails
from bulkstop.record.planfile import load_plan
from bulkstop.runner import RunRequest
from bulkstop.select.idfile import read_ids
from bulkstop.select.selector import Selector
from bulkstop.timespec import utc_now

MakeMock = Callable[..., Awaitable[MockCloud]]


@pytest.mark.parametrize("others", [0, 30], ids=["read-by-get", "read-by-listing"])
async def test_project_is_a_boundary_even_for_an_admin(
    make_mock_cloud: MakeMock, runner: Runner, others: int
) -> None:
    # An admin's GET reaches any project's server through any project's URL.
    servers = [server("victim", "p1")] + [server(f"a{n}", "p0") for n in range(others)]
    mock = await make_mock_cloud(fleet=fleet(*servers), transition_delay=0.05)
    ids = read_ids("ids.txt", "\n".join(sid(s["name"]) for s in servers))
    request = RunRequest(selector=Selector(ids=ids, ids_source="ids.txt"), options=run_options())
    report = await runner(mock, request, projects=[pid(mock, "p0")], admin=True)
    victim = next(s for s in report.servers if s.id == sid("victim"))
    assert victim.outcome is Outcome.NOT_FOUND
    assert mock.accepted_stops()[sid("victim")] == 0


async def test_a_report_path_that_is_a_directory_is_refused_before_sending(
    make_mock_cloud: MakeMock, runner: Runner, tmp_path: Path
) -> None:
    mock = await make_mock_cloud(fleet=fleet(server("a")))
    (tmp_path / "outdir").mkdir()
    request = RunRequest(
        selector=Selector(select_all=True), options=run_options(), report_path="outdir"
    )
    with pytest.raises(UsageError, match="exists and is not a file"):
        await runner(mock, request)
    assert not [r for r in mock.requests if r.kind == "action"]


async def test_a_plan_whose_dry_run_was_refused_is_refused(
    make_mock_cloud: MakeMock, runner: Runner, tmp_path: Path
) -> None:
    mock = await make_mock_cloud(fleet=fleet(server("a"), server("b")))
    plan = RunRequest(
        selector=Selector(select_all=True),
        options=run_options(dry_run=True, rails=Rails(max_servers=1)),
        report_path=str(tmp_path / "plan.json"),
    )
    dry = await runner(mock, plan)
    assert dry.halted_by is not None
    with pytest.raises(RefusedError, match="dry run was refused"):
        load_plan(str(tmp_path / "plan.json"), max_age=timedelta(hours=1), now=utc_now())
