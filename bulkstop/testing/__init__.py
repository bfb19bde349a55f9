"""Test your own automation against bulkstop's mock OpenStack cloud (Keystone + Nova).

The mock answers as Nova does at every microversion it advertises (2.1-2.96), on a loopback
port, with the fleet and the faults you give it, and keeps a journal of every request::

    from bulkstop.testing import Faults, Trigger, mock_cloud

    # synchronous code (a script, openstacksdk): served from a background thread
    with mock_cloud(servers=50, faults=Faults(race=Trigger(rate=0.1))) as cloud:
        env = cloud.os_env()                       # OS_AUTH_URL, OS_USERNAME, ...
        cloud.write_clouds_yaml("clouds.yaml")     # or one entry: cloud.clouds_entry()
        ...                                        # run the code under test
        stops = [r for r in cloud.requests if r.action == "os-stop"]

    # asynchronous code: served by the running event loop
    async with mock_cloud(fleet=[{"id": "...", "project": "p0"}]) as cloud:
        ...

    # another process (``python -m bulkstop.mockcloud``), e.g. for a command line under test
    with mock_cloud_process("--servers", "500", "--race-rate", "0.1") as cloud:
        subprocess.run([...], env=os.environ | cloud.os_env())
        cloud.requests(kind="action")

With pytest, the plugin (registered on install) gives the fixtures ``bulkstop_cloud`` (a
running mock; options from ``@pytest.mark.bulkstop_cloud(...)``), ``bulkstop_cloud_factory``
and ``bulkstop_cloud_env`` (the mock, with the test's ``OS_*`` and ``clouds.yaml`` pointing at
it). See :mod:`bulkstop.testing.pytest_plugin`.
"""

from bulkstop.mockcloud import (
    FakeClock,
    Faults,
    MockCloud,
    MockConfig,
    MockServer,
    Project,
    RequestRecord,
    Trigger,
)

from .process import ProcessCloud, mock_cloud_process
from .served import ServedCloud, mock_cloud

__all__ = [
    "FakeClock",
    "Faults",
    "MockCloud",
    "MockConfig",
    "MockServer",
    "ProcessCloud",
    "Project",
    "RequestRecord",
    "ServedCloud",
    "Trigger",
    "mock_cloud",
    "mock_cloud_process",
]
