"""``bulkstop stop`` end to end: the command line, its exit codes and its output.

The command runs in-process (click's CliRunner) against a mock cloud served from a background
thread, configured only through ``clouds.yaml``/``OS_CLOUD``; the interruption tests run both
the command (configured by the mock's ``OS_*`` variables) and the mock as real processes and
signal the command. Each test proves what was
sent from the mock's request journal.

Exit codes: 0 nothing failed; 1 a server failed or was not found; 2 bad usage or input (nothing
sent); 3 no access to the cloud, or a cloud that cannot be trusted (nothing sent); 4 a safety
rail refused (nothing sent); 130 interrupted (the report is still complete).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import Result
from fleets import TAG, pid, server, sid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import PROCESS_TIMEOUT, StandaloneMock, run_bulkstop, wait_for

from bulkstop.identifiers import validate_server_id
from bulkstop.mockcloud import Faults, MockCloud, Trigger
from bulkstop.mockcloud.identity import AuthFailure, Identity
from bulkstop.select.selector import PROTECT_TAG

Cloud = Callable[..., MockCloud]
Bulkstop = Callable[..., Result]


def actions(mock: MockCloud) -> Counter[str]:
    """Stops the cloud received, per server id."""
    return Counter(r.server_id for r in mock.requests if r.kind == "action" and r.server_id)


def compute_requests(mock: MockCloud) -> int:
    """Compute requests the cloud received (Keystone's have no project)."""
    return sum(r.project_id is not None for r in mock.requests)


def read_report(path: str | Path) -> dict[str, Any]:
    """A report file, parsed."""
    document: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return document


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    """Each server's outcome, by name."""
    return {s["name"]: s["outcome"] for s in report["servers"]}


def error_lines(result: Result) -> list[str]:
    """The non-blank lines the command wrote to stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_one_line_error(result: Result, code: int, starts: str) -> None:
    """The command failed with ``code`` and one line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    assert error_lines(result) == [error_lines(result)[0]]
    assert error_lines(result)[0].startswith(f"bulkstop: error: {starts}"), result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


class TestExitCodes:
    """Each documented exit code, and that nothing is sent when the code says so."""

    def test_0_when_every_server_is_stopped_or_already_off(
        self, cloud: Cloud, bulkstop: Bulkstop
    ) -> None:
        mock = cloud(
            fleet=[
                server("a"),
                server("b"),
                server("off", vm_state="stopped"),
                server("other", tags=("env=prod",)),
            ]
        )
        result = bulkstop("stop", "--tag", TAG, "--yes", "--report", "out.json")
        assert result.exit_code == 0, result.output
        assert outcomes(read_report("out.json")) == {
            "a": "accepted",
            "b": "accepted",
            "off": "already_stopped",
        }
        assert actions(mock) == Counter({sid("a"): 1, sid("b"): 1})
        assert "bulkstop stop: 3 selected" in result.stderr
        assert "report: out.json" in result.stderr
        assert result.stdout == ""

    def test_0_when_never_scheduled_error_servers_are_skipped(
        self, cloud: Cloud, bulkstop: Bulkstop
    ) -> None:
        # Nova answers their stop 409 "is not ready": nothing runs there, so a nightly job
        # must neither fail nor halt on them (--max-errors 0 would halt at the first failure).
        mock = cloud(servers=60, projects=1, seed=3, never_scheduled=0.2)
        unscheduled = {
            sid for sid, s in mock.servers.items() if s.host is None and PROTECT_TAG not in s.tags
        }
        assert unscheduled and all(mock.servers[s].vm_state == "error" for s in unscheduled)
        result = bulkstop("stop", "--all", "--max-errors", "0", "--yes", "--report", "out.json")
        assert result.exit_code == 0, result.output
        report = read_report("out.json")
        assert report["halted_by"] is None
        skipped = {s["id"]: s for s in report["servers"] if s["id"] in unscheduled}
        assert skipped.keys() == unscheduled
        for entry in skipped.values():
            assert (entry["outcome"], entry["http_status"], entry["attempts"]) == (
                "skipped",
                409,
                1,
            )
            assert entry["reason"] == "not ready: never scheduled"
        assert {s["outcome"] for s in report["servers"]} <= {
            "accepted",
            "already_stopped",
            "skipped",
            "excluded",
        }
        assert all(actions(mock)[sid] == 1 for sid in unscheduled)

    def test_1_when_a_server_fails(self, cloud: Cloud, bulkstop: Bulkstop) -> None:
        mock = cloud(
            fleet=[server("fine"), server("broken")],
            faults=Faults(server_error=Trigger(servers={sid("broken"): 99})),
        )
        result = bulkstop(
            "stop", "--tag", TAG, "--yes", "--max-attempts", "2", "--report", "r.json"
        )
        assert result.exit_code == 1, result.output
        assert outcomes(read_report("r.json")) == {"fine": "accepted", "broken": "failed"}
        assert actions(mock) == Counter({sid("fine"): 1, sid("broken"): 2})
        assert "most common errors" in result.stderr
        assert "computeFault" in result.stderr

    def test_1_when_a_listed_id_is_not_found(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        mock = cloud(fleet=[server("known")])
        ids = tmp_path / "ids.txt"
        ids.write_text(f"{sid('known')}\n{sid('ghost')}\n")
        result = bulkstop("stop", "--ids-file", str(ids), "--yes", "--report", "r.json")
        assert result.exit_code == 1, result.output
        report = read_report("r.json")
        assert {s["id"]: s["outcome"] for s in report["servers"]} == {
            sid("known"): "accepted",
            sid("ghost"): "not_found",
        }
        assert actions(mock) == Counter({sid("known"): 1})

    def test_2_without_yes_and_without_a_terminal(self, cloud: Cloud, bulkstop: Bulkstop) -> None:
        mock = cloud(fleet=[server("a")])
        result = bulkstop("stop", "--tag", TAG)
        assert_one_line_error(result, 2, "refusing to stop servers without confirmation")
        assert mock.requests == []  # refused before even authenticating

    def test_2_for_an_invalid_option_value(self, cloud: Cloud, bulkstop: Bulkstop) -> None:
        mock = cloud(fleet=[server("a")])
        result = bulkstop("stop", "--tag", "a/b", "--yes")
        assert result.exit_code == 2
        assert "not a tag" in result.stderr
        assert mock.requests == []

    def test_3_for_refused_credentials(
        self, cloud: Cloud, bulkstop: Bulkstop, isolated_openstack_env: Path
    ) -> None:
        mock = cloud(fleet=[server("a")])
        clouds_yaml = isolated_openstack_env
        clouds_yaml.write_text(clouds_yaml.read_text().replace(mock.password, "not-the-password"))
        result = bulkstop("stop", "--tag", TAG, "--yes")
        assert_one_line_error(result, 3, "Keystone refused the credentials")
        assert "not-the-password" not in result.output
        assert compute_requests(mock) == 0
        assert [r.status for r in mock.requests if r.method == "POST"] == [401]

    def test_3_for_an_unreachable_keystone(
        self, cloud: Cloud, bulkstop: Bulkstop, isolated_openstack_env: Path
    ) -> None:
        mock = cloud(fleet=[server("a")])
        clouds_yaml = isolated_openstack_env
        port = closed_port()
        clouds_yaml.write_text(
            clouds_yaml.read_text().replace(mock.base_url, f"http://127.0.0.1:{port}")
        )
        result = bulkstop("stop", "--tag", TAG, "--yes")
        assert_one_line_error(result, 3, "cannot reach Keystone")
        assert mock.requests == []

    def test_3_for_an_unreachable_compute_endpoint(self, cloud: Cloud, bulkstop: Bulkstop) -> None:
        mock = cloud(fleet=[server("a")])
        endpoint = f"http://127.0.0.1:{closed_port()}/v2.1/{{project_id}}"
        result = bulkstop(
            "stop", "--tag", TAG, "--yes", "--endpoint", endpoint, "--max-attempts", "1"
        )
        assert_one_line_error(result, 3, f"project {mock.project_ids[0]}: could not list")
        assert "connect_error" in result.stderr
        assert compute_requests(mock) == 0

    def test_3_when_the_cloud_ignores_tags(self, cloud: Cloud, bulkstop: Bulkstop) -> None:
        # A legacy cloud serves 2.1 whatever we ask: tag filters ignored, no ``tags`` in records.
        mock = cloud(fleet=[server("a"), server("untagged", tags=())], legacy=True)
        result = bulkstop("stop", "--tag", TAG, "--yes", "--report", "r.json")
        assert_one_line_error(result, 3, "the cloud returned server")
        assert "without its tags" in result.stderr
        assert actions(mock) == Counter()
        assert not Path("r.json").exists()

    def test_3_when_keystone_refuses_a_renewal_mid_run(
        self, cloud: Cloud, bulkstop: Bulkstop, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The credentials stop working after the first token (a password rotated mid-run);
        # tokens die after 0.3 s, so the run needs a second one.
        authenticate = Identity._authenticate
        issued: list[object] = []

        def first_only(identity: Identity, auth: Mapping[str, Any]) -> Any:
            if issued:
                raise AuthFailure(401, "password changed")
            issued.append(auth)
            return authenticate(identity, auth)

        monkeypatch.setattr(Identity, "_authenticate", first_only)
        mock = cloud(fleet=[server(f"s{i}") for i in range(20)], faults=Faults(token_ttl=0.3))
        try:
            result = bulkstop(
                "stop", "--tag", TAG, "--yes", "--quiet", "--rate", "20", "--report", "r.json"
            )
        except BaseExceptionGroup as exc:  # what happens today
            pytest.fail(f"escaped the CLI: {exc!r}")
        assert_one_line_error(result, 3, "Keystone refused the credentials")
        report = read_report("r.json")  # still complete: every server once
        assert sorted(s["name"] for s in report["servers"]) == sorted(f"s{i}" for i in range(20))
        accepted = {s["id"] for s in report["servers"] if s["outcome"] == "accepted"}
        assert accepted == set(mock.accepted_stops())

    @pytest.mark.parametrize(("cap", "code"), [(2, 4), (3, 0)], ids=["exceeded", "at-cap"])
    def test_4_when_more_than_max_servers_would_be_stopped(
        self, cloud: Cloud, bulkstop: Bulkstop, cap: int, code: int
    ) -> None:
        # Four tagged servers, one already off: three would get a stop.
        mock = cloud(
            fleet=[server("a"), server("b"), server("c"), server("off", vm_state="stopped")]
        )
        result = bulkstop(
            "stop", "--tag", TAG, "--yes", "--max-servers", str(cap), "--report", "r.json"
        )
        assert result.exit_code == code, result.output
        if code == 4:
            assert_one_line_error(result, 4, "max-servers: 3 servers would be stopped")
            assert "nothing was sent" in result.stderr
            assert actions(mock) == Counter()
            # The refusal is on record: which rail, and every server's fate.
            report = read_report("r.json")
            assert report["halted_by"].startswith("max-servers: 3 servers would be stopped")
            assert outcomes(report) == {
                "a": "not_attempted",
                "b": "not_attempted",
                "c": "not_attempted",
                "off": "already_stopped",
            }
        else:
            assert sum(actions(mock).values()) == 3


class TestOutput:
    """The report and what the command prints."""

    def test_report_dash_writes_only_the_report_to_stdout(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        cloud(fleet=[server("a"), server("b")])
        result = bulkstop("stop", "--tag", TAG, "--yes", "--report", "-")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["schema"] == "bulkstop/report/v1"
        assert outcomes(report) == {"a": "accepted", "b": "accepted"}
        assert report["summary"]["selected"] == 2
        assert "bulkstop stop: 2 selected" in result.stderr
        assert list(tmp_path.glob("bulkstop-report-*.json")) == []

    def test_default_report_lands_in_the_working_directory(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        cloud(fleet=[server("a")])
        result = bulkstop("stop", "--tag", TAG, "--yes")
        assert result.exit_code == 0, result.output
        (written,) = tmp_path.glob("bulkstop-report-*.json")
        assert f"report: {written.name}" in result.stderr
        assert outcomes(read_report(written)) == {"a": "accepted"}
        assert written.stat().st_mode & 0o077 == 0  # owner-only

    def test_unwritable_report_path_refuses_before_sending(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        mock = cloud(fleet=[server("a"), server("b")])
        journal, report = tmp_path / "run.journal.jsonl", tmp_path / "missing" / "r.json"
        try:
            result = bulkstop(
                "stop", "--tag", TAG, "--yes", "--journal", str(journal), "--report", str(report)
            )
        except OSError as exc:  # what happens today: the stops went out, then this
            pytest.fail(f"{sum(actions(mock).values())} stops sent, then {exc!r}")
        assert_one_line_error(result, 2, "")
        assert str(report.parent) in result.stderr
        assert actions(mock) == Counter()

    def test_dry_run_reports_planned_and_sends_nothing(
        self, cloud: Cloud, bulkstop: Bulkstop
    ) -> None:
        mock = cloud(fleet=[server("a"), server("off", vm_state="stopped")])
        result = bulkstop("stop", "--tag", TAG, "--dry-run", "--report", "plan.json")
        assert result.exit_code == 0, result.output
        report = read_report("plan.json")
        assert report["dry_run"] is True
        assert outcomes(report) == {"a": "planned", "off": "already_stopped"}
        assert actions(mock) == Counter()
        assert "(dry run)" in result.stderr

    @pytest.mark.parametrize("quiet", [False, True], ids=["progress", "quiet"])
    def test_quiet_prints_no_progress(self, cloud: Cloud, bulkstop: Bulkstop, quiet: bool) -> None:
        cloud(fleet=[server("a"), server("b"), server("c")])
        flags = ("--quiet",) if quiet else ()
        result = bulkstop("stop", "--tag", TAG, "--yes", "--report", "r.json", *flags)
        assert result.exit_code == 0, result.output
        progress = [line for line in result.stderr.splitlines() if line.startswith("stop: ")]
        assert len(progress) == (0 if quiet else 2)
        if not quiet:
            assert progress[0] == "stop: 3 selected, 3 to send"
            assert progress[-1].startswith("stop: 3/3 · ")
        assert "bulkstop stop: 3 selected" in result.stderr  # the summary is not progress


#: Text that is not a server id, a comment, a CSV row or a CSV ``id`` header.
NOT_AN_ID: Final = (
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_.:", min_size=1, max_size=40)
    .filter(lambda text: text.lower() not in {"id", "server_id"})
    .filter(lambda text: not _is_server_id(text))
)


def _is_server_id(text: str) -> bool:
    try:
        validate_server_id(text)
    except ValueError:
        return False
    return True


class TestIdFiles:
    """``--ids-file``: malformed files stop everything; ids and tags combine with AND."""

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(before=st.integers(0, 4), after=st.integers(0, 3), bad=NOT_AN_ID)
    def test_malformed_id_names_file_and_line_and_sends_nothing(
        self,
        cloud: Cloud,
        bulkstop: Bulkstop,
        tmp_path: Path,
        before: int,
        after: int,
        bad: str,
    ) -> None:
        good = [sid(f"s{i}") for i in range(before + after)]
        mock = cloud(fleet=[server("s"), *(server(f"s{i}") for i in range(before + after))])
        ids = tmp_path / "ids.txt"
        ids.write_text("\n".join(["# to stop", *good[:before], bad, *good[before:]]) + "\n")
        result = bulkstop("stop", "--ids-file", str(ids), "--yes")
        assert_one_line_error(result, 2, f"{ids}:{before + 2}: not a server id")
        assert mock.requests == []

    def test_ids_file_and_tag_combine_with_and(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        mock = cloud(
            fleet=[
                server("listed-tagged"),
                server("listed-untagged", tags=("env=prod",)),
                server("unlisted-tagged"),
            ]
        )
        ids = tmp_path / "ids.txt"
        ids.write_text(f"{sid('listed-tagged')}\n{sid('listed-untagged')}\n")
        result = bulkstop(
            "stop", "--ids-file", str(ids), "--tag", TAG, "--yes", "--report", "r.json"
        )
        assert result.exit_code == 0, result.output
        assert outcomes(read_report("r.json")) == {"listed-tagged": "accepted"}
        assert actions(mock) == Counter({sid("listed-tagged"): 1})

    def test_projects_named_in_the_file_are_the_scope(
        self, cloud: Cloud, bulkstop: Bulkstop, tmp_path: Path
    ) -> None:
        # Two projects; the credentials' own is the first, the file names the second.
        mock = cloud(fleet=[server("mine"), server("theirs", "p1")])
        other = pid(mock, "p1")
        ids = tmp_path / "ids.csv"
        ids.write_text(f"id,project_id\n{sid('theirs')},{other}\n")
        result = bulkstop("stop", "--ids-file", str(ids), "--yes", "--report", "r.json")
        assert result.exit_code == 0, result.output
        report = read_report("r.json")
        assert outcomes(report) == {"theirs": "accepted"}
        assert report["servers"][0]["project_id"] == other
        assert actions(mock) == Counter({sid("theirs"): 1})
        assert {r.project_id for r in mock.requests if r.project_id} == {other}


# -- interruption, with real processes ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupted:
    """A ``bulkstop stop`` process signalled mid-run, and what the cloud saw."""

    signum: signal.Signals
    returncode: int
    stderr: str
    #: The report it wrote (empty if it wrote none).
    report: dict[str, Any]
    #: Every stop the cloud received (journal records).
    stops: list[dict[str, Any]]
    #: Unix time of the signal, and seconds from it to the process's exit.
    signalled_at: float
    exit_delay: float


#: 20 servers at 1 request/s: about 20 s uninterrupted; the signal comes after 3 stops.
SIGNAL_FLEET_SIZE: Final = 20
SIGNAL_RATE: Final = "1"
SIGNAL_CONCURRENCY: Final = "10"
STOPS_BEFORE_SIGNAL: Final = 3


@pytest.fixture(scope="class", params=[signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def interrupted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Interrupted]:
    """Run ``bulkstop stop`` against a standalone mock, signal it after a few stops."""
    signum: signal.Signals = request.param
    tmp = tmp_path_factory.mktemp(signum.name)
    fleet_file = tmp / "fleet.json"
    fleet_file.write_text(json.dumps([server(f"s{i:02d}") for i in range(SIGNAL_FLEET_SIZE)]))
    mock = StandaloneMock(tmp, "--fleet", str(fleet_file), "--latency", "0.01")
    try:
        report_path = tmp / "report.json"
        run = mock.spawn_bulkstop(
            *("stop", "--all", "--yes", "--quiet", "--report", str(report_path)),
            *("--rate", SIGNAL_RATE, "--concurrency", SIGNAL_CONCURRENCY),
            cwd=tmp,
        )
        try:
            wait_for(
                lambda: len(mock.requests()) >= STOPS_BEFORE_SIGNAL or run.poll() is not None,
                "the first stops",
            )
            signalled_at, signalled = time.time(), time.monotonic()
            run.send_signal(signum)
            _, stderr = run.communicate(timeout=PROCESS_TIMEOUT)
            exit_delay = time.monotonic() - signalled
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        yield Interrupted(
            signum=signum,
            returncode=run.returncode,
            stderr=stderr,
            report=read_report(report_path) if report_path.exists() else {},
            stops=mock.requests(),
            signalled_at=signalled_at,
            exit_delay=exit_delay,
        )
    finally:
        mock.close()


class TestInterruption:
    """SIGINT/SIGTERM mid-run: exit 130, a complete report, nothing new sent."""

    def test_exits_130_with_a_complete_report(self, interrupted: Interrupted) -> None:
        assert interrupted.returncode == 130, interrupted.stderr
        assert "Traceback" not in interrupted.stderr
        report = interrupted.report
        assert report["halted_by"] == "interrupted"
        names = [s["name"] for s in report["servers"]]
        assert sorted(names) == [f"s{i:02d}" for i in range(SIGNAL_FLEET_SIZE)]  # each once
        assert report["summary"]["selected"] == SIGNAL_FLEET_SIZE
        by_outcome = Counter(s["outcome"] for s in report["servers"])
        assert set(by_outcome) == {"accepted", "not_attempted"}
        assert by_outcome["accepted"] >= STOPS_BEFORE_SIGNAL
        assert by_outcome["not_attempted"] >= 1
        for entry in report["servers"]:
            if entry["outcome"] == "not_attempted":
                assert entry["reason"] == "interrupted"
                assert entry["attempts"] == 0
        # The report and the cloud agree on which servers got a stop.
        accepted = {s["id"] for s in report["servers"] if s["outcome"] == "accepted"}
        assert {r["server_id"] for r in interrupted.stops if r["status"] == 202} == accepted
        assert len(interrupted.stops) == len(accepted)

    def test_no_stop_is_sent_after_the_signal(self, interrupted: Interrupted) -> None:
        # A stop sent before the signal reaches the loopback mock within milliseconds.
        late = [r for r in interrupted.stops if r["wall"] > interrupted.signalled_at + 0.1]
        assert late == []

    def test_exits_promptly_when_nothing_is_in_flight(self, interrupted: Interrupted) -> None:
        # Nothing is in flight for longer than the mock's 10 ms latency. Workers queued behind
        # the rate limiter must not each wait their turn first (9 of them at 1/s: ~9 s); the
        # bound leaves a loaded machine time to write the report and exit.
        assert interrupted.exit_delay < 5.0


def test_python_m_bulkstop_is_the_command_line() -> None:
    result = run_bulkstop("stop", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: bulkstop stop")
