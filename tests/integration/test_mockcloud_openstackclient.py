"""python-openstackclient, the `openstack` command, against the mock: what it shows is Nova's.

It negotiates the highest microversion it and the cloud support (2.96 here), so it reads the
embedded flavor, ``pinned_availability_zone`` and the admin attributes as against Nova.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import pytest

from bulkstop.mockcloud import MockCloud
from bulkstop.testing import mock_cloud

pytest.importorskip("openstackclient")

#: The `openstack` command of this interpreter's environment.
OPENSTACK: Final = str(Path(sys.executable).with_name("openstack"))
#: Seconds one `openstack` command may take (its start-up alone takes a few).
COMMAND_TIMEOUT: Final = 120.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cloud() -> Iterator[MockCloud]:
    with mock_cloud(
        servers=8, projects=1, seed=2, never_scheduled=0.25, transition_delay=0
    ) as mock:
        yield mock


def openstack(mock: MockCloud, *args: str, admin: bool = False) -> Any:
    """``openstack ARGS`` as the member (or the admin) with only the mock's OS_* variables;
    the parsed JSON output (``-f json``), or None for a command without output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env |= mock.os_env(admin=admin) | {"OS_CLIENT_CONFIG_FILE": os.devnull}
    done = subprocess.run(
        [OPENSTACK, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_list_long_show_and_stop(cloud: MockCloud) -> None:
    target = next(s for s in cloud.servers.values() if s.vm_state == "active" and s.host)
    with ThreadPoolExecutor(max_workers=2) as pool:
        listing = pool.submit(openstack, cloud, "server", "list", "--long", "-f", "json")
        shown = pool.submit(openstack, cloud, "server", "show", target.id, "-f", "json", admin=True)
        rows, record = listing.result(), shown.result()

    assert {row["ID"] for row in rows} == set(cloud.servers)
    for row in rows:
        server = cloud.servers[row["ID"]]
        assert (row["Name"], row["Status"], row["Power State"]) == (
            server.name,
            server.status,
            server.power_state,
        )
        # The flavor's name comes from the record (embedded from 2.47), as against Nova.
        assert row["Flavor"].startswith("m1.")
        assert row["Availability Zone"] == "nova"
        assert row["Properties"] == dict(server.metadata)
    unscheduled = [row for row in rows if row["Status"] == "ERROR" and row["Networks"] == {}]
    assert unscheduled

    assert record["id"] == target.id and record["status"] == "ACTIVE"
    assert record["flavor"]["original_name"].startswith("m1.")
    assert record["OS-EXT-SRV-ATTR:host"] == target.host  # an admin's view
    assert record["host_status"] == "UP"
    assert record["pinned_availability_zone"] is None

    assert openstack(cloud, "server", "stop", target.id) is None
    assert cloud.accepted_stops() == {target.id: 1}
    assert target.status == "SHUTOFF"
