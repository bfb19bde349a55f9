"""bulkstop.testing's own surface: the pytest fixtures and the context managers."""

from __future__ import annotations

import os
from collections.abc import Callable

import openstack
import pytest

from bulkstop.mockcloud import MockCloud, MockConfig
from bulkstop.testing import mock_cloud

pytestmark = [
    # openstacksdk's config loader warns about its own deprecated InfluxDB option on every load.
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


def server_ids(connection: openstack.connection.Connection) -> set[str]:
    try:
        return {s.id for s in connection.compute.servers()}
    finally:
        connection.close()


@pytest.mark.bulkstop_cloud(servers=6, projects=2, seed=3)
def test_env_fixture_points_clients_at_the_mock(bulkstop_cloud_env: MockCloud) -> None:
    assert os.environ["OS_AUTH_URL"] == bulkstop_cloud_env.auth_url
    first = set(bulkstop_cloud_env.server_ids(bulkstop_cloud_env.project_ids[0]))
    assert len(bulkstop_cloud_env.servers) == 6
    assert server_ids(openstack.connect()) == first  # from the OS_* variables
    assert server_ids(openstack.connect(cloud="mock")) == first  # from clouds.yaml


def test_factory_and_credentials(bulkstop_cloud_factory: Callable[..., MockCloud]) -> None:
    mock = bulkstop_cloud_factory(servers=4, projects=2)
    second = mock.project_ids[1]
    admin = mock.os_env(second, admin=True)
    assert (admin["OS_USERNAME"], admin["OS_PROJECT_ID"]) == (mock.admin_username, second)
    credential = mock.os_env(application_credential=True)
    assert credential["OS_AUTH_TYPE"] == "v3applicationcredential"
    assert "OS_PASSWORD" not in credential
    assert server_ids(openstack.connect(**mock.clouds_entry(second))) == set(
        mock.server_ids(second)
    )


async def test_async_form_serves_on_the_running_loop() -> None:
    async with mock_cloud(servers=3, projects=1) as mock:
        assert mock.running and len(mock.servers) == 3
    assert not mock.running


def test_sync_form_closes_even_when_the_test_fails() -> None:
    with pytest.raises(ZeroDivisionError), mock_cloud(servers=1) as mock:
        assert mock.running
        1 / 0  # noqa: B018
    assert not mock.running


def test_a_config_or_keywords_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        mock_cloud(MockConfig(), servers=3)
