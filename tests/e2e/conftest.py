"""Fixtures of the end-to-end tests: the ``bulkstop`` command against a mock cloud.

* ``threaded_mock``: ``threaded_mock(MockConfig(...))`` starts a :class:`MockCloud` served by
  its own event loop in a background thread (so a synchronous CLI run can talk to it over
  loopback) and returns it; it is closed after the test. Its journal is read from the test once
  the command has returned.
* ``cloud``: ``cloud(**MockConfig options)`` starts such a mock, points the test's
  ``clouds.yaml`` at it (``OS_CLOUD=mock``) and returns it. Configuration is isolated
  (``isolated_openstack_env``): no ``OS_*`` variable of the machine, no user ``clouds.yaml``,
  and the working directory is the test's ``tmp_path`` (reports land there).
* ``bulkstop``: ``bulkstop("stop", "--tag", ...)`` runs the click command in-process with
  :class:`click.testing.CliRunner` and returns the result (exit code, stdout, stderr apart).
"""

from __future__ import annotations

import asyncio
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
def threaded_mock() -> Iterator[Callable[[MockConfig], MockCloud]]:
    """``threaded_mock(config)``: a mock served from a background thread (closed after the test)."""
    started: list[ThreadedMock] = []

    def start(config: MockConfig) -> MockCloud:
        served = ThreadedMock(config)
        started.append(served)
        return served.start()

    yield start
    for served in started:
        served.close()


@pytest.fixture
def cloud(
    monkeypatch: pytest.MonkeyPatch,
    isolated_openstack_env: Path,
    threaded_mock: Callable[[MockConfig], MockCloud],
) -> Callable[..., MockCloud]:
    """``cloud(**MockConfig options)``: a running mock that ``OS_CLOUD=mock`` points at."""

    def start(config: MockConfig | None = None, **options: Any) -> MockCloud:
        mock = threaded_mock(config or MockConfig(**options))
        mock.write_clouds_yaml(isolated_openstack_env, cloud=CLOUD_NAME)
        monkeypatch.setenv("OS_CLOUD", CLOUD_NAME)
        return mock

    return start


@pytest.fixture
def bulkstop() -> Callable[..., Result]:
    """``bulkstop(*args)``: the command line, in-process; exceptions are not swallowed."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke
