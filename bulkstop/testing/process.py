"""The mock cloud as another process (``python -m bulkstop.mockcloud``), read over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

from bulkstop.mockcloud import credentials

#: Seconds the process may take to print its line, to answer an admin call, or to exit.
PROCESS_TIMEOUT: Final = 30.0
MOCK_MODULE: Final = "bulkstop.mockcloud"


class ProcessCloud:
    """``python -m bulkstop.mockcloud ARGS`` as a process, and what it serves.

    ``args`` are the ``bulkstop mock-cloud`` options (``--servers``, ``--fleet FILE``,
    ``--race-rate``, ...). The process is started by :meth:`start` (or ``with``), which
    returns once the mock listens; its stderr goes to ``stderr_path`` (or a temporary file).
    """

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stderr_path: str | os.PathLike[str] | None = None,
        timeout: float = PROCESS_TIMEOUT,
        module: str = MOCK_MODULE,
    ) -> None:
        self.args = args
        #: The module run with ``python -m``: the mock, or a server printing the same line.
        self.module = module
        self._env = dict(os.environ if env is None else env)
        self._cwd = cwd
        #: Where the mock's stderr goes (None: a temporary file, gone once closed).
        self.stderr_path = None if stderr_path is None else Path(stderr_path)
        self._stderr: IO[bytes] | None = None
        self._timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        #: The JSON line the mock printed (:meth:`MockCloud.connection_info`).
        self.info: dict[str, Any] = {}

    def __enter__(self) -> Self:
        if self.process is None:  # not started yet (a subclass may start at construction)
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int:
        """The mock's process id."""
        if self.process is None:
            raise RuntimeError("the mock cloud process is not running")
        return self.process.pid

    def start(self) -> None:
        """Start the process and read its connection line (RuntimeError if it prints none
        within ``timeout`` seconds, which also bounds each admin call)."""
        # A file, not a pipe: a pipe nobody reads can fill up and stall the mock.
        if self.stderr_path is None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the mock
        else:
            self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self._env,
            cwd=self._cwd,
        )
        assert self.process.stdout is not None
        timer = threading.Timer(self._timeout, self.process.kill)
        timer.start()
        try:
            line = self.process.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            error = self._stderr_text()
            self.close()
            raise RuntimeError(f"{self.module} did not start: {error[-2000:]}")
        self.info = json.loads(line)

    def _stderr_text(self) -> str:
        assert self._stderr is not None
        if self.stderr_path is not None:
            self._stderr.flush()
            return self.stderr_path.read_text(errors="replace")
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        """Stop the mock (SIGTERM; killed if it does not exit in time). Idempotent."""
        process, self.process = self.process, None
        stderr, self._stderr = self._stderr, None
        try:
            if process is not None:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    process.communicate(timeout=PROCESS_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
        finally:
            if stderr is not None:
                stderr.close()

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
        with urllib.request.urlopen(request, timeout=self._timeout) as answer:
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
