"""openstacksdk, a real client, drives the mock: if it cannot use it, the mock is not faithful."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bulkstop.mockcloud import MockCloud

openstack = pytest.importorskip("openstack")

pytestmark = [
    # openstacksdk's config loader warns about its own deprecated InfluxDB option on every load.
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


def stop_one_tagged_server(connection: object) -> tuple[int, str, str]:
    """List by tag, stop the first stoppable server, wait for SHUTOFF (runs in a thread)."""
    compute = connection.compute  # type: ignore[attr-defined]
    tagged = list(compute.servers(tags="nightly-stop"))
    target = next(s for s in tagged if s.status == "ACTIVE" and not s.is_locked)
    compute.stop_server(target)
    stopped = compute.wait_for_server(target, status="SHUTOFF", interval=0.05, wait=10)
    return len(tagged), target.id, stopped.status


def expected_tagged(mock: MockCloud, project_id: str) -> int:
    return sum("nightly-stop" in mock.servers[sid].tags for sid in mock.server_ids(project_id))


async def test_password_auth_list_by_tag_stop_and_wait(mock_cloud: MockCloud) -> None:
    project_id = mock_cloud.project_ids[1]
    connection = openstack.connection.Connection(
        auth_url=mock_cloud.auth_url,
        username=mock_cloud.username,
        password=mock_cloud.password,
        project_id=project_id,
        user_domain_name=mock_cloud.user_domain,
        project_domain_name=mock_cloud.user_domain,
        region_name=mock_cloud.region,
        compute_api_version="2.26",
    )
    try:
        count, server_id, status = await asyncio.to_thread(stop_one_tagged_server, connection)
    finally:
        connection.close()
    assert count == expected_tagged(mock_cloud, project_id)
    assert status == "SHUTOFF"
    assert mock_cloud.accepted_stops() == {server_id: 1}
    listing = next(r for r in mock_cloud.requests if r.kind == "list")
    assert "tags=nightly-stop" in listing.query


async def test_clouds_yaml_written_by_the_mock(mock_cloud: MockCloud, tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    mock_cloud.write_clouds_yaml(path, cloud="mock")
    config = openstack.config.OpenStackConfig(config_files=[str(path)])
    connection = openstack.connection.Connection(
        config=config.get_one(cloud="mock"), compute_api_version="2.26"
    )
    try:
        count, _, status = await asyncio.to_thread(stop_one_tagged_server, connection)
    finally:
        connection.close()
    assert count == expected_tagged(mock_cloud, mock_cloud.project_ids[0])
    assert status == "SHUTOFF"
