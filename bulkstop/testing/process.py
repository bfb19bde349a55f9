"""The mock cloud as another process (``python -m bulkstop.mockcloud``), read over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from bulkstop.mockcloud import credentials

#: Seconds the process may take to print its line, to answer an admin call, or to exit.
PROCESS_TIMEOUT: Final = 30.0


class ProcessCloud:
    """``python -m bulkstop.mockcloud ARGS`` as a process, and what it serves.

    ``args`` are the ``bulkstop mock-cloud`` options (``--servers``, ``--fleet FILE``,
    ``--race-rate``, ...). The process is started by :meth:`start` (or ``with``), which
    returns once the mock listens; its stderr goes to a file (``stderr_path``).
    """

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stderr_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.args = args
        self._env = dict(os.environ if env is None else env)
        self.stderr_path = Path(stderr_path or tempfile.mkstemp(prefix="mockcloud-")[1])
        self.process: subprocess.Popen[str] | None = None
        #: The JSON line the mock printed (:meth:`MockCloud.connection_info`).
        self.info: dict[str, Any] = {}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the process and read its connection line."""
        with self.stderr_path.open("w") as stderr:  # a file: a pipe nobody reads can fill up
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bulkstop.mockcloud", *self.args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=self._env,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the mock cloud did not start: {self.stderr_path.read_text()}")
        self.info = json.loads(line)

    def close(self) -> None:
        """Stop the mock (SIGTERM; killed if it does not exit in time). Idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()

    # -- credentials -----------------------------------------------------------------------

    def os_env(
        self,
        project_id: str | None = None,
        *,
        admin: bool = False,
        application_credential: bool = False,
    ) -> dict[str, str]:
        """``OS_*`` variables for the member (or the admin) on a project (default: the first)."""
        return credentials.os_env(
            self.info, project_id, admin=admin, application_credential=application_credential
        )

    def clouds_entry(self, project_id: str | None = None, *, admin: bool = False) -> dict[str, Any]:
        """One ``clouds.yaml`` cloud for the member (or the admin) on a project."""
        return credentials.clouds_entry(self.info, project_id, admin=admin)

    def write_clouds_yaml(
        self,
        path: str | os.PathLike[str],
        cloud: str = credentials.DEFAULT_CLOUD,
        project_id: str | None = None,
        *,
        admin: bool = False,
    ) -> None:
        """Write a ``clouds.yaml`` (replacing the file) with one cloud."""
        credentials.write_clouds_yaml(path, {cloud: self.clouds_entry(project_id, admin=admin)})

    # -- what the mock saw -------------------------------------------------------------------

    def admin(self, path: str, method: str = "GET") -> Any:
        """Call an admin endpoint (``/_mock/...``); the parsed JSON answer, or None."""
        request = urllib.request.Request(self.info["base_url"] + path, method=method)
        with urllib.request.urlopen(request, timeout=PROCESS_TIMEOUT) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The request journal (``GET /_mock/requests``), of one kind (``action``, ``list``,
        ``get``, ``identity``) or of all but the admin calls."""
        query = "" if kind is None else f"?kind={kind}"
        records: list[dict[str, Any]] = self.admin(f"/_mock/requests{query}")["requests"]
        return [r for r in records if r["kind"] != "admin"]

    def servers(self) -> list[dict[str, Any]]:
        """The fleet's current state, in the fleet file format (``GET /_mock/servers``)."""
        servers: list[dict[str, Any]] = self.admin("/_mock/servers")["servers"]
        return servers

    def reset(self) -> None:
        """Restore the fleet and clear the journal (``POST /_mock/reset``)."""
        self.admin("/_mock/reset", method="POST")


def mock_cloud_process(
    *args: str, env: Mapping[str, str] | None = None, **options: Any
) -> ProcessCloud:
    """A :class:`ProcessCloud` to start with ``with``: ``args`` are ``bulkstop mock-cloud``
    options (``"--servers", "500"``)."""
    return ProcessCloud(*args, env=env, **options)
