"""Real processes: the standalone mock cloud, and the ``bulkstop`` command against it.

:class:`StandaloneMock` runs ``python -m bulkstop.mockcloud`` (to be signalled, killed, or
shared by a module's tests) and ``bulkstop`` commands against it; :func:`run_bulkstop` runs a
command to its end; :func:`child_env` is the environment of any child process.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from click.testing import CliRunner, Result

import bulkstop
from bulkstop.cli import main

#: The checkout root, so child processes import this bulkstop whether or not it is installed.
SOURCE_ROOT: Final = str(Path(bulkstop.__file__).resolve().parent.parent)
#: Seconds a child process may take to start, to reach a condition, or to exit.
PROCESS_TIMEOUT: Final = 30.0
#: HTTP statuses of an accepted action.
ACCEPTED_STATUSES: Final = frozenset({200, 202, 204})


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any ``OS_*`` variable, importing this checkout's bulkstop,
    plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, env.get("PYTHONPATH")]))
    return env | extra


def run_bulkstop(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bulkstop ARGS`` to the end, in :func:`child_env`."""
    return subprocess.run(
        [sys.executable, "-m", "bulkstop", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds (fails the test after PROCESS_TIMEOUT)."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class StandaloneMock:
    """``python -m bulkstop.mockcloud ARGS`` as a process, and ``bulkstop`` commands against it.

    Commands run as the member user on the mock's first project (:attr:`projects` names every
    project), with only the mock's ``OS_*`` variables (:attr:`env`) and an empty clouds.yaml
    written in ``tmp``, where the mock's stderr goes too.
    """

    def __init__(self, tmp: Path, *args: str) -> None:
        log = tmp / "mockcloud.log"
        with log.open("w") as stderr:  # a file, not a pipe: a pipe nobody reads can fill up
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bulkstop.mockcloud", *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=child_env(),
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the mock cloud did not start: {log.read_text()}"
        #: The JSON line the mock printed (base_url, auth_url, project_ids, credentials...).
        self.info: dict[str, Any] = json.loads(line)
        empty = tmp / "clouds.yaml"
        empty.write_text("clouds: {}\n")
        self.env = child_env(
            OS_AUTH_URL=self.info["auth_url"],
            OS_REGION_NAME=self.info["region"],
            OS_INTERFACE="public",
            OS_IDENTITY_API_VERSION="3",
            OS_USERNAME=self.info["username"],
            OS_PASSWORD=self.info["password"],
            OS_USER_DOMAIN_NAME=self.info["user_domain"],
            OS_PROJECT_DOMAIN_NAME=self.info["user_domain"],
            OS_PROJECT_ID=self.info["project_ids"][0],
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

    def requests(self, kind: str | None = "action") -> list[dict[str, Any]]:
        """The mock's request journal (``GET /_mock/requests``): the requests of one kind, or
        (``None``) every request but the admin calls."""
        query = "" if kind is None else f"?kind={kind}"
        records: list[dict[str, Any]] = self._admin(f"/_mock/requests{query}")["requests"]
        return [r for r in records if r["kind"] != "admin"]

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

    def invoke(self, *args: str) -> Result:
        """``bulkstop ARGS`` in this process (click's CliRunner): no interpreter start-up."""
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("OS_")}
        env.update((k, v) for k, v in self.env.items() if k.startswith("OS_"))
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    def close(self) -> None:
        """Stop the mock (SIGTERM; killed if it does not exit in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
