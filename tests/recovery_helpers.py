"""Helpers of the recovery tests (journal, resume, undo) against the mock cloud.

:class:`Runner` runs a :class:`~bulkstop.runner.RunRequest` the way a user's run goes (``OS_*``
variables → openstacksdk's loader → keystoneauth1 → aiohttp over loopback → the mock), with
the machine's own ``OS_*`` variables and clouds.yaml kept out. :class:`StandaloneMock` runs
the mock as a process and ``python -m bulkstop`` commands against it, to be killed and signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner, Result

import bulkstop
from bulkstop.auth import AuthSettings
from bulkstop.backoff import Backoff
from bulkstop.calls import RetryPolicy
from bulkstop.cli import main
from bulkstop.compute_http import open_compute
from bulkstop.engine import Observer, RunOptions
from bulkstop.mockcloud import MockCloud
from bulkstop.report import Report
from bulkstop.runner import RunRequest, run

TAG: Final = "nightly-stop"
#: Real backoff shape, milliseconds instead of seconds.
FAST_RETRY: Final = RetryPolicy(max_attempts=5, backoff=Backoff(base=0.01, cap=0.05))
#: Unpaced, fast retries, fast polls: what most recovery tests run with.
FAST: Final = RunOptions(rate=0.0, retry=FAST_RETRY, poll_interval=0.05)


class Runner:
    """Runs requests against one mock, configured only by the mock's ``OS_*`` variables."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        for name in list(os.environ):
            if name.startswith("OS_"):
                monkeypatch.delenv(name)
        empty = tmp_path / "clouds.yaml"
        empty.write_text("clouds: {}\n")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(empty))
        monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(empty))
        monkeypatch.chdir(tmp_path)
        self._monkeypatch = monkeypatch

    async def __call__(
        self,
        mock: MockCloud,
        request: RunRequest,
        *,
        projects: Iterable[str] | None = None,
        observer: Observer | None = None,
        handle_signals: bool = False,
    ) -> Report:
        """Run ``request`` in ``projects`` (default: every project of the mock)."""
        for name, value in mock.os_env().items():
            self._monkeypatch.setenv(name, value)
        scope = tuple(mock.project_ids if projects is None else projects)
        compute, scopes = await open_compute(
            AuthSettings(projects=scope),
            request_timeout=5.0,
            pool_size=request.options.concurrency,
        )
        try:
            return await run(
                compute=compute,
                scopes=scopes,
                request=request,
                observer=observer,
                handle_signals=handle_signals,
            )
        finally:
            await compute.aclose()


def actions(mock: MockCloud, action: str = "os-stop") -> Counter[str]:
    """How many ``action`` requests reached each server (answered or not)."""
    return Counter(
        r.server_id
        for r in mock.requests
        if r.kind == "action" and r.action == action and r.server_id is not None
    )


def planned(report: Report) -> set[str]:
    """The servers a dry run would act on."""
    return {s.id for s in report.servers if s.outcome.value == "planned"}


def assert_each_once(report: Report, targets: Iterable[str]) -> None:
    """The report holds exactly ``targets``, each once."""
    ids = [s.id for s in report.servers]
    assert len(ids) == len(set(ids)), "a server appears twice in the report"
    assert set(ids) == set(targets)


def run_options(**fields: Any) -> RunOptions:
    """:data:`FAST` with some fields changed."""
    return replace(FAST, **fields)


# -- real processes: the standalone mock and the ``bulkstop`` command ------------------------

#: The checkout root, so child processes import this bulkstop whether or not it is installed.
SOURCE_ROOT: Final = str(Path(bulkstop.__file__).resolve().parent.parent)
#: Seconds a child process may take to start, to reach a condition, or to exit.
PROCESS_TIMEOUT: Final = 30.0
#: HTTP statuses of an accepted action.
ACCEPTED_STATUSES: Final = frozenset({200, 202, 204})


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any ``OS_*`` variable, importing this checkout's bulkstop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, env.get("PYTHONPATH")]))
    return env | extra


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds (fails the test after PROCESS_TIMEOUT)."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class StandaloneMock:
    """``python -m bulkstop.mockcloud ARGS`` as a process, and ``bulkstop`` commands against it.

    Commands run as the member user in every project of the mock (``--project`` each), with
    only the mock's ``OS_*`` variables and an empty clouds.yaml.
    """

    def __init__(self, tmp: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bulkstop.mockcloud", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=child_env(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the mock cloud did not start"
        self.info: dict[str, Any] = json.loads(line)
        empty = tmp / "clouds.yaml"
        empty.write_text("clouds: {}\n")
        self.env = child_env(
            OS_AUTH_URL=self.info["auth_url"],
            OS_USERNAME=self.info["username"],
            OS_PASSWORD=self.info["password"],
            OS_USER_DOMAIN_NAME=self.info["user_domain"],
            OS_PROJECT_DOMAIN_NAME=self.info["user_domain"],
            OS_PROJECT_ID=self.info["project_ids"][0],
            OS_REGION_NAME=self.info["region"],
            OS_CLIENT_CONFIG_FILE=str(empty),
            OS_CLIENT_SECURE_FILE=str(empty),
        )

    @property
    def projects(self) -> list[str]:
        """``--project`` options naming every project of the mock."""
        return [arg for p in self.info["project_ids"] for arg in ("--project", p)]

    def _admin(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.info["base_url"] + path, method=method)
        with urllib.request.urlopen(request, timeout=PROCESS_TIMEOUT) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def requests(self, kind: str = "action") -> list[dict[str, Any]]:
        """The mock's request journal (``GET /_mock/requests``)."""
        records: list[dict[str, Any]] = self._admin(f"/_mock/requests?kind={kind}")["requests"]
        return records

    def accepted(self, action: str = "os-stop") -> Counter[str]:
        """How many ``action`` requests each server had accepted."""
        return Counter(
            r["server_id"]
            for r in self.requests()
            if r["action"] == action and r["status"] in ACCEPTED_STATUSES
        )

    def servers(self) -> list[dict[str, Any]]:
        """The fleet's current state (``GET /_mock/servers``)."""
        servers: list[dict[str, Any]] = self._admin("/_mock/servers")["servers"]
        return servers

    def settled(self) -> bool:
        """True when no server is between states (every stop or start has completed)."""
        return all(s["task_state"] is None for s in self.servers())

    def reset(self) -> None:
        """Restore the fleet and clear the journal (``POST /_mock/reset``)."""
        self._admin("/_mock/reset", method="POST")

    def start(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        """``python -m bulkstop ARGS`` in ``cwd``, running."""
        return subprocess.Popen(
            [sys.executable, "-m", "bulkstop", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=self.env,
        )

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``python -m bulkstop ARGS`` in ``cwd``, to the end."""
        return subprocess.run(
            [sys.executable, "-m", "bulkstop", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=self.env,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )

    def invoke(self, *args: str) -> Result:
        """``bulkstop ARGS`` in this process (click's CliRunner): no interpreter start-up."""
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("OS_")}
        env.update((k, v) for k, v in self.env.items() if k.startswith("OS_"))
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    def close(self) -> None:
        """Stop the mock."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
