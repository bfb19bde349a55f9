"""Fixtures of the end-to-end tests: the ``bulkstop`` command against a mock cloud.

* ``threaded_mock``: ``threaded_mock(MockConfig(...))`` starts a :class:`MockCloud` served by
  its own event loop in a background thread (:class:`bulkstop.testing.ServedCloud`, so a
  synchronous CLI run can talk to it over loopback) and returns it; it is closed after the
  test. Its journal is read from the test once the command has returned.
* ``cloud``: ``cloud(**MockConfig options)`` starts such a mock, points the test's
  ``clouds.yaml`` at it (``OS_CLOUD=mock``) and returns it. Configuration is isolated
  (``isolated_openstack_env``): no ``OS_*`` variable of the machine, no user ``clouds.yaml``,
  and the working directory is the test's ``tmp_path`` (reports land there).
* ``bulkstop``: ``bulkstop("stop", "--tag", ...)`` runs the click command in-process with
  :class:`click.testing.CliRunner` and returns the result (exit code, stdout, stderr apart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner, Result

from bulkstop.cli import main
from bulkstop.mockcloud import MockCloud, MockConfig
from bulkstop.testing import ServedCloud

#: The clouds.yaml entry every test uses.
CLOUD_NAME: Final = "mock"


@pytest.fixture
def threaded_mock() -> Iterator[Callable[[MockConfig], MockCloud]]:
    """``threaded_mock(config)``: a mock served from a background thread (closed after the test)."""
    started: list[ServedCloud] = []

    def start(config: MockConfig) -> MockCloud:
        served = ServedCloud(config)
        started.append(served)
        return served.start_thread()

    yield start
    for served in started:
        served.stop_thread()


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
