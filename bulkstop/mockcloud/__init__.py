"""A faithful mock of Keystone v3 + Nova v2.1 for tests, demos, benchmarks and rehearsals.

In-process::

    from bulkstop.mockcloud import MockCloud, MockConfig, Faults, Trigger

    async with MockCloud(MockConfig(servers=200, projects=2, seed=1)) as mock:
        mock.auth_url, mock.project_ids, mock.servers, mock.requests

Standalone: ``bulkstop mock-cloud`` / ``python -m bulkstop.mockcloud`` (see README.md here).

Modules: :mod:`.config` (what to serve), :mod:`.fleet` (seeded or loaded servers),
:mod:`.state` (servers and transitions), :mod:`.records` (Nova's records per microversion and
flavors), :mod:`.filters` (Nova's list filters and sorting), :mod:`.identity` (Keystone),
:mod:`.compute` (Nova), :mod:`.faults` (injection decisions), :mod:`.bodies` (error bodies),
:mod:`.journal` (request records), :mod:`.credentials` (``OS_*`` and ``clouds.yaml``),
:mod:`.clock` (a fake clock for tests), :mod:`.app` (assembly), :mod:`.standalone` and
:mod:`.cli` (the process). For tests of your own code: :mod:`bulkstop.testing`.
"""

from .app import MockCloud
from .clock import FakeClock
from .config import Faults, MockConfig, Trigger
from .journal import RequestRecord
from .state import MockServer, Project

__all__ = [
    "FakeClock",
    "Faults",
    "MockCloud",
    "MockConfig",
    "MockServer",
    "Project",
    "RequestRecord",
    "Trigger",
]
