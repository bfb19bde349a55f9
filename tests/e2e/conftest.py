"""Fixtures of the end-to-end tests: the ``bulkstop`` command against a mock cloud.

* ``cloud``: ``cloud(**MockConfig options)`` starts a :class:`MockCloud` served by its own event
  loop in a background thread (so a synchronous CLI run can talk to it over loopback), points
  a fresh ``clouds.yaml`` at it (``OS_CLOUD=mock``) and returns it. Its journal is read from the
  test once the command has returned.
* ``bulkstop``: ``bulkstop("stop", "--tag", ...)`` runs the click command in-process with
  :class:`click.testing.CliRunner` and returns the result (exit code, stdout, stderr apart).
* Configuration is isolated for every test: no ``OS_*`` variable of the machine, no user
  ``clouds.yaml``, and the working directory is the test's ``tmp_path`` (reports land there).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner, Result

from bulkstop.cli import main
from bulkstop.mockcloud import MockCloud, MockConfig

#: Seconds to wait for the mock's thread to start or stop serving.
THREAD_TIMEOUT: Final = 10.0
#: The clouds.yaml entry every test uses.
CLOUD_NAME: Final = "mock"


class ThreadedMock:
    """A :class:`MockCloud` served from a background thread's event loop."""

    def __init__(self, config: MockConfig) -> None:
        self.mock = MockCloud(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mock-cloud", daemon=True
        )

    def start(self) -> MockCloud:
        """Serve; returns the running mock."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.mock.start(), self._loop).result(THREAD_TIMEOUT)
        return self.mock

    def close(self) -> None:
        """Stop serving and end the thread."""
        try:
            asyncio.run_coroutine_threadsafe(self.mock.aclose(), self._loop).result(THREAD_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(THREAD_TIMEOUT)
            self._loop.close()


@pytest.fixture
def clouds_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The only OpenStack configuration the test sees (empty until a mock is started)."""
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(tmp_path / "secure.yaml"))
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, clouds_yaml: Path) -> Iterator[Callable[..., MockCloud]]:
    """``cloud(**MockConfig options)``: a running mock that ``OS_CLOUD=mock`` points at."""
    started: list[ThreadedMock] = []

    def start(config: MockConfig | None = None, **options: Any) -> MockCloud:
        served = ThreadedMock(config or MockConfig(**options))
        started.append(served)
        mock = served.start()
        mock.write_clouds_yaml(clouds_yaml, cloud=CLOUD_NAME)
        monkeypatch.setenv("OS_CLOUD", CLOUD_NAME)
        return mock

    yield start
    for served in started:
        served.close()


@pytest.fixture
def bulkstop() -> Callable[..., Result]:
    """``bulkstop(*args)``: the command line, in-process; exceptions are not swallowed."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke
