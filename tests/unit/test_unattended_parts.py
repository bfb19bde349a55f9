"""Unit tests of the pieces behind unattended runs: URL redaction, metrics, timeline, log format."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from bulkstop.cli import log
from bulkstop.cli.log import detect
from bulkstop.models import Outcome, ServerResult
from bulkstop.record.metrics import LAST_SUCCESS, RunMetrics, write_metrics_file
from bulkstop.record.notify import send, slack_text
from bulkstop.record.plot import PANELS, plot_run
from bulkstop.record.report import Report
from bulkstop.record.runend import RunEnd
from bulkstop.record.timeline import MAX_BUCKETS, Timeline, series
from bulkstop.redaction import redact_url

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def report(*outcomes: Outcome, halted_by: str | None = None) -> Report:
    servers = tuple(
        ServerResult(id=f"id{n}", project_id="p", name=f"s{n}", outcome=o, attempts=2)
        for n, o in enumerate(outcomes)
    )
    return Report(
        action="stop",
        dry_run=False,
        started_at=NOW,
        finished_at=NOW,
        servers=servers,
        halted_by=halted_by,
    )


class TestRedaction:
    """Only scheme, host and port of a webhook URL are ever shown."""

    @given(secret=st.text(st.characters(codec="ascii", exclude_characters="#?/@"), min_size=1))
    def test_the_path_never_shows(self, secret: str) -> None:
        shown = redact_url(f"https://hooks.example.com/services/{secret}?token={secret}")
        assert shown == "https://hooks.example.com/***"

    def test_credentials_and_ports(self) -> None:
        assert redact_url("http://user:pw@127.0.0.1:9091") == "http://127.0.0.1:9091/***"
        assert redact_url("http://gateway:9091") == "http://gateway:9091"


class TestMetrics:
    """The file parses back; a failed run carries the last success over."""

    def end(self, code: int, r: Report | None) -> RunEnd:
        return RunEnd(action="stop", exit_code=code, finished_at=NOW, duration=2.5, report=r)

    def test_carry_over(self, tmp_path: Path) -> None:
        path = str(tmp_path / "m.prom")
        write_metrics_file(path, RunMetrics(end=self.end(0, report(Outcome.ACCEPTED))))
        later = RunEnd(action="stop", exit_code=5, finished_at=NOW.replace(day=29), duration=1.0)
        write_metrics_file(path, RunMetrics(end=later))
        samples = {
            s.name: s.value
            for f in text_string_to_metric_families(Path(path).read_text())
            for s in f.samples
        }
        assert samples[LAST_SUCCESS] == NOW.timestamp()
        assert samples["bulkstop_exit_code"] == 5

    def test_the_halting_rail_and_retries(self) -> None:
        end = self.end(4, report(Outcome.FAILED, halted_by="canary: 1 of 1 did not reach SHUTOFF"))
        families = {f.name: f for f in RunMetrics(end=end).collect()}
        (halted,) = families["bulkstop_halted"].samples
        assert halted.labels["rail"] == "canary" and halted.value == 1
        assert families["bulkstop_retries"].samples[0].value == 1
        assert LAST_SUCCESS not in families  # nothing to carry over: no previous success

    def test_slack_names_the_failures(self) -> None:
        end = self.end(1, report(Outcome.FAILED, Outcome.ACCEPTED))
        text = slack_text(end)
        assert "exit 1" in text and "failed 1" in text and "id0" in text


def test_send_gives_up_quietly() -> None:
    pauses: list[float] = []
    problem = send("http://127.0.0.1:1/hook/secret", {}, timeout=1, pause=0.5, sleep=pauses.append)
    assert problem is not None and "secret" not in problem
    assert pauses == [0.5, 1.0]


class TestTimeline:
    """Counters per project and second, on a fake clock."""

    def test_counts(self) -> None:
        now = [100.0]
        timeline = Timeline(clock=lambda: now[0])
        timeline.answered("p", throttled=False, hold=None)
        now[0] = 101.5
        timeline.answered("p", throttled=True, hold=2.0)
        timeline.finished(report(Outcome.ACCEPTED).servers[0])
        doc = timeline.to_dict()["projects"]["p"]
        assert doc["calls"] == {"0": 1, "1": 1} and doc["throttles"] == {"1": 1}
        assert doc["holds"] == {"1": 2.0}
        assert series(doc["outcomes"]["accepted"], length=3) == [0, 1, 0]


def test_log_format_detection(monkeypatch: object) -> None:
    assert detect(["--log-format", "json", "stop"]) == "json"
    assert detect(["stop", "--log-format=json", "--log-format", "text"]) == "text"
    assert detect(["stop", "--", "--log-format", "json"]) == "text"


def test_a_long_run_is_written_in_wider_buckets(tmp_path: Path) -> None:
    now = [0.0]
    timeline = Timeline(clock=lambda: now[0])
    for second in (0.5, 1.5, 7199.0):
        now[0] = second
        timeline.answered("p", throttled=True, hold=float(second))
    doc = timeline.to_dict()
    assert doc["interval"] == 2 == -(-7200 // MAX_BUCKETS)
    assert doc["projects"]["p"]["calls"] == {"0": 2, "3599": 1}
    assert doc["projects"]["p"]["holds"] == {"0": 1.5, "3599": 7199.0}
    # And it draws: the x axis in seconds, the rates per second.
    r = Report(
        action="stop", dry_run=False, started_at=NOW, finished_at=NOW, servers=(), timeline=doc
    )
    assert plot_run(r, str(tmp_path / "long.png")) == PANELS
    assert (tmp_path / "long.png").stat().st_size > 0


def test_a_json_log_line_masks_credentials_in_urls(capsys: pytest.CaptureFixture[str]) -> None:
    log.set_format("json")
    try:
        log.event("warning", level="warning", message="cannot reach http://alice:s3cret@nova/v2.1")
    finally:
        log.set_format("text")
    line = json.loads(capsys.readouterr().err)
    assert line["message"] == "cannot reach http://***@nova/v2.1"


def test_ctrl_c_while_telling_keeps_the_runs_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    # A slow webhook, Ctrl-C: the run already ended with its code; the telling stops, the
    # exit is not turned into "interrupted; nothing was sent".
    from bulkstop.cli import unattended
    from bulkstop.models import Action

    def interrupted(end: RunEnd, settings: unattended.Unattended) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(unattended, "tell", interrupted)
    params = {
        "metrics_file": None,
        "pushgateway": None,
        "metrics_labels": (),
        "notify_urls": ("https://hooks.example/x",),
        "notify_format": "json",
    }
    with pytest.raises(SystemExit) as done, unattended.after_run(Action.STOP, params):
        raise SystemExit(1)
    assert done.value.code == 1
