"""Issue #12 end to end: metrics, notifications, JSON logs, the plot and --resume-unfinished,
through the ``bulkstop`` command against the mock cloud, with real receivers on loopback.

The receiver (:class:`Receiver`) is a stdlib HTTP server on 127.0.0.1 standing in for a webhook
endpoint and for a Prometheus Pushgateway: it records every request; a path under ``/broken``
answers 404.
"""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner
from fleets import TAG, fleet, server
from PIL import Image
from processes import PROCESS_TIMEOUT, StandaloneMock, wait_for
from prometheus_client.parser import text_string_to_metric_families

from bulkstop.cli import main
from bulkstop.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RECORD, EXIT_REFUSED, EXIT_USAGE
from bulkstop.mockcloud import Faults, MockCloud, MockConfig
from bulkstop.record.plot import DPI, FIGSIZE, PANELS, plot_run
from bulkstop.record.report import read_report

#: The secret part of the webhook URLs: it must never be shown or recorded.
SECRET: Final = "T000/B000/s3cr3t"
FLEET: Final = fleet(*(server(f"s{i:02d}", "p0" if i % 2 else "p1") for i in range(12)))


@dataclass(frozen=True, slots=True)
class Received:
    """One request the receiver got."""

    method: str
    path: str
    body: bytes


class Receiver:
    """A loopback HTTP server that records what it is sent."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(Received(self.command, self.path, self.rfile.read(length)))
                self.send_response(404 if self.path.startswith("/broken") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def json_posts(self, prefix: str) -> list[dict[str, Any]]:
        """The JSON bodies POSTed under ``prefix``."""
        return [json.loads(r.body) for r in self.received if r.path.startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(PROCESS_TIMEOUT)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def mock(
    isolated_openstack_env: Path, threaded_mock: Callable[[MockConfig], MockCloud]
) -> MockCloud:
    """The fleet, with project p0 throttled (at most 4 requests a second)."""
    cloud = threaded_mock(
        MockConfig(fleet=FLEET, transition_delay=0.05, faults=Faults(rate_limit=4, burst=2))
    )
    return cloud


def run_cli(mock: MockCloud, *args: str, env: dict[str, str] | None = None) -> Any:
    """The command in-process as the mock's member, over every project of the mock."""
    projects = [a for p in mock.project_ids for a in ("--project", p)]
    argv = list(args)
    if argv and argv[0] in ("stop", "start"):
        argv[1:1] = projects
    result = CliRunner().invoke(main, argv, env={**mock.os_env(), **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def families(text: str) -> dict[str, list[Any]]:
    """Prometheus text parsed by prometheus_client's own parser: samples by family name."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


class TestMetricsAndNotifications:
    """A run's metrics go to a file and a Pushgateway; its summary to the webhooks."""

    def test_a_successful_run(self, mock: MockCloud, receiver: Receiver, tmp_path: Path) -> None:
        metrics = tmp_path / "bulkstop.prom"
        report = tmp_path / "nightly.json"
        result = run_cli(
            mock,
            *("stop", "--tag", TAG, "--yes", "--quiet", "--report", str(report)),
            *("--canary", "2", "--rate", "3", "--metrics-file", str(metrics)),
            *("--pushgateway", receiver.url, "--metrics-label", "site=lab"),
            *("--notify", f"{receiver.url}/hook/{SECRET}"),
            *("--notify", f"{receiver.url}/slack/{SECRET}", "--notify-format", "json"),
        )
        assert result.exit_code == EXIT_OK, result.stderr
        parsed = families(metrics.read_text())
        servers = {
            (s.labels["project"], s.labels["outcome"]): s.value for s in parsed["bulkstop_servers"]
        }
        assert sum(servers.values()) == 12
        assert {o for _, o in servers} == {"accepted", "stopped"}  # the canary waits
        assert all(
            s.labels == {"action": "stop", "site": "lab", "project": s.labels["project"]}
            for s in parsed["bulkstop_requests"]
        )
        assert parsed["bulkstop_exit_code"][0].value == 0
        assert parsed["bulkstop_halted"][0].labels["rail"] == "none"
        success = parsed["bulkstop_last_success_timestamp_seconds"][0].value
        assert success == parsed["bulkstop_last_run_timestamp_seconds"][0].value
        # The Pushgateway stand-in got a POST (pushadd) for job bulkstop, grouped by the labels.
        pushes = [r for r in receiver.received if r.path.startswith("/metrics/")]
        assert [(r.method, r.path) for r in pushes] == [
            ("POST", "/metrics/job/bulkstop/action/stop/site/lab")
        ]
        pushed = families(pushes[0].body.decode())
        assert pushed["bulkstop_exit_code"][0].value == 0
        assert "bulkstop_last_success_timestamp_seconds" in pushed
        # The notification: the report without its servers.
        (note,) = receiver.json_posts("/hook/")
        assert note["exit_code"] == 0 and note["rail"] == "none"
        assert note["report"]["summary"]["outcomes"] == {"accepted": 10, "stopped": 2}
        assert "servers" not in note["report"] and note["failed"] == []
        assert "timeline" not in note["report"]
        # The webhook's secret is in no record of the run.
        assert SECRET not in report.read_text()
        journal = tmp_path / "nightly.journal.jsonl"
        assert SECRET not in journal.read_text()
        assert f"{receiver.url}/***" in journal.read_text()

    def test_a_refused_run_keeps_the_last_success(
        self, mock: MockCloud, receiver: Receiver, tmp_path: Path
    ) -> None:
        metrics = tmp_path / "bulkstop.prom"
        metrics.write_text(
            "# TYPE bulkstop_last_success_timestamp_seconds gauge\n"
            'bulkstop_last_success_timestamp_seconds{action="stop"} 1.7e+09\n'
        )
        result = run_cli(
            mock,
            *("stop", "--tag", TAG, "--yes", "--max-servers", "3"),
            *("--report", str(tmp_path / "r.json"), "--metrics-file", str(metrics)),
            *("--notify", f"{receiver.url}/slack/{SECRET}", "--notify-format", "slack"),
            *("--notify", f"{receiver.url}/broken/{SECRET}"),
        )
        assert result.exit_code == EXIT_REFUSED
        parsed = families(metrics.read_text())
        assert parsed["bulkstop_exit_code"][0].value == EXIT_REFUSED
        assert parsed["bulkstop_last_success_timestamp_seconds"][0].value == 1.7e09
        (halted,) = parsed["bulkstop_halted"]
        assert (halted.labels["rail"], halted.value) == ("max-servers", 1)
        (slack,) = receiver.json_posts("/slack/")
        assert "exit 4" in slack["text"] and "max-servers" in slack["text"]
        # The broken hook is a warning with the URL redacted; the exit code is the run's.
        assert f"{receiver.url}/*** failed" in result.stderr
        assert SECRET not in result.stderr

    def test_an_unwritable_report_is_told_as_exit_5(
        self,
        mock: MockCloud,
        receiver: Receiver,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        def full(*_args: object, **_kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        # The report's disk is full; the metrics file's (another path) is not.
        monkeypatch.setattr("bulkstop.record.report.write_atomic", full)
        metrics = tmp_path / "bulkstop.prom"
        result = run_cli(
            mock,
            *("stop", "--tag", TAG, "--yes", "--quiet", "--report", str(tmp_path / "r.json")),
            *("--metrics-file", str(metrics), "--notify", f"{receiver.url}/hook/{SECRET}"),
        )
        assert result.exit_code == EXIT_RECORD, result.stderr
        assert "No space left on device" in result.stderr
        assert families(metrics.read_text())["bulkstop_exit_code"][0].value == EXIT_RECORD
        (note,) = receiver.json_posts("/hook/")
        assert note["exit_code"] == EXIT_RECORD
        assert "No space left on device" in note["error"]

    def test_a_halted_run_notifies_and_plots(
        self, mock: MockCloud, receiver: Receiver, tmp_path: Path
    ) -> None:
        report = tmp_path / "halted.json"
        result = run_cli(
            mock,
            *("stop", "--tag", TAG, "--yes", "--quiet", "--report", str(report)),
            *("--rate", "2", "--concurrency", "2", "--canary", "2", "--deadline", "3s"),
            *("--notify", f"{receiver.url}/hook/{SECRET}"),
        )
        assert result.exit_code == EXIT_REFUSED, result.stderr
        (note,) = receiver.json_posts("/hook/")
        assert note["rail"] == "deadline" and note["report"]["halted_by"] == "deadline"
        timeline = read_report(str(report)).timeline
        assert timeline is not None
        events = [e["event"] for e in timeline["events"]]
        assert events[:2] == ["planned", "batch"] and "halt" in events
        png = tmp_path / "run.png"
        plot = CliRunner().invoke(main, ["report", str(report), "--plot", str(png)])
        assert plot.exit_code == 0, plot.stderr
        with Image.open(png) as image:
            assert image.size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
        assert plot_run(read_report(str(report)), str(tmp_path / "run.svg")) == PANELS
        assert (tmp_path / "run.svg").read_text().startswith("<?xml")
        # Finishing it without the URL notifies nobody: the journal has only its redacted form.
        journal = tmp_path / "halted.journal.jsonl"
        resumed = CliRunner().invoke(
            main, ["stop", "--resume", str(journal), "--yes", "--quiet"], env=mock.os_env()
        )
        assert resumed.exit_code in (EXIT_OK, EXIT_REFUSED), resumed.stderr
        assert len(receiver.json_posts("/hook/")) == 1
        assert SECRET not in journal.read_text()


class TestJsonLogs:
    """With --log-format json, every stderr line is one JSON object."""

    @staticmethod
    def lines(stderr: str) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in stderr.splitlines()]
        assert all({"ts", "level", "event"} <= r.keys() for r in records)
        return records

    def test_a_run(self, mock: MockCloud, tmp_path: Path) -> None:
        result = run_cli(
            mock,
            *("--log-format", "json", "stop", "--tag", TAG, "--yes", "--canary", "2"),
            *("--report", str(tmp_path / "r.json")),
        )
        assert result.exit_code == EXIT_OK, result.stderr
        events = [r["event"] for r in self.lines(result.stderr)]
        assert events[:3] == ["run_start", "plan", "batch"]
        assert events[-2:] == ["progress", "summary"]

    def test_a_halt_and_a_warning(self, mock: MockCloud, tmp_path: Path) -> None:
        result = run_cli(
            mock,
            *("stop", "--log-format", "json", "--tag", TAG, "--yes", "--rate", "2"),
            *("--deadline", "2s", "--report", str(tmp_path / "r.json")),
            *("--notify", "http://127.0.0.1:1/hook/secret"),
        )
        assert result.exit_code == EXIT_REFUSED, result.stderr
        records = self.lines(result.stderr)
        (halt,) = [r for r in records if r["event"] == "halt"]
        assert halt["reason"] == "deadline" and halt["level"] == "warning"
        summary = next(r for r in records if r["event"] == "summary")
        assert summary["exit_code"] == EXIT_REFUSED and "not_attempted" in summary["outcomes"]
        assert "to finish" in summary["hint"]
        (warning,) = [r for r in records if r["event"] == "warning"]
        assert "http://127.0.0.1:1/***" in warning["message"]
        assert "secret" not in result.stderr

    def test_usage_errors_and_the_environment(self, mock: MockCloud) -> None:
        bad = CliRunner().invoke(main, ["--log-format", "json", "stop", "--bogus"])
        assert bad.exit_code == EXIT_USAGE
        (record,) = self.lines(bad.stderr)
        assert record["event"] == "usage_error" and "--bogus" in record["message"]
        # From the environment, on the command: no prompt, a refusal (exit 2) in JSON.
        unconfirmed = run_cli(mock, "stop", "--tag", TAG, env={"BULKSTOP_LOG_FORMAT": "json"})
        assert unconfirmed.exit_code == EXIT_USAGE
        (refusal,) = self.lines(unconfirmed.stderr)
        assert refusal["level"] == "error" and "JSON log mode never prompts" in refusal["message"]
        # A malformed webhook URL is a usage error that does not show it.
        bad_url = run_cli(
            mock, "stop", "--all", "--yes", env={"BULKSTOP_NOTIFY_URL": "hooks.example.com/s3cr3t"}
        )
        assert bad_url.exit_code == EXIT_USAGE and "s3cr3t" not in bad_url.stderr
        assert "expected an http:// or https:// URL" in bad_url.stderr


class TestSignalsAndRetries:
    """SIGTERM still notifies; a retried job continues the run it left unfinished."""

    def test_sigterm_notifies_and_a_retry_resumes(self, tmp_path: Path, receiver: Receiver) -> None:
        fleet_file = tmp_path / "fleet.json"
        fleet_file.write_text(json.dumps([server(f"s{i:02d}") for i in range(30)]))
        mock = StandaloneMock(tmp_path, "--fleet", str(fleet_file), "--latency", "0.01")
        try:
            command = (
                *("stop", "--all", "--yes", "--quiet", "--report", str(tmp_path / "n.json")),
                *("--rate", "5", "--resume-unfinished", "--notify", f"{receiver.url}/hook/x"),
            )
            run = mock.spawn_bulkstop(*command, cwd=tmp_path)
            try:
                wait_for(lambda: len(mock.requests()) >= 3 or run.poll() is not None, "stops")
                run.send_signal(signal.SIGTERM)
                run.communicate(timeout=PROCESS_TIMEOUT)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.communicate()
            assert run.returncode == EXIT_INTERRUPTED
            (note,) = receiver.json_posts("/hook/")
            assert note["exit_code"] == EXIT_INTERRUPTED and note["rail"] == "interrupted"
            # Another command line must not take over this job's run (here: a --tag instead).
            other = mock.spawn_bulkstop(*command[:1], "--tag", "x", *command[2:], cwd=tmp_path)
            _, stderr = other.communicate(timeout=PROCESS_TIMEOUT)
            assert other.returncode == EXIT_USAGE and "another command line" in stderr
            # The scheduler retries the same command: it finishes the interrupted run.
            retry = mock.spawn_bulkstop(*command, cwd=tmp_path)
            _, stderr = retry.communicate(timeout=PROCESS_TIMEOUT)
            assert retry.returncode == EXIT_OK, stderr
            report = read_report(str(tmp_path / "n.json"))
            assert report.options.get("resumed_from") == str(tmp_path / "n.journal.jsonl")
            assert report.outcomes == {"accepted": 30}
            assert sum(mock.accepted().values()) == 30 and max(mock.accepted().values()) == 1
            # The next night: the run finished, so the same command starts a new one.
            wait_for(mock.settled, "every stop to complete")
            tomorrow = mock.spawn_bulkstop(*command, cwd=tmp_path)
            _, stderr = tomorrow.communicate(timeout=PROCESS_TIMEOUT)
            assert tomorrow.returncode == EXIT_OK, stderr
            report = read_report(str(tmp_path / "n.json"))
            assert "resumed_from" not in report.options
            assert report.outcomes == {"already_stopped": 30}
        finally:
            mock.close()

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
    def test_ctrl_c_before_anything_is_sent_still_notifies(
        self, tmp_path: Path, receiver: Receiver, signum: signal.Signals
    ) -> None:
        # Every compute answer takes 30 s: the run is still resolving when the signal comes.
        mock = StandaloneMock(tmp_path, "--servers", "4", "--latency", "30")
        metrics = tmp_path / "bulkstop.prom"
        try:
            run = subprocess.Popen(
                [
                    *(sys.executable, "-m", "bulkstop", "stop", "--all", "--yes", "--quiet"),
                    *("--metrics-file", str(metrics)),
                ],
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
                env={
                    **mock.env,
                    "BULKSTOP_NOTIFY_URL": f"{receiver.url}/hook/{SECRET}",
                    "BULKSTOP_LOG_FORMAT": "json",
                },
                # A test run started in the background inherits an ignored SIGINT: a
                # terminal's user does not.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            try:
                # Requests are journaled when answered: Keystone's is, the listing's is not.
                wait_for(lambda: bool(mock.requests(kind="identity")), "authentication")
                run.send_signal(signum)
                _, stderr = run.communicate(timeout=PROCESS_TIMEOUT)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.communicate()
            assert mock.requests() == []
        finally:
            mock.close()
        assert run.returncode == EXIT_INTERRUPTED, stderr
        events = [json.loads(line)["event"] for line in stderr.splitlines()]
        assert events == ["run_start", "interrupted"]
        (note,) = receiver.json_posts("/hook/")
        assert note["exit_code"] == EXIT_INTERRUPTED and note["rail"] == "interrupted"
        assert note["report"] is None and "nothing was sent" in note["error"]
        parsed = families(metrics.read_text())
        assert parsed["bulkstop_exit_code"][0].value == EXIT_INTERRUPTED
        (halted,) = parsed["bulkstop_halted"]
        assert (halted.labels["rail"], halted.value) == ("interrupted", 1)


def test_shell_completion_completes_commands_and_options() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {"_BULKSTOP_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        return CliRunner().invoke(main, [], env=env, prog_name="bulkstop").stdout.split()

    assert complete("bulkstop st", 1) == ["plain,stop", "plain,start"]
    assert complete("bulkstop stop --notify-f", 2) == ["plain,--notify-format"]
