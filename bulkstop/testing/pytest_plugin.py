"""pytest fixtures: bulkstop's mock cloud for your tests (registered when bulkstop is installed).

* ``bulkstop_cloud``: a running mock (served from a background thread, so synchronous code can
  use it), closed after the test. Options come from the marker, as :class:`MockConfig` fields::

      @pytest.mark.bulkstop_cloud(servers=20, projects=1, faults=Faults(race=Trigger(rate=0.5)))
      def test_my_script(bulkstop_cloud): ...

* ``bulkstop_cloud_factory``: ``bulkstop_cloud_factory(**options)`` starts another one.
* ``bulkstop_cloud_env``: ``bulkstop_cloud`` with the test's environment pointing at it: the
  machine's ``OS_*`` variables removed, the mock's member credentials set as ``OS_*``, and a
  ``clouds.yaml`` holding the cloud ``mock`` as the only configuration file.

The mock's modules are imported when a fixture is used, not when pytest starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from bulkstop.mockcloud import MockCloud, MockConfig

#: The marker that configures ``bulkstop_cloud``.
MARKER: Final = "bulkstop_cloud"
#: The ``clouds.yaml`` entry ``bulkstop_cloud_env`` writes.
CLOUD_NAME: Final = "mock"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers", f"{MARKER}(config=None, **options): MockConfig of the bulkstop_cloud fixture"
    )


@pytest.fixture
def bulkstop_cloud_factory() -> Iterator[Callable[..., MockCloud]]:
    """``bulkstop_cloud_factory(config=None, **options)``: a running mock; all closed after."""
    from bulkstop.testing import mock_cloud

    with contextlib.ExitStack() as stack:

        def make(config: MockConfig | None = None, /, **options: Any) -> MockCloud:
            return stack.enter_context(mock_cloud(config, **options))

        yield make


@pytest.fixture
def bulkstop_cloud(
    request: pytest.FixtureRequest, bulkstop_cloud_factory: Callable[..., MockCloud]
) -> MockCloud:
    """A running mock cloud configured by ``@pytest.mark.bulkstop_cloud(...)``."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return bulkstop_cloud_factory()
    return bulkstop_cloud_factory(*marker.args, **marker.kwargs)


@pytest.fixture
def bulkstop_cloud_env(
    bulkstop_cloud: MockCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> MockCloud:
    """``bulkstop_cloud``, with ``OS_*`` and ``clouds.yaml`` (cloud ``mock``) pointing at it."""
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)
    for name, value in bulkstop_cloud.os_env().items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "clouds.yaml"
    bulkstop_cloud.write_clouds_yaml(path, cloud=CLOUD_NAME)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(path))
    return bulkstop_cloud
