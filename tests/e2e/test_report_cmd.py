"""``bulkstop report``: a report (or a journal) read back as a summary, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest
from click.testing import CliRunner, Result
from processes import run_bulkstop

from bulkstop.cli import main
from bulkstop.execute.engine import Plan
from bulkstop.mockcloud import MockCloud
from bulkstop.models import Action, ErrorInfo, Outcome, Server, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.record.journal import Journal
from bulkstop.record.report import Report, write_report
from bulkstop.select.selector import Selector

STARTED: Final = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
P1, P2 = "a" * 32, "b" * 32
THROTTLED = ErrorInfo(code="overLimit", message="Rate limit exceeded")
BROKEN = ErrorInfo(code="HTTP 500", message="Internal Server Error")


def result(n: int, outcome: Outcome, **fields: object) -> ServerResult:
    return ServerResult(
        id=f"00000000-0000-4000-8000-{n:012d}",
        project_id=P1 if n % 2 else P2,
        name=f"srv-{n}",
        outcome=outcome,
        **fields,  # type: ignore[arg-type]
    )


SERVERS: Final = (
    *(result(i, Outcome.ACCEPTED, http_status=202, attempts=1, elapsed=i / 100) for i in range(8)),
    result(8, Outcome.FAILED, http_status=429, attempts=5, error=THROTTLED, elapsed=9.5),
    result(9, Outcome.FAILED, http_status=429, attempts=5, error=THROTTLED, elapsed=8.25),
    result(10, Outcome.FAILED, http_status=500, attempts=5, error=BROKEN, elapsed=1.0),
    result(11, Outcome.ALREADY_STOPPED, reason="already SHUTOFF"),
    result(12, Outcome.NOT_ATTEMPTED, reason="interrupted"),
)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["report", *args], catch_exceptions=False)


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.json"
    report = Report(
        action="stop",
        dry_run=False,
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=42),
        servers=SERVERS,
        halted_by="interrupted",
    )
    write_report(report, str(path))
    return path


class TestTable:
    """The human summary: outcomes, per project, the commonest errors, the slowest requests."""

    def test_summarises_outcomes_projects_errors_and_slowest(self, report_file: Path) -> None:
        result = invoke(str(report_file))
        assert result.exit_code == 0, result.stderr
        text = result.stdout
        assert text.startswith("bulkstop stop: 13 selected in 42.0s\n")
        assert "  accepted               8\n  already_stopped        1\n" in text
        assert "  failed                 3\n  not_attempted          1\n" in text
        assert "  halted: interrupted\n" in text
        assert f"    {P1}: accepted 4, already_stopped 1, failed 1\n" in text
        assert f"    {P2}: accepted 4, failed 2, not_attempted 1\n" in text
        errors = text.split("most common errors:\n")[1].splitlines()
        assert errors[:2] == [
            "         2 x overLimit: Rate limit exceeded",
            "         1 x HTTP 500: Internal Server Error",
        ]
        slowest = text.split("slowest requests:\n")[1].splitlines()
        assert len(slowest) == 5
        assert [line.split()[0] for line in slowest] == [
            "9.500s",
            "8.250s",
            "1.000s",
            "0.070s",
            "0.060s",
        ]
        assert "srv-8  failed (5 attempts)" in slowest[0]


class TestMachineFormats:
    """JSON for programs, CSV for spreadsheets."""

    def test_json_is_the_report_document(self, report_file: Path) -> None:
        result = invoke(str(report_file), "--format", "json")
        assert result.exit_code == 0
        assert json.loads(result.stdout) == json.loads(report_file.read_text())

    def test_csv_has_one_row_per_server(self, report_file: Path) -> None:
        result = invoke(str(report_file), "--format", "csv")
        assert result.exit_code == 0
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["id"] for r in rows] == [s.id for s in SERVERS]
        throttled = rows[8]
        assert throttled["outcome"] == "failed"
        assert throttled["error_code"] == "overLimit"
        assert throttled["error_message"] == "Rate limit exceeded"
        assert (throttled["http_status"], throttled["attempts"]) == ("429", "5")
        assert rows[11]["reason"] == "already SHUTOFF"
        assert rows[11]["http_status"] == rows[11]["elapsed"] == ""


class TestJournal:
    """A killed run wrote no report: its journal says where it got to."""

    @pytest.fixture
    def journal_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "run.journal.jsonl"
        entries = tuple(PlanEntry(server=_server(s), scope=s.project_id) for s in SERVERS[:4])
        journal = Journal(str(path))
        journal.start(
            action=Action.STOP,
            started_at=STARTED,
            selector=Selector(tags=("nightly-stop",)).describe(),
            options={},
            command=(),
            report_path="run.json",
            plan=Plan(entries=entries),
        )
        for entry, done in zip(entries[:3], SERVERS[:2], strict=False):
            journal.sending(entry)
            journal.finished(done)
        journal.sending(entries[2])  # sent, no answer before the kill
        journal.close(halted_by=None)
        # A kill leaves no end record, and maybe half a line.
        lines = path.read_bytes().splitlines(keepends=True)[:-1]
        path.write_bytes(b"".join(lines) + b'{"type":"outc')
        return path

    def test_table_says_how_to_finish(self, journal_file: Path) -> None:
        result = invoke(str(journal_file))
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == (
            f"journal {journal_file}: 1 part(s), the last did not end (killed or still running)"
        )
        assert "  a torn last line was ignored" in lines
        assert f"  2 server(s) unfinished: bulkstop stop --resume {journal_file}" in lines
        assert "halted: interrupted" in result.stdout

    def test_json_marks_sent_as_unknown_and_the_rest_not_attempted(
        self, journal_file: Path
    ) -> None:
        result = invoke(str(journal_file), "--format", "json")
        document = json.loads(result.stdout)
        outcomes = [s["outcome"] for s in document["servers"]]
        assert outcomes == ["accepted", "accepted", "failed", "not_attempted"]
        assert "state unknown" in document["servers"][2]["reason"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ('{"servers": []}', "not a bulkstop report"),
        ("[1, 2", "invalid JSON"),
    ],
)
def test_what_is_not_a_report_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    result = invoke(str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith("bulkstop: error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_python_m_bulkstop_report(report_file: Path) -> None:
    result = run_bulkstop("report", str(report_file), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + len(SERVERS)


def _server(s: ServerResult) -> Server:
    return Server(id=s.id, project_id=s.project_id, name=s.name, tags=frozenset())


def test_slowest_requests_time_the_requests_not_the_queue(
    cloud: Callable[..., MockCloud], bulkstop: Callable[..., Result], tmp_path: Path
) -> None:
    cloud(servers=30, projects=1, seed=1)
    # 20 requests/s: the last stops wait about a second for their turn, but each is quick.
    run = bulkstop("stop", "--all", "--rate", "20", "--yes", "--quiet", "--report", "r.json")
    assert run.exit_code == 0, run.stderr
    result = invoke("r.json")
    slowest = result.stdout.split("slowest requests:\n")[1].splitlines()
    assert slowest and all(float(line.split()[0].rstrip("s")) < 0.5 for line in slowest)
