"""Issue #4's safety rails through the ``bulkstop stop`` command line, proven by the mock's journal.

Two ways of running the CLI against a real mock cloud on loopback:

* in-process with click's ``CliRunner``, against a :class:`MockCloud` serving from a background
  thread (the CLI runs its own event loop and installs signal handlers, so it must own the main
  thread), which lets a test change the cloud between two runs (a plan, then its execution);
* as a real process on a pseudo-terminal, against the standalone mock process
  (``python -m bulkstop.mockcloud``), for the confirmation prompt: the only honest way to test
  "on a terminal without --yes".

Fleets come from ``tests/fleets.py``; the protection fleet and the journal helpers are shared
with ``tests/integration/test_rails_against_mock.py`` through ``tests/rails_helpers.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner, Result
from fleets import TAG, fleet, server, sid
from processes import PROCESS_TIMEOUT, StandaloneMock
from rails_helpers import (
    PROTECTION_FLEET,
    RAILS_PROJECTS,
    accepted,
    no_action_sent,
    stop_requests,
    stopped,
)

from bulkstop.cli import main
from bulkstop.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from bulkstop.mockcloud import Faults, MockCloud, MockConfig, Trigger
from bulkstop.record.report import read_report, write_report
from bulkstop.select.selector import PROTECT_TAG
from bulkstop.timespec import utc_now

#: Seconds from an accepted stop to SHUTOFF in the mocks.
DELAY: Final = 0.05
#: What the confirmation question ends with.
PROMPT: Final = b"[y/N]: "


# -- the in-process mock on its own thread --------------------------------------------------------


@pytest.fixture
def serve(threaded_mock: Callable[[MockConfig], MockCloud]) -> Callable[..., MockCloud]:
    """``serve(fleet_doc, **MockConfig fields)``: a running mock (closed after the test).

    The fleet may be read and changed from the test between two CLI runs (nothing is in flight
    then); the journal is read after a run has returned.
    """

    def make(doc: dict[str, Any], **config: Any) -> MockCloud:
        return threaded_mock(MockConfig(fleet=doc, **{"transition_delay": DELAY, **config}))

    return make


# -- the CLI in-process ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One ``bulkstop`` invocation: its exit code, stderr, and the report it wrote (if any)."""

    code: int
    stderr: str
    report: dict[str, Any] | None

    def outcomes(self) -> dict[str, tuple[str, str | None]]:
        """Each reported server's (outcome, reason), by name."""
        assert self.report is not None, self.stderr
        return {s["name"]: (s["outcome"], s["reason"]) for s in self.report["servers"]}


Bulkstop = Callable[..., Run]


@pytest.fixture
def bulkstop_cli(isolated_openstack_env: Path, tmp_path: Path) -> Bulkstop:
    """``bulkstop_cli(mock, *args, admin=False)``: run the CLI in-process as the mock's member
    (or admin) on its first project, with ``--report`` in the temporary directory unless given.

    The machine's own ``OS_*`` variables and clouds.yaml are kept out.
    """
    runs = iter(range(1, 1000))

    def invoke(mock: MockCloud, *args: str, admin: bool = False) -> Run:
        env = mock.os_env()
        if admin:
            env |= {"OS_USERNAME": mock.admin_username, "OS_PASSWORD": mock.admin_password}
        argv = list(args)
        if "--report" not in argv:
            argv += ["--report", str(tmp_path / f"report-{next(runs)}.json")]
        result: Result = CliRunner().invoke(main, argv, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        path = Path(argv[argv.index("--report") + 1])
        report = json.loads(path.read_text()) if path.exists() else None
        return Run(code=result.exit_code, stderr=result.stderr, report=report)

    return invoke


def everywhere(mock: MockCloud) -> list[str]:
    """``--project`` for every project of the mock."""
    return [arg for p in mock.project_ids for arg in ("--project", p)]


def planned(run: Run) -> list[str]:
    """Names of the planned servers of a dry run, in the plan's order."""
    assert run.report is not None, run.stderr
    return [s["name"] for s in run.report["servers"] if s["outcome"] == "planned"]


# -- tests: caps ----------------------------------------------------------------------------------

#: p0: 3 of its 4 servers tagged (75%); p1: 2 of 4 (50%). Five servers would be stopped.
CAPS_FLEET: Final = fleet(
    *(server(f"a{i}", tags=(TAG,) if i < 3 else ()) for i in range(4)),
    *(server(f"b{i}", "p1", tags=(TAG,) if i < 2 else ()) for i in range(4)),
    projects=RAILS_PROJECTS,
)


class TestCaps:
    """--max-servers and --max-percent: exit 4, and not one action reaches the cloud."""

    @pytest.mark.parametrize(
        ("flag", "refused", "allowed", "message"),
        [
            ("--max-servers", "4", "5", "5 servers would be stopped, more than --max-servers 4"),
            ("--max-percent", "70", "75", "3 of its 4 servers (75.0%) would be stopped"),
        ],
    )
    def test_cap_refuses_before_sending(
        self,
        serve: Callable[..., MockCloud],
        bulkstop_cli: Bulkstop,
        flag: str,
        refused: str,
        allowed: str,
        message: str,
    ) -> None:
        mock = serve(CAPS_FLEET)
        run = bulkstop_cli(mock, "stop", "--tag", TAG, *everywhere(mock), flag, refused, "--yes")
        assert run.code == EXIT_REFUSED, run.stderr
        assert message in run.stderr
        assert no_action_sent(mock)
        # At the cap the same command goes through: the refusal was the cap's doing.
        run = bulkstop_cli(mock, "stop", "--tag", TAG, *everywhere(mock), flag, allowed, "--yes")
        assert run.code == EXIT_OK, run.stderr
        assert accepted(mock) == {"a0", "a1", "a2", "b0", "b1"}


# -- tests: protection with an ID file ------------------------------------------------------------


class TestProtectionWithAnIdFile:
    """An ID file names protected, exempt and locked servers: only the others are stopped."""

    @pytest.mark.parametrize("admin", [False, True], ids=["member", "admin-include-locked"])
    def test_id_file_cannot_override_protection(
        self,
        serve: Callable[..., MockCloud],
        bulkstop_cli: Bulkstop,
        tmp_path: Path,
        admin: bool,
    ) -> None:
        mock = serve(fleet(*(s for s, _, _ in PROTECTION_FLEET), projects=RAILS_PROJECTS))
        ids = tmp_path / "ids.csv"
        with ids.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "project_id"])
            for s, _, _ in PROTECTION_FLEET:
                writer.writerow([s["id"], mock.servers[s["id"]].project_id])
        flags = ["--include-locked"] if admin else []
        run = bulkstop_cli(
            mock,
            "stop",
            "--ids-file",
            str(ids),
            "--protect-tag",
            "keep-on",
            "--exclude-tag",
            "no-touch",
            *flags,
            "--yes",
            admin=admin,
        )
        assert run.code == EXIT_OK, run.stderr
        stoppable = {"plain", "past"} | ({"locked"} if admin else set())
        assert set(stopped(mock)) == stoppable
        assert accepted(mock) == stoppable
        expected = {s["name"]: (o.value, r) for s, o, r in PROTECTION_FLEET}
        if admin:
            expected["locked"] = ("accepted", None)
        assert run.outcomes() == expected


# -- tests: plans ---------------------------------------------------------------------------------

#: Tagged servers in two projects, and one that is not tagged when the plan is made.
PLAN_FLEET: Final = fleet(
    server("n0"),
    server("n1"),
    server("n2"),
    server("newcomer", tags=()),
    server("n3", "p1"),
    server("n4", "p1"),
    server("n5", "p1"),
    projects=RAILS_PROJECTS,
)


def make_plan(mock: MockCloud, bulkstop_cli: Bulkstop, path: Path) -> Run:
    """``stop --tag ... --dry-run --report PATH`` in every project; asserts nothing was sent."""
    run = bulkstop_cli(
        mock, "stop", "--tag", TAG, *everywhere(mock), "--dry-run", "--report", str(path)
    )
    assert run.code == EXIT_OK, run.stderr
    assert no_action_sent(mock)
    return run


def retag(mock: MockCloud, name: str, *tags: str) -> None:
    """Add tags to a server of the mock (as someone would between plan and execution)."""
    target = mock.servers[sid(name)]
    target.tags = target.tags | set(tags)


class TestPlans:
    """``--dry-run --report PLAN`` then ``--plan PLAN``: exactly the plan, re-checked."""

    def test_plan_executes_exactly_the_planned_servers(
        self, serve: Callable[..., MockCloud], bulkstop_cli: Bulkstop, tmp_path: Path
    ) -> None:
        mock = serve(PLAN_FLEET)
        plan = make_plan(mock, bulkstop_cli, tmp_path / "plan.json")
        assert planned(plan) == ["n0", "n1", "n2", "n3", "n4", "n5"]
        # Meanwhile, in the cloud:
        retag(mock, "newcomer", TAG)  # now matches the selector, but is not in the plan
        retag(mock, "n1", PROTECT_TAG)
        retag(mock, "n3", "keep-on")  # protected by --protect-tag at execution
        mock.servers[sid("n4")].set_state("stopped")
        run = bulkstop_cli(
            mock, "stop", "--plan", str(tmp_path / "plan.json"), "--protect-tag", "keep-on", "--yes"
        )
        assert run.code == EXIT_OK, run.stderr
        assert set(stopped(mock)) == accepted(mock) == {"n0", "n2", "n5"}
        assert run.outcomes() == {
            "n0": ("accepted", None),
            "n1": ("excluded", f"tag {PROTECT_TAG}"),
            "n2": ("accepted", None),
            "n3": ("excluded", "tag keep-on"),
            "n4": ("already_stopped", "already SHUTOFF"),
            "n5": ("accepted", None),
        }

    @pytest.mark.parametrize(
        "edit",
        ["swap-server", "add-server", "drop-protection", "include-locked", "refresh-time"],
    )
    def test_edited_plan_is_refused(
        self, serve: Callable[..., MockCloud], bulkstop_cli: Bulkstop, tmp_path: Path, edit: str
    ) -> None:
        mock = serve(PLAN_FLEET)
        path = tmp_path / "plan.json"
        make_plan(mock, bulkstop_cli, path)
        retag(mock, "newcomer", TAG)
        doc = json.loads(path.read_text())
        first = doc["servers"][0]
        if edit == "swap-server":
            first["id"], first["name"] = sid("newcomer"), "newcomer"
        elif edit == "add-server":
            doc["servers"].append({**first, "id": sid("newcomer"), "name": "newcomer"})
        elif edit == "drop-protection":
            doc["selector"]["protect_tags"] = []
        elif edit == "include-locked":
            doc["selector"]["include_locked"] = True
        else:
            doc["finished_at"] = doc["started_at"] = utc_now().isoformat().replace("+00:00", "Z")
        path.write_text(json.dumps(doc))
        run = bulkstop_cli(mock, "stop", "--plan", str(path), "--yes")
        assert run.code == EXIT_REFUSED, run.stderr
        assert "the plan was edited" in run.stderr
        assert no_action_sent(mock)

    def test_stale_plan_is_refused(
        self, serve: Callable[..., MockCloud], bulkstop_cli: Bulkstop, tmp_path: Path
    ) -> None:
        mock = serve(PLAN_FLEET)
        fresh = tmp_path / "plan.json"
        make_plan(mock, bulkstop_cli, fresh)
        # An honest plan made two hours ago: rewritten through the API, so its digest is right.
        report = read_report(str(fresh))
        old = utc_now() - timedelta(hours=2)
        stale = tmp_path / "stale.json"
        write_report(dataclasses.replace(report, started_at=old, finished_at=old), str(stale))
        run = bulkstop_cli(mock, "stop", "--plan", str(stale), "--plan-max-age", "1h", "--yes")
        assert run.code == EXIT_REFUSED, run.stderr
        assert "longer ago than --plan-max-age" in run.stderr
        assert no_action_sent(mock)
        # Only its age was wrong: a longer --plan-max-age executes it.
        run = bulkstop_cli(mock, "stop", "--plan", str(stale), "--plan-max-age", "3h", "--yes")
        assert run.code == EXIT_OK, run.stderr
        assert accepted(mock) == {"n0", "n1", "n2", "n3", "n4", "n5"}

    def test_plan_with_a_failing_canary(
        self, serve: Callable[..., MockCloud], bulkstop_cli: Bulkstop, tmp_path: Path
    ) -> None:
        # Every stop in p0 answers 500 (actions only: reads are not faulted).
        p0 = [s["id"] for s in PLAN_FLEET["servers"] if s["project"] == "p0"]
        mock = serve(PLAN_FLEET, faults=Faults(server_error=Trigger(servers=dict.fromkeys(p0, 9))))
        path = tmp_path / "plan.json"
        make_plan(mock, bulkstop_cli, path)
        run = bulkstop_cli(
            mock, "stop", "--plan", str(path), "--canary", "2", "--max-attempts", "1", "--yes"
        )
        assert run.code == EXIT_REFUSED, run.stderr
        assert run.report is not None
        halted = "canary: 1 of 2 did not reach SHUTOFF"
        assert run.report["halted_by"] == halted
        # One canary per project; nothing else of the plan was sent.
        sent = stop_requests(mock)
        assert len(sent) == 2
        assert {mock.servers[r.server_id or ""].project_id for r in sent} == set(
            mock.project_ids[:2]
        )
        canary = set(stopped(mock))
        outcomes = run.outcomes()
        assert {n for n, (o, _) in outcomes.items() if o == "not_attempted"} == (
            set(outcomes) - canary
        )
        assert {r for n, (_, r) in outcomes.items() if n not in canary} == {halted}


# -- tests: the report ----------------------------------------------------------------------------


class TestReport:
    """The report records every rail's setting from the flags, and the rail that halted."""

    def test_rails_and_halt_recorded(
        self, serve: Callable[..., MockCloud], bulkstop_cli: Bulkstop
    ) -> None:
        doc = fleet(*(server(f"s{i}") for i in range(5)), projects=RAILS_PROJECTS)
        forbidden = Trigger(servers={s["id"]: 9 for s in doc["servers"]})
        mock = serve(doc, faults=Faults(server_error=forbidden, error_status=403))
        before = utc_now()
        run = bulkstop_cli(
            mock,
            "stop",
            "--tag",
            TAG,
            "--max-servers",
            "50",
            "--max-percent",
            "100",
            "--max-errors",
            "1",
            "--deadline",
            "10m",
            "--concurrency",
            "1",
            "--yes",
        )
        after = utc_now()
        assert run.code == EXIT_REFUSED, run.stderr
        assert [r.status for r in stop_requests(mock)] == [403, 403]
        assert run.report is not None
        assert run.report["halted_by"] == "max-errors: 2 of 2 requests failed"
        rails = run.report["options"]["rails"]
        deadline = datetime.fromisoformat(rails.pop("deadline").replace("Z", "+00:00"))
        assert rails == {"max_servers": 50, "max_percent": 100, "canary": 0, "max_errors": "1"}
        assert before + timedelta(minutes=10) - timedelta(milliseconds=1) <= deadline
        assert deadline <= after + timedelta(minutes=10)
        assert "halted: max-errors" in run.stderr


# -- tests: confirmation on a real terminal -------------------------------------------------------

#: p0: four to stop, one already stopped; p1: one to stop, one protected, one paused, one
#: not matched at all.
CONFIRM_FLEET: Final = fleet(
    server("web-1"),
    server("web-2"),
    server("web-3"),
    server("web-4"),
    server("off-1", vm_state="stopped"),
    server("db-1", "p1"),
    server("keep-1", "p1", tags=(TAG, PROTECT_TAG)),
    server("paused-1", "p1", vm_state="paused"),
    server("other-1", "p1", tags=()),
    projects=RAILS_PROJECTS,
)
CONFIRM_TO_STOP: Final = {"web-1", "web-2", "web-3", "web-4", "db-1"}


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneMock]:
    """One standalone mock for the confirmation tests (each resets it)."""
    tmp = tmp_path_factory.mktemp("standalone")
    fleet_file = tmp / "fleet.json"
    fleet_file.write_text(json.dumps(CONFIRM_FLEET))
    mock = StandaloneMock(tmp, "--fleet", str(fleet_file), "--transition-delay", str(DELAY))
    try:
        yield mock
    finally:
        mock.close()


def on_terminal(argv: list[str], env: dict[str, str], answer: bytes | None) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr; type ``answer`` once the
    confirmation question shows. Returns the exit code and everything the terminal showed."""
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
    finally:
        os.close(slave)
    deadline = time.monotonic() + PROCESS_TIMEOUT
    shown = bytearray()
    try:
        if answer is not None:
            _read_terminal(master, shown, deadline, until=PROMPT)
            os.write(master, answer + b"\n")
        _read_terminal(master, shown, deadline, until=None)
        code = process.wait(PROCESS_TIMEOUT)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait(PROCESS_TIMEOUT)
    return code, shown.decode(errors="replace").replace("\r\n", "\n")


def _read_terminal(master: int, shown: bytearray, deadline: float, *, until: bytes | None) -> None:
    """Read what the child writes until ``until`` shows (or, for None, the terminal closes)."""
    while until is None or until not in shown:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {until!r}; the terminal showed {bytes(shown)!r}"
        ready, _, _ = select.select([master], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every end of the terminal's other side is closed
            chunk = b""
        if not chunk:
            assert until is None, f"the terminal closed before {until!r}: {bytes(shown)!r}"
            return
        shown += chunk


class TestConfirmation:
    """Without --yes: ask on a terminal (per-project counts and examples), refuse without one."""

    def argv(self, standalone: StandaloneMock, report: Path) -> list[str]:
        projects = standalone.info["project_ids"][:2]
        return [
            sys.executable,
            "-c",
            "from bulkstop.cli import main; main(prog_name='bulkstop')",
            "stop",
            "--tag",
            TAG,
            *(arg for p in projects for arg in ("--project", p)),
            "--report",
            str(report),
        ]

    def stops(self, standalone: StandaloneMock) -> set[str]:
        """Names of the servers that received an os-stop."""
        names = {s["id"]: s["name"] for s in CONFIRM_FLEET["servers"]}
        return {names[r["server_id"]] for r in standalone.requests() if r["action"] == "os-stop"}

    @pytest.mark.parametrize(
        ("answer", "code", "sent"),
        [(b"n", EXIT_REFUSED, set()), (b"y", EXIT_OK, CONFIRM_TO_STOP)],
        ids=["no", "yes"],
    )
    def test_asks_on_a_terminal(
        self,
        standalone: StandaloneMock,
        tmp_path: Path,
        answer: bytes,
        code: int,
        sent: set[str],
    ) -> None:
        standalone.reset()
        argv = self.argv(standalone, tmp_path / "r.json")
        exit_status, shown = on_terminal(argv, standalone.env, answer)
        p0, p1 = standalone.info["project_ids"][:2]
        expected = [
            "bulkstop will stop 5 of 8 matched:",
            f"  project {p0}: already_stopped 1, to stop 4 (e.g. web-1, web-2, web-3)",
            f"  project {p1}: excluded 1, skipped 1, to stop 1 (e.g. db-1)",
            "Stop 5 servers? [y/N]: " + answer.decode(),
        ]
        lines = shown.splitlines()
        assert all(line in lines for line in expected), shown
        assert exit_status == code, shown
        assert self.stops(standalone) == sent
        if answer == b"n":
            assert "not confirmed; nothing was sent" in shown

    def test_refuses_without_a_terminal(self, standalone: StandaloneMock, tmp_path: Path) -> None:
        standalone.reset()
        done = subprocess.run(
            self.argv(standalone, tmp_path / "r.json"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=standalone.env,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )
        assert done.returncode == EXIT_USAGE, done.stderr
        assert "there is no terminal to ask on; pass --yes" in done.stderr
        # Refused before even authenticating: the cloud heard nothing at all.
        assert standalone.requests(kind=None) == []
