"""Reports round-trip through JSON, derive their summaries, and are written atomically."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.errors import InputError
from bulkstop.models import ErrorInfo, Outcome, ServerResult
from bulkstop.record.report import (
    SCHEMA,
    Report,
    exit_code,
    read_report,
    render_summary,
    write_report,
)

texts = st.text(max_size=30)
results = st.builds(
    ServerResult,
    id=st.uuids().map(str),
    project_id=st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    name=texts,
    outcome=st.sampled_from(Outcome),
    http_status=st.none() | st.integers(min_value=100, max_value=599),
    attempts=st.integers(min_value=0, max_value=50),
    error=st.none() | st.builds(ErrorInfo, code=texts, message=texts),
    reason=st.none() | texts,
    request_id=st.none() | texts,
    elapsed=st.none() | st.integers(min_value=0, max_value=10**6).map(lambda n: n / 10_000),
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def report_of(servers: tuple[ServerResult, ...], **kwargs: object) -> Report:
    start = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    fields: dict[str, object] = {
        "action": "stop",
        "dry_run": False,
        "started_at": start,
        "finished_at": start + timedelta(seconds=3),
        "servers": servers,
        **kwargs,
    }
    return Report(**fields)  # type: ignore[arg-type]


class TestRoundTrip:
    """What is written is what is read."""

    @given(st.lists(results, max_size=20).map(tuple), moments, st.none() | texts)
    def test_json_round_trip(
        self, servers: tuple[ServerResult, ...], started: datetime, halted: str | None
    ) -> None:
        report = report_of(servers, started_at=started, finished_at=started, halted_by=halted)
        document = json.loads(json.dumps(report.to_dict()))
        assert Report.from_dict(document) == report

    @given(st.lists(results, max_size=30).map(tuple))
    def test_summary_counts_every_server_once(self, servers: tuple[ServerResult, ...]) -> None:
        document = report_of(servers).to_dict()
        assert document["schema"] == SCHEMA
        assert document["summary"]["selected"] == len(servers)
        assert sum(document["summary"]["outcomes"].values()) == len(servers)
        assert sum(p["selected"] for p in document["projects"].values()) == len(servers)
        sent = [s for s in servers if s.http_status is not None]
        assert sum(document["summary"]["http_status"].values()) == len(sent)


class TestFiles:
    """Atomic owner-only writes; clear errors on bad files."""

    def test_written_owner_only_and_readable(self, tmp_path: Path) -> None:
        path = tmp_path / "r.json"
        server = ServerResult(
            id="95bf2490-5428-432c-ad9b-5e3406f869dd",
            project_id="p",
            outcome=Outcome.ACCEPTED,
            http_status=202,
        )
        report = report_of((server,))
        write_report(report, str(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert read_report(str(path)) == report
        assert [p.name for p in tmp_path.iterdir()] == ["r.json"]

    def test_not_a_report(self, tmp_path: Path) -> None:
        path = tmp_path / "x.json"
        path.write_text('{"servers": []}')
        with pytest.raises(InputError, match="not a bulkstop report"):
            read_report(str(path))

    def test_invalid_json_names_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "x.json"
        path.write_text('{\n"schema": \n')
        with pytest.raises(InputError, match=r"x.json:3: invalid JSON"):
            read_report(str(path))


class TestExitCodes:
    """0 clean, 1 failures, 4 halted by a rail, 130 interrupted."""

    @pytest.mark.parametrize(
        ("outcome", "halted", "code"),
        [
            (Outcome.ACCEPTED, None, 0),
            (Outcome.ALREADY_STOPPED, None, 0),
            (Outcome.FAILED, None, 1),
            (Outcome.NOT_FOUND, None, 1),
            (Outcome.NOT_ATTEMPTED, "deadline", 4),
            (Outcome.NOT_ATTEMPTED, "interrupted", 130),
        ],
    )
    def test_exit_code(self, outcome: Outcome, halted: str | None, code: int) -> None:
        server = ServerResult(id="i", project_id="p", outcome=outcome)
        assert exit_code(report_of((server,), halted_by=halted)) == code

    def test_summary_names_outcomes_and_common_errors(self) -> None:
        failure = ErrorInfo(code="forbidden", message="policy")
        failed = [
            ServerResult(id=str(n), project_id="p", outcome=Outcome.FAILED, error=failure)
            for n in range(3)
        ]
        servers = (*failed, ServerResult(id="ok", project_id="q", outcome=Outcome.ACCEPTED))
        text = render_summary(report_of(servers))
        assert "4 selected" in text
        assert "failed" in text and "accepted" in text
        assert "3 x forbidden: policy" in text
