"""Issue #10 through the command line: hostile input and clouds end in one line and an exit code.

In-process runs (click's CliRunner) for the paths a test can reach without signals; real
processes where the behaviour is about the process (closed stdin, SIGTERM, a FIFO).
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from processes import PROCESS_TIMEOUT, StandaloneMock, child_env, wait_for

from bulkstop.errors import EXIT_CLOUD, EXIT_INTERRUPTED, EXIT_RECORD, EXIT_USAGE
from bulkstop.mockcloud import Faults, MockCloud, MockConfig

Bulkstop = Callable[..., Result]
Cloud = Callable[..., MockCloud]

TAG = "nightly-stop"


def one_line(text: str) -> str:
    """The error line of stderr (and proof it is the only kind of output)."""
    assert "Traceback" not in text and "ExceptionGroup" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("bulkstop: error:")]
    assert len(lines) == 1, text
    return lines[0]


def shell(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``sh -c COMMAND`` with ``bulkstop`` meaning this checkout's command."""
    bulkstop = f"{sys.executable} -m bulkstop"
    return subprocess.run(
        ["sh", "-c", command.replace("bulkstop", bulkstop, 1)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env(**env),
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


class TestIdFileCap:
    """Row 5: an ID file or stdin larger than MAX_ID_FILE_BYTES is refused, exit 2."""

    @pytest.fixture
    def small_cap(self, monkeypatch: pytest.MonkeyPatch) -> int:
        monkeypatch.setattr("bulkstop.select.idfile.MAX_ID_FILE_BYTES", 1 << 20)
        return 1 << 20

    def test_dev_zero_is_refused_in_one_line(self, bulkstop: Bulkstop, small_cap: int) -> None:
        result = bulkstop("stop", "--ids-file", "/dev/zero", "--yes")
        assert result.exit_code == EXIT_USAGE
        assert "larger than 1 MiB" in one_line(result.stderr)

    def test_a_file_at_the_cap_is_read_and_one_byte_more_is_not(
        self, bulkstop: Bulkstop, small_cap: int, tmp_path: Path
    ) -> None:
        line = f"{uuid.uuid4()}\n"
        body = (line * (small_cap // len(line) + 1))[:small_cap]
        at_cap = tmp_path / "ids.txt"
        at_cap.write_text(body[: small_cap - len(line)] + " " * (len(line) - 1) + "\n")
        assert at_cap.stat().st_size == small_cap
        over = tmp_path / "over.txt"
        over.write_text(at_cap.read_text() + "\n")
        # At the cap the file is read (and the run then fails for want of a cloud: exit 3).
        assert "larger than" not in bulkstop("stop", "--ids-file", str(at_cap), "--yes").stderr
        refused = bulkstop("stop", "--ids-file", str(over), "--yes")
        assert refused.exit_code == EXIT_USAGE
        assert "larger than 1 MiB" in one_line(refused.stderr)


class TestClosedStdin:
    """Row 10a: standard input closed (``<&-``) is one line, exit 2."""

    @pytest.mark.parametrize(
        "args", ["stop --ids-file - --yes", "stop --tag nightly-stop"], ids=["ids", "confirm"]
    )
    def test_one_line_exit_2(self, tmp_path: Path, args: str) -> None:
        done = shell(f"bulkstop {args} <&-", tmp_path)
        assert done.returncode == EXIT_USAGE, done.stderr
        one_line(done.stderr)


def _wchan(thread: Path) -> str:
    """Where a thread sleeps in the kernel ("" if it has just ended)."""
    try:
        return (thread / "wchan").read_text()
    except OSError:
        return ""


class TestInterruptions:
    """Rows 10e and 10g: every interruption is exit 130 and one line."""

    def test_ctrl_c_while_a_fifo_waits_for_a_writer(self, tmp_path: Path) -> None:
        fifo = tmp_path / "ids.fifo"
        os.mkfifo(fifo)
        process = subprocess.Popen(
            [sys.executable, "-m", "bulkstop", "stop", "--ids-file", str(fifo), "--yes"],
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            # A test run started in the background inherits an ignored SIGINT: a user's
            # terminal does not.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            # The file is opened off the event loop: by one of the process's threads.
            threads = Path(f"/proc/{process.pid}/task")

            def opening() -> bool:
                return any(_wchan(t) == "wait_for_partner" for t in threads.iterdir())

            wait_for(opening, "bulkstop to open the FIFO")
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == EXIT_INTERRUPTED, stderr
        assert "Aborted" not in stderr and "interrupted" in stderr

    def test_sigterm_while_listing(self, tmp_path: Path) -> None:
        faults = tmp_path / "faults.json"
        faults.write_text('{"default": {"latency": 30}}')
        mock = StandaloneMock(tmp_path, "--servers", "4", "--faults-file", str(faults))
        try:
            process = mock.spawn_bulkstop("stop", "--tag", TAG, "--yes", cwd=tmp_path)
            # Requests are journaled when answered: Keystone's is, the listing's (30 s) is not.
            wait_for(lambda: bool(mock.requests(kind="identity")), "authentication")
            time.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
        finally:
            mock.close()
        assert process.returncode == EXIT_INTERRUPTED, stderr
        assert "interrupted; nothing was sent" in stderr


class TestHostileListing:
    """Rows 2 and 10h: a listing that never ends or a huge page is exit 3, nothing sent."""

    @pytest.mark.parametrize(
        ("faults", "message"),
        [
            ({"list_treadmill": True}, "brought no server not seen before"),
            ({"page_padding": 2 << 20}, "response_too_large"),
        ],
        ids=["treadmill", "huge-page"],
    )
    def test_exit_3_in_one_line_and_nothing_sent(
        self,
        cloud: Cloud,
        bulkstop: Bulkstop,
        monkeypatch: pytest.MonkeyPatch,
        faults: dict[str, Any],
        message: str,
    ) -> None:
        monkeypatch.setattr("bulkstop.cloud.http.MAX_RESPONSE_BYTES", 1 << 20)
        mock = cloud(MockConfig(servers=6, projects=1, faults=Faults(**faults)))
        result = bulkstop("stop", "--tag", TAG, "--yes", "--quiet")
        assert result.exit_code == EXIT_CLOUD
        assert message in one_line(result.stderr)
        assert not [r for r in mock.requests if r.kind == "action"]


class TestCredentialsInUrls:
    """Row 9: userinfo in any URL is ``***`` in every message, report and journal."""

    def test_an_auth_url_with_a_password_is_masked_in_the_error(
        self, bulkstop: Bulkstop, isolated_openstack_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in {
            "OS_AUTH_URL": "http://alice:s3cret@127.0.0.1:9/identity/v3",
            "OS_USERNAME": "alice",
            "OS_PASSWORD": "pw",
            "OS_PROJECT_ID": "p1",
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
        }.items():
            monkeypatch.setenv(name, value)
        result = bulkstop("stop", "--tag", TAG, "--yes", "--request-timeout", "2")
        assert result.exit_code == EXIT_CLOUD
        line = one_line(result.stderr)
        assert "s3cret" not in result.stderr and "alice:" not in result.stderr, line

    def test_an_endpoint_with_a_password_is_masked_in_the_journal_and_report(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        mock = cloud(MockConfig(servers=6, projects=1))
        project = mock.project_ids[0]
        endpoint = mock.compute_url(project).replace("http://", "http://bob:s3cret@")
        report = tmp_path / "r.json"
        result = bulkstop(
            "stop", "--tag", TAG, "--yes", "--endpoint", endpoint, "--report", str(report)
        )
        assert result.exit_code == 0, result.stderr
        journal = tmp_path / "r.journal.jsonl"
        for text in (result.stderr, report.read_text(), journal.read_text()):
            assert "s3cret" not in text
        assert "http://***@" in journal.read_text()


class TestRecords:
    """Rows 7 and 8: where the report and journal go, and what happens when they cannot."""

    @pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's link needs root")
    @pytest.mark.parametrize("which", ["report", "journal"])
    def test_a_link_planted_by_another_user_is_refused_before_anything_is_sent(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path, which: str
    ) -> None:
        mock = cloud(MockConfig(servers=6, projects=1))
        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        link = tmp_path / ("r.json" if which == "report" else "r.journal.jsonl")
        link.symlink_to(victim)
        os.lchown(link, 4242, 4242)
        result = bulkstop("stop", "--all", "--yes", "--report", str(tmp_path / "r.json"))
        assert result.exit_code == EXIT_USAGE
        assert "symbolic link owned by another user" in one_line(result.stderr)
        assert victim.read_text() == "precious\n"
        assert not [r for r in mock.requests if r.kind == "action"]

    def test_a_link_of_ones_own_is_followed(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        cloud(MockConfig(servers=6, projects=1))
        (tmp_path / "latest.json").symlink_to(tmp_path / "target.json")
        result = bulkstop("stop", "--all", "--yes", "--report", str(tmp_path / "latest.json"))
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "target.json").is_file()

    @pytest.mark.parametrize("failing", ["report", "journal"])
    def test_a_full_disk_is_exit_5_with_the_summary_and_the_resume_hint(
        self,
        cloud: Cloud,
        bulkstop: Bulkstop,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        failing: str,
    ) -> None:
        cloud(MockConfig(servers=20, projects=1))

        def full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        if failing == "report":
            monkeypatch.setattr("bulkstop.record.report.write_atomic", full)
        else:
            monkeypatch.setattr("bulkstop.record.journal.Journal.sending", _full_journal)
        report = tmp_path / "r.json"
        result = bulkstop("stop", "--all", "--yes", "--quiet", "--report", str(report))
        assert result.exit_code == EXIT_RECORD, result.stderr
        line = one_line(result.stderr)
        assert "No space left on device" in line
        assert "bulkstop stop: 20 selected" in result.stderr
        assert f"--resume {tmp_path / 'r.journal.jsonl'}" in result.stderr
        assert report.exists() is (failing == "journal")


def _full_journal(self: Any, entry: object) -> None:
    """Journal.sending on a full disk: the write fails."""
    self._fail(f"journal {self.path}: {os.strerror(errno.ENOSPC)}")


class TestDrippingKeystone:
    """Row 4: ``--request-timeout`` bounds every Keystone exchange as a whole."""

    def test_a_keystone_dripping_one_byte_a_second_ends_the_run_in_time(
        self, tmp_path: Path
    ) -> None:
        faults = tmp_path / "faults.json"
        faults.write_text('{"default": {"drip": 0.5}}')
        mock = StandaloneMock(tmp_path, "--servers", "4", "--faults-file", str(faults))
        try:
            started = time.monotonic()
            process = mock.spawn_bulkstop(
                "stop", "--tag", TAG, "--yes", "--request-timeout", "3", cwd=tmp_path
            )
            _, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
            took = time.monotonic() - started
        finally:
            mock.close()
        assert process.returncode == EXIT_CLOUD, stderr
        assert "within 3s" in one_line(stderr)
        # Start-up of the interpreter included (seconds on a loaded machine); without the
        # bound, a 0.5 s-a-byte drip of a token document would take many minutes.
        assert took < 3 + 30


class TestJournalFile:
    """Rows 10d and 10f: a journal that never started, and one a running bulkstop holds."""

    def test_a_journal_whose_header_cannot_be_written_leaves_nothing_behind(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        cloud(MockConfig(servers=6, projects=1))

        def full(fd: int, data: bytes) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr("bulkstop.record.journal._write_all", full)
        result = bulkstop("stop", "--all", "--yes", "--report", str(tmp_path / "r.json"))
        assert result.exit_code == EXIT_RECORD
        assert "No space left on device" in one_line(result.stderr)
        assert not (tmp_path / "r.journal.jsonl").exists()

    def test_an_empty_journal_left_by_a_full_disk_is_replaced(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        mock = cloud(MockConfig(servers=6, projects=1))
        (tmp_path / "r.journal.jsonl").write_bytes(b'{"type":"hea')
        result = bulkstop("stop", "--all", "--yes", "--report", str(tmp_path / "r.json"))
        assert result.exit_code == 0, result.stderr
        assert mock.accepted_stops()

    def test_a_journal_held_by_a_running_bulkstop_names_its_pid(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        mock = cloud(MockConfig(servers=6, projects=1))
        journal = tmp_path / "r.journal.jsonl"
        journal.write_text('{"type":"header","schema":"bulkstop/journal/v1","pid":4242}\n')
        with journal.open("rb") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # what the running bulkstop holds
            result = bulkstop("stop", "--all", "--yes", "--report", str(tmp_path / "r.json"))
        assert result.exit_code == EXIT_USAGE
        assert "in use by a running bulkstop (pid 4242)" in one_line(result.stderr)
        assert not mock.accepted_stops()
