"""Proof by fault: kill ``bulkstop stop`` anywhere, resume it, and nothing is lost or done twice.

The command and the mock cloud run as real processes. A run is killed (SIGKILL, SIGINT or
SIGTERM) at a random moment of its execution, then finished with ``bulkstop stop --resume``;
the mock's request journal must then show exactly one accepted stop for every server the run
selected to stop and no stop for any other server, and the final report must hold every
selected server once with no failure.

``BULKSTOP_KILL_POINTS`` (default 8) sets how many random SIGKILL points are tried and
``BULKSTOP_KILL_SEED`` seeds them; a failure names the point and its delay.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import Result
from fleets import TAG
from processes import PROCESS_TIMEOUT, StandaloneMock, wait_for

KILL_POINTS: Final = int(os.environ.get("BULKSTOP_KILL_POINTS", "8"))
KILL_SEED: Final = int(os.environ.get("BULKSTOP_KILL_SEED", "20261128"))
#: Requests per second per project: the ~60 stops of the fleet take about 0.6 s.
RATE: Final = "50"
#: Kills land uniformly within this many seconds after the journal's header is written
#: (a little past the end of the run, so some land after it finished).
KILL_WINDOW: Final = 0.8
#: A torn line as a kill (or a power loss) mid-write leaves it.
TORN_LINE: Final = b'{"type":"outcome","id":"3f1c'


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """What a dry run says the command selects."""

    #: Every server of the report, and its outcome.
    outcomes: dict[str, str]

    @property
    def to_stop(self) -> set[str]:
        """The servers that get a stop."""
        return {sid for sid, outcome in self.outcomes.items() if outcome == "planned"}


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneMock]:
    """A seeded fleet in 2 projects: every outcome occurs (error, locked, protected, off...)."""
    served = StandaloneMock(
        tmp_path_factory.mktemp("mock"),
        *("--servers", "240", "--projects", "2", "--seed", "5"),
        *("--latency", "0.02", "--transition-delay", "0.1"),
    )
    try:
        yield served
    finally:
        served.close()


@pytest.fixture(scope="module")
def selection(mock: StandaloneMock) -> Selection:
    mock.reset()
    result = mock.invoke(
        *("stop", "--tag", TAG, *mock.projects, "--dry-run", "--quiet", "--report", "-")
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    selected = Selection(outcomes={s["id"]: s["outcome"] for s in report["servers"]})
    assert len(selected.to_stop) > 40
    assert set(selected.outcomes.values()) > {"planned", "already_stopped", "excluded"}
    return selected


def start_stop(mock: StandaloneMock, work: Path) -> subprocess.Popen[str]:
    """``bulkstop stop`` of the tagged servers, report and journal in ``work``."""
    work.mkdir()
    return mock.spawn_bulkstop(
        *("stop", "--tag", TAG, *mock.projects, "--rate", RATE, "--concurrency", "8"),
        *("--yes", "--quiet", "--report", "run.json"),
        cwd=work,
    )


def journal_started(work: Path, process: subprocess.Popen[str]) -> bool:
    """True once the journal has its header (execution is starting), or the process ended."""
    journal = work / "run.journal.jsonl"
    return process.poll() is not None or (journal.exists() and b"\n" in journal.read_bytes())


def resume(mock: StandaloneMock, work: Path) -> Result:
    """``bulkstop stop --resume`` of the run in ``work`` (in-process: only the run is killed)."""
    return mock.invoke("stop", "--resume", str(work / "run.journal.jsonl"), "--yes", "--quiet")


def assert_done_exactly_once(mock: StandaloneMock, selection: Selection, work: Path) -> None:
    """Every selected server stopped once, nothing else touched; the report says so."""
    stops = mock.requests()
    accepted = mock.accepted()
    assert set(accepted) == selection.to_stop, "a selected server was not stopped"
    assert max(accepted.values()) == 1, f"stopped twice: {accepted.most_common(3)}"
    assert {r["server_id"] for r in stops} <= selection.to_stop, "a stop went astray"
    report: dict[str, Any] = json.loads((work / "run.json").read_text())
    ids = Counter(s["id"] for s in report["servers"])
    assert set(ids) == set(selection.outcomes) and max(ids.values()) == 1
    for entry in report["servers"]:
        expected = selection.outcomes[entry["id"]]
        wanted = {"accepted"} if expected == "planned" else {expected}
        assert entry["outcome"] in wanted, entry
    assert report["halted_by"] is None


def test_sigkill_at_random_points_then_resume(
    mock: StandaloneMock, selection: Selection, tmp_path: Path
) -> None:
    rng = random.Random(KILL_SEED)
    for point in range(KILL_POINTS):
        delay = rng.uniform(0.0, KILL_WINDOW)
        torn = point % 2 == 1
        where = f"kill point {point} (seed {KILL_SEED}): {delay:.3f}s, torn tail {torn}"
        mock.reset()
        work = tmp_path / f"kill-{point}"
        run = start_stop(mock, work)
        try:
            wait_for(lambda: journal_started(work, run), "the journal header")  # noqa: B023
            time.sleep(delay)
        finally:
            run.kill()
            run.communicate(timeout=PROCESS_TIMEOUT)
        if torn:
            with (work / "run.journal.jsonl").open("ab") as journal:
                journal.write(TORN_LINE)
        finished = resume(mock, work)
        assert finished.exit_code == 0, f"{where}: {finished.stderr}"
        try:
            assert_done_exactly_once(mock, selection, work)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_reports_all_then_resume_finishes(
    mock: StandaloneMock, selection: Selection, tmp_path: Path, signum: signal.Signals
) -> None:
    mock.reset()
    run = start_stop(mock, tmp_path / "run")
    wait_for(lambda: len(mock.requests()) >= 10 or run.poll() is not None, "the first stops")
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=PROCESS_TIMEOUT)
    assert run.returncode == 130, stderr
    assert "to finish: bulkstop stop --resume run.journal.jsonl" in stderr
    report = json.loads((tmp_path / "run" / "run.json").read_text())
    assert sorted(s["id"] for s in report["servers"]) == sorted(selection.outcomes)
    assert report["halted_by"] == "interrupted"
    assert report["summary"]["outcomes"].get("not_attempted", 0) > 0
    assert os.stat(tmp_path / "run" / "run.json").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "run" / "run.journal.jsonl").st_mode & 0o777 == 0o600

    finished = resume(mock, tmp_path / "run")
    assert finished.exit_code == 0, finished.stderr
    assert_done_exactly_once(mock, selection, tmp_path / "run")


def test_killed_before_the_journal_started_nothing_was_sent(
    mock: StandaloneMock, tmp_path: Path
) -> None:
    mock.reset()
    run = start_stop(mock, tmp_path / "run")
    run.kill()  # still importing: long before any request
    run.communicate(timeout=PROCESS_TIMEOUT)
    finished = resume(mock, tmp_path / "run")
    assert finished.exit_code == 2
    assert "cannot read journal" in finished.stderr
    assert mock.requests() == []


def test_a_second_signal_cuts_the_grace_short_and_resume_credits_the_hung_stops(
    tmp_path: Path,
) -> None:
    servers = [
        {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hung:{i}")), "project": "p0", "tags": [TAG]}
        for i in range(12)
    ]
    hung = [s["id"] for s in servers[:2]]
    (tmp_path / "fleet.json").write_text(json.dumps(servers))
    # The cloud carries out these two stops at once but answers only after 30 s.
    faults = {"default": {"slow": {"rate": 0, "servers": hung}, "slow_delay": 30}}
    (tmp_path / "faults.json").write_text(json.dumps(faults))
    mock = StandaloneMock(
        tmp_path,
        *("--fleet", str(tmp_path / "fleet.json"), "--faults-file", str(tmp_path / "faults.json")),
    )
    try:
        run = mock.spawn_bulkstop(
            "stop", "--tag", TAG, "--yes", "--quiet", "--report", "r.json", cwd=tmp_path
        )
        wait_for(lambda: len(mock.requests()) == len(servers), "every stop sent")
        run.send_signal(signal.SIGINT)  # the grace (10 s) starts: the hung stops may finish
        time.sleep(0.3)
        run.send_signal(signal.SIGINT)  # no more waiting
        second = time.monotonic()
        _, stderr = run.communicate(timeout=PROCESS_TIMEOUT)
        assert time.monotonic() - second < 3.0
        assert run.returncode == 130, stderr
        report = json.loads((tmp_path / "r.json").read_text())
        outcomes = {s["id"]: s for s in report["servers"]}
        assert set(outcomes) == {s["id"] for s in servers}
        for server_id in hung:
            assert outcomes[server_id]["outcome"] == "failed"
            assert "state unknown" in outcomes[server_id]["reason"]

        finished = mock.invoke("stop", "--resume", str(tmp_path / "r.journal.jsonl"), "--yes")
        assert finished.exit_code == 0, finished.stderr
        assert Counter(r["server_id"] for r in mock.requests()) == dict.fromkeys(
            (s["id"] for s in servers), 1
        )
        final = {s["id"]: s for s in json.loads((tmp_path / "r.json").read_text())["servers"]}
        for server_id in hung:
            assert final[server_id]["outcome"] == "accepted"
            assert "went through" in final[server_id]["reason"]
    finally:
        mock.close()


class TestCommandLine:
    """``--journal``, ``--resume`` and ``start --from-report`` as a user types them."""

    def stop(self, mock: StandaloneMock, *args: str) -> Result:
        return mock.invoke(
            *("stop", "--tag", TAG, *mock.projects, "--yes", "--quiet", "--rate", "0", *args)
        )

    def test_the_journal_sits_beside_the_report_and_is_never_overwritten(
        self, mock: StandaloneMock, tmp_path: Path
    ) -> None:
        mock.reset()
        report = tmp_path / "out" / "night.json"
        report.parent.mkdir()
        assert self.stop(mock, "--report", str(report)).exit_code == 0
        journal = tmp_path / "out" / "night.journal.jsonl"
        assert json.loads(journal.read_text().splitlines()[0])["report_path"] == str(report)
        first = journal.read_text()
        mock.reset()
        # The run ended: a nightly job reusing the name moves that journal aside, keeping it.
        assert self.stop(mock, "--report", str(report)).exit_code == 0
        (kept,) = [p for p in journal.parent.iterdir() if p.name.startswith(journal.name + ".")]
        assert kept.read_text() == first
        assert journal.read_text() != first
        # A journal whose run did not end (killed) is never moved: it can still be resumed.
        lines = journal.read_text().splitlines(keepends=True)
        journal.write_text("".join(lines[:-1]))
        mock.reset()
        again = self.stop(mock, "--report", str(report))
        assert again.exit_code == 2
        assert f"journal {journal} already exists and its run did not finish" in again.stderr
        assert mock.requests() == []

    def test_resume_repeats_the_recorded_options_unless_given_again(
        self, mock: StandaloneMock, tmp_path: Path
    ) -> None:
        mock.reset()
        report, journal = tmp_path / "r.json", tmp_path / "j.jsonl"
        first = self.stop(
            mock,
            *("--report", str(report), "--journal", str(journal)),
            *("--rate", "40", "--max-attempts", "3", "--concurrency", "6"),
        )
        assert first.exit_code == 0, first.stderr
        resumed = mock.invoke("stop", "--resume", str(journal), "--yes", "--rate", "30")
        assert resumed.exit_code == 0, resumed.stderr
        options = json.loads(report.read_text())["options"]
        assert (options["rate"], options["max_attempts"], options["concurrency"]) == (30, 3, 6)
        assert options["resumed_from"] == str(journal)

    @pytest.mark.parametrize(
        "extra",
        [("--tag", "x"), ("--ids-file", "ids.txt"), ("--dry-run",), ("--journal", "other.jsonl")],
    )
    def test_resume_refuses_a_second_selection(
        self, mock: StandaloneMock, tmp_path: Path, extra: tuple[str, ...]
    ) -> None:
        result = mock.invoke("stop", "--resume", str(tmp_path / "j.jsonl"), "--yes", *extra)
        assert result.exit_code == 2
        assert f"drop {extra[0]}" in result.stderr

    def test_undo_starts_exactly_what_the_stop_stopped(
        self, mock: StandaloneMock, selection: Selection, tmp_path: Path
    ) -> None:
        mock.reset()
        stopped = tmp_path / "stop.json"
        assert self.stop(mock, "--report", str(stopped)).exit_code == 0
        wait_for(mock.settled, "every stop to complete")  # a server still stopping is skipped
        undo = tmp_path / "undo.json"
        result = mock.invoke(
            *("start", "--from-report", str(stopped), "--rate", "0", "--yes", "--quiet"),
            *("--report", str(undo)),
        )
        assert result.exit_code == 0, result.stderr
        assert set(mock.accepted("os-start")) == selection.to_stop
        document = json.loads(undo.read_text())
        assert document["action"] == "start"
        assert {s["id"] for s in document["servers"]} == selection.to_stop
        assert (tmp_path / "undo.journal.jsonl").exists()
        # A start report cannot be undone by a start; resuming a start journal takes `start`.
        again = mock.invoke("start", "--from-report", str(undo), "--yes")
        assert again.exit_code == 2 and "only a stop run can be undone" in again.stderr
        wrong = mock.invoke("stop", "--resume", str(tmp_path / "undo.journal.jsonl"), "--yes")
        assert wrong.exit_code == 2
        assert "continue it with bulkstop start --resume" in wrong.stderr

    def test_undo_refuses_a_second_selection(self, mock: StandaloneMock, tmp_path: Path) -> None:
        result = mock.invoke("start", "--from-report", "r.json", "--all", "--yes")
        assert result.exit_code == 2 and "drop --all" in result.stderr
