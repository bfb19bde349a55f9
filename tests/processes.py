"""Real processes: the standalone mock cloud, and the ``bulkstop`` command against it.

``PROCESS_TIMEOUT`` (seconds a child process may take to start, to reach a condition, or to
exit) is :mod:`bulkstop.testing`'s.

:class:`StandaloneMock` runs ``python -m bulkstop.mockcloud`` (to be signalled, killed, or
shared by a module's tests) and ``bulkstop`` commands against it; :func:`run_bulkstop` runs a
command to its end; :func:`child_env` is the environment of any child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from click.testing import CliRunner, Result

import bulkstop
from bulkstop.cli import main
from bulkstop.testing import ProcessCloud
from bulkstop.testing.process import PROCESS_TIMEOUT

#: The checkout root, so child processes import this bulkstop whether or not it is installed.
SOURCE_ROOT: Final = str(Path(bulkstop.__file__).resolve().parent.parent)
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


class StandaloneMock(ProcessCloud):
    """``python -m bulkstop.mockcloud ARGS`` (:class:`bulkstop.testing.ProcessCloud`, started
    at once), and ``bulkstop`` commands against it.

    Commands run as the member user on the mock's first project (:attr:`projects` names every
    project), with only the mock's ``OS_*`` variables (:attr:`env`) and an empty clouds.yaml
    written in ``tmp``, where the mock's stderr goes too.
    """

    def __init__(self, tmp: Path, *args: str) -> None:
        super().__init__(*args, env=child_env(), stderr_path=tmp / "mockcloud.log")
        self.start()
        empty = tmp / "clouds.yaml"
        empty.write_text("clouds: {}\n")
        self.env = child_env(
            **self.os_env(), OS_CLIENT_CONFIG_FILE=str(empty), OS_CLIENT_SECURE_FILE=str(empty)
        )

    @property
    def projects(self) -> list[str]:
        """``--project`` options naming every project of the mock."""
        return [arg for p in self.info["project_ids"] for arg in ("--project", p)]

    def requests(self, kind: str | None = "action") -> list[dict[str, Any]]:
        """The journal of one kind (default: the actions), or (``None``) of every request."""
        return super().requests(kind)

    def accepted(self, action: str = "os-stop") -> Counter[str]:
        """How many ``action`` requests each server had accepted."""
        return Counter(
            r["server_id"]
            for r in self.requests()
            if r["action"] == action and r["status"] in ACCEPTED_STATUSES
        )

    def settled(self) -> bool:
        """True when no server is between states (every stop or start has completed)."""
        return all(s["task_state"] is None for s in self.servers())

    def spawn_bulkstop(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        """``python -m bulkstop ARGS`` in ``cwd``, running (not waited for)."""
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
