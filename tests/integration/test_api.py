"""The front door (``import bulkstop``) against the mock cloud over loopback.

Every run here goes through :mod:`bulkstop.api` as a script would: credentials from a
clouds.yaml entry or the ``OS_*`` environment, selectors as plain values, files only where
asked. The blocking twins run in a worker thread (they start their own event loop there) while
the mock serves on the test's loop.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import pytest
from fleets import TAG, fleet, pid, server, sid
from recovery_helpers import actions, assert_each_once

import bulkstop
from bulkstop.execute.engine import Observer
from bulkstop.mockcloud import MockCloud, MockConfig
from bulkstop.models import Outcome, ServerResult
from bulkstop.record.journal import read_journal
from bulkstop.record.report import read_report

MakeMock = Callable[..., Awaitable[MockCloud]]
#: The ``use_env`` fixture (tests/integration/conftest.py).
UseEnv = Callable[[dict[str, str]], None]

README: Final = Path(__file__).resolve().parents[2] / "README.md"
#: The heading of the README's evacuation script; the first Python block after it is run.
EVACUATION_HEADING: Final = "### An evacuation in ten lines"
#: Fast enough for the mock's transitions.
POLL: Final = 0.05


def readme_snippet(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


def exists(path: str) -> bool:
    return Path(path).exists()


def same_file(path: str | None, other: str) -> bool:
    return path is not None and Path(path).resolve() == Path(other).resolve()


@pytest.fixture
async def fleet_mock(make_mock_cloud: MakeMock) -> MockCloud:
    """Ten tagged active servers and one stopped one in p0, five tagged in p1; fast moves."""
    servers = [server(f"a{n}") for n in range(10)]
    servers += [server("off", vm_state="stopped")]
    servers += [server(f"b{n}", "p1") for n in range(5)]
    return await make_mock_cloud(MockConfig(fleet=fleet(*servers), transition_delay=0.02))


@pytest.fixture
async def as_member(fleet_mock: MockCloud, use_env: UseEnv) -> MockCloud:
    """The mock's member credentials in ``OS_*``, as a script's shell would have them."""
    use_env(fleet_mock.os_env())
    return fleet_mock


class TestReadme:
    """The README's evacuation script runs as printed."""

    async def test_the_evacuation_script_stops_the_listed_servers_and_prints_the_summary(
        self,
        make_mock_cloud: MakeMock,
        isolated_openstack_env: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        code = readme_snippet(EVACUATION_HEADING)
        assert len(code.strip().splitlines()) <= 10
        project = re.search(r'projects=\["([0-9a-f]{32})"\]', code)
        assert project is not None, "the snippet names one project id"
        # A mock whose project has the README's id, a neighbour the script must not touch.
        doc = {
            "projects": [
                {"id": project.group(1), "name": "evac"},
                {"id": "0" * 31 + "1", "name": "other"},
            ],
            "servers": [
                *(server(f"e{n}", "evac") for n in range(6)),
                server("e-off", "evac", vm_state="stopped"),
                server("bystander", "other"),
            ],
        }
        mock = await make_mock_cloud(MockConfig(fleet=doc, transition_delay=0.02))
        mock.write_clouds_yaml(isolated_openstack_env, cloud="prod", project_id=project.group(1))
        listed = [sid(f"e{n}") for n in range(6)] + [sid("e-off")]
        write("evac.csv", "id\n" + "\n".join(listed) + "\n")

        await anyio.to_thread.run_sync(exec, compile(code, "README.md", "exec"), {})

        assert {mock.servers[s].vm_state for s in listed} == {"stopped"}
        assert actions(mock) == dict.fromkeys(listed[:6], 1)  # not the one already off
        assert mock.servers[sid("bystander")].vm_state == "active"
        report = read_report("evac.json")
        assert report.outcomes == {"stopped": 6, "already_stopped": 1}
        assert read_journal("evac.journal.jsonl").ended
        out = capsys.readouterr().out
        assert "bulkstop stop: 7 selected" in out and "stopped" in out


class TestStop:
    """:func:`bulkstop.stop`: selectors as plain values, records only where asked."""

    async def test_tags_with_a_report_keep_the_journal_beside_it(
        self, as_member: MockCloud, tmp_path: Path
    ) -> None:
        mock = as_member
        result = await bulkstop.stop(
            tags=TAG,
            projects=[pid(mock, "p0")],
            rate=0,
            wait=True,
            poll_interval=POLL,
            report=tmp_path / "night.json",
        )
        assert isinstance(result, bulkstop.RunResult)
        assert result.report_path == str(tmp_path / "night.json")
        assert result.journal_path == str(tmp_path / "night.journal.jsonl")
        written = read_report(result.report_path).servers
        assert [(s.id, s.outcome) for s in written] == [
            (s.id, s.outcome) for s in result.report.servers
        ]
        assert read_journal(result.journal_path).ended
        assert result.report.outcomes == {"stopped": 10, "already_stopped": 1}
        assert result.exit_code == 0 and not result.resumable
        assert set(actions(mock)) == {sid(f"a{n}") for n in range(10)}  # not one of p1's
        # A script's report has the run's timeline, as the CLI's does (for metrics, the plot).
        timeline = read_report(result.report_path).timeline
        assert timeline is not None and timeline == result.report.timeline
        stopped = timeline["projects"][pid(mock, "p0")]["outcomes"]["stopped"]
        assert sum(stopped.values()) == 10

    async def test_without_a_report_nothing_is_written(self, as_member: MockCloud) -> None:
        result = await bulkstop.stop(ids=[sid("a0"), sid("a1")], rate=0)
        assert result.report_path is None and result.journal_path is None
        assert list(Path.cwd().iterdir()) == [Path.cwd() / "clouds.yaml"]
        assert {s.outcome for s in result.report.servers} == {Outcome.ACCEPTED}

    @pytest.mark.parametrize("journal", [False, "elsewhere.jsonl"])
    async def test_the_journal_parameter_overrides_the_default(
        self, as_member: MockCloud, journal: bool | str
    ) -> None:
        result = await bulkstop.stop(ids=[sid("a0")], rate=0, report="r.json", journal=journal)
        assert result.journal_path == (journal or None)
        assert not exists("r.journal.jsonl")
        if journal:
            assert read_journal(str(journal)).ended

    async def test_an_id_file_naming_projects_decides_where_to_act(
        self, as_member: MockCloud
    ) -> None:
        mock = as_member
        p1 = pid(mock, "p1")
        write("evac.csv", f"id,project_id\n{sid('b0')},{p1}\n{sid('b1')},{p1}\n")
        result = await bulkstop.stop(ids="evac.csv", rate=0)
        assert result.report.selector["projects"] == [p1]
        assert set(actions(mock)) == {sid("b0"), sid("b1")}

    async def test_a_dry_run_sends_nothing_and_keeps_no_journal(self, as_member: MockCloud) -> None:
        result = await bulkstop.stop(tags=[TAG], dry_run=True, report="plan.json")
        assert result.journal_path is None and not exists("plan.journal.jsonl")
        assert result.report.outcomes["planned"] == 10
        assert not actions(as_member)

    async def test_a_plan_is_executed_exactly(self, as_member: MockCloud) -> None:
        await bulkstop.stop(ids=[sid("a0"), sid("a1")], dry_run=True, report="plan.json")
        result = await bulkstop.stop(plan="plan.json", rate=0)
        assert set(actions(as_member)) == {sid("a0"), sid("a1")}
        assert result.report.options["plan"] == "plan.json"


class TestStartAndUndo:
    """:func:`bulkstop.start` and :func:`bulkstop.undo`."""

    async def test_undo_starts_exactly_what_the_stop_stopped(self, as_member: MockCloud) -> None:
        mock = as_member
        stopped = await bulkstop.stop(tags=TAG, rate=0, wait=True, poll_interval=POLL)
        undone = await bulkstop.undo(stopped, rate=0, wait=True, poll_interval=POLL)
        ran = {sid(f"a{n}") for n in range(10)}
        assert_each_once(undone.report, ran)
        assert {s.outcome for s in undone.report.servers} == {Outcome.STARTED}
        assert set(actions(mock, "os-start")) == ran
        assert mock.servers[sid("off")].vm_state == "stopped"  # off before the stop run

    async def test_undo_reads_a_report_path(self, as_member: MockCloud) -> None:
        # Waits for SHUTOFF: a server still powering off would be skipped by the undo.
        await bulkstop.stop(ids=[sid("a0")], rate=0, wait=True, poll_interval=POLL, report="s.json")
        undone = await bulkstop.undo("s.json", rate=0, report="undo.json")
        assert undone.journal_path == "undo.journal.jsonl"
        assert undone.report.action == "start"
        assert set(actions(as_member, "os-start")) == {sid("a0")}

    async def test_start_selects_like_stop(self, as_member: MockCloud) -> None:
        result = await bulkstop.start(ids=[sid("off")], rate=0)
        assert [s.outcome for s in result.report.servers] == [Outcome.ACCEPTED]


class CancelAfter(Observer):
    """Cancels ``scope`` once ``n`` servers have a result: a run killed mid-way."""

    def __init__(self, scope: anyio.CancelScope, n: int) -> None:
        self.scope, self.left = scope, n

    def finished(self, result: ServerResult) -> None:
        self.left -= 1
        if self.left == 0:
            self.scope.cancel()


class TestResume:
    """:func:`bulkstop.resume` from a journal's path or a result."""

    async def test_a_killed_run_resumes_with_its_recorded_options(
        self, as_member: MockCloud
    ) -> None:
        mock = as_member
        await killed_run(mock)
        result = await bulkstop.resume("run.journal.jsonl")
        assert result.journal_path == "run.journal.jsonl"
        assert same_file(result.report_path, "run.json")
        assert set(mock.accepted_stops().values()) == {1}
        assert set(mock.accepted_stops()) == {sid(f"a{n}") for n in range(10)}
        options = result.report.options
        assert (options["rate"], options["concurrency"], options["max_attempts"]) == (40, 2, 3)
        assert options["resumed_from"] == "run.journal.jsonl"
        assert not read_journal("run.journal.jsonl").unfinished

    async def test_given_options_win_over_recorded_ones(self, as_member: MockCloud) -> None:
        await killed_run(as_member)
        result = await bulkstop.resume("run.journal.jsonl", rate=0, concurrency=8)
        options = result.report.options
        assert (options["rate"], options["concurrency"], options["max_attempts"]) == (0, 8, 3)

    async def test_a_finished_result_resumes_to_nothing_more(self, as_member: MockCloud) -> None:
        done = await bulkstop.stop(ids=[sid("a0")], rate=0, report="one.json")
        again = await bulkstop.resume(done)
        assert actions(as_member) == {sid("a0"): 1}
        assert again.report.outcomes == {"accepted": 1}

    async def test_a_result_without_a_journal_cannot_be_resumed(self, as_member: MockCloud) -> None:
        done = await bulkstop.stop(ids=[sid("a0")], rate=0)
        with pytest.raises(bulkstop.ParameterError, match=r"^journal: this run kept no journal"):
            await bulkstop.resume(done)


async def killed_run(mock: MockCloud) -> None:
    """A stop of p0's tagged servers (rate 40, concurrency 2, 3 attempts) cancelled after four
    results, journal and report at ``run.*``."""
    with anyio.CancelScope() as killed:
        await bulkstop.stop(
            tags=TAG,
            projects=[pid(mock, "p0")],
            rate=40,
            concurrency=2,
            max_attempts=3,
            report="run.json",
            observer=CancelAfter(killed, 4),
        )
    assert killed.cancelled_caught
    assert 0 < len(actions(mock)) < 10


class TestBlockingTwins:
    """``run_*``: the coroutines, run to the end on their own event loop."""

    async def test_run_stop_then_run_undo(self, as_member: MockCloud) -> None:
        stopped = await anyio.to_thread.run_sync(
            lambda: bulkstop.run_stop(
                ids=[sid("a0"), sid("a1")], rate=0, wait=True, poll_interval=POLL, report="s.json"
            )
        )
        undone = await anyio.to_thread.run_sync(lambda: bulkstop.run_undo(stopped, rate=0))
        assert stopped.journal_path == "s.journal.jsonl"
        assert set(actions(as_member, "os-start")) == {sid("a0"), sid("a1")}
        assert undone.exit_code == 0

    def test_a_twin_has_its_coroutines_parameters(self) -> None:
        import inspect

        pairs: list[tuple[Any, Any]] = [
            (bulkstop.stop, bulkstop.run_stop),
            (bulkstop.start, bulkstop.run_start),
            (bulkstop.resume, bulkstop.run_resume),
            (bulkstop.undo, bulkstop.run_undo),
        ]
        for coroutine, twin in pairs:
            assert inspect.signature(twin) == inspect.signature(coroutine)
            assert twin.__name__ == f"run_{coroutine.__name__}"
            assert not inspect.iscoroutinefunction(twin)
