"""Real clients cannot tell the mock from Nova: tempest's response schemas, Nova's list filters.

tempest's own compute clients (``tempest.lib.services.compute``) talk to the mock and validate
every answer against ``tempest.lib.api_schema.response.compute`` for the microversion asked,
as tempest does against a real Nova.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import pytest

from bulkstop.mockcloud import MockCloud, MockConfig
from bulkstop.mockcloud.records import SHAPES, View
from bulkstop.testing import mock_cloud

tempest_auth = pytest.importorskip("tempest.lib.auth")
from tempest.lib import exceptions as tempest_exceptions  # noqa: E402
from tempest.lib.api_schema.response.compute.v2_96 import servers as schema_296  # noqa: E402
from tempest.lib.common import rest_client  # noqa: E402
from tempest.lib.services.compute import (  # noqa: E402
    base_compute_client,
    flavors_client,
    servers_client,
    versions_client,
)

Connect = Callable[..., Awaitable[Any]]
Make = Callable[..., Awaitable[MockCloud]]

#: The microversions the issue names, and every one at which a record changes shape.
VERSIONS: Final = sorted(
    {"2.1", "2.26", "2.96"} | {f"{major}.{minor}" for major, minor in SHAPES},
    key=lambda v: tuple(int(x) for x in v.split(".")),
)


@pytest.fixture(scope="module")
def served() -> Iterator[MockCloud]:
    """One fleet with every kind of server: stopping, stopped, locked, paused, error, and
    ERROR servers that were never scheduled."""
    with mock_cloud(servers=40, projects=1, seed=5, never_scheduled=0.15) as mock:
        running = [s for s in mock.servers.values() if s.vm_state == "active" and s.host]
        running[0].begin("os-stop", 3600.0)  # powering-off for the whole module
        running[1].set_state("stopped")
        running[2].set_state("paused")
        running[3].locked = True
        yield mock


class Tempest:
    """tempest's compute clients, as the member or the admin."""

    def __init__(self, mock: MockCloud, *, admin: bool) -> None:
        credentials = tempest_auth.KeystoneV3Credentials(
            username=mock.admin_username if admin else mock.username,
            password=mock.admin_password if admin else mock.password,
            user_domain_name=mock.user_domain,
            project_id=mock.project_ids[0],
            project_domain_name=mock.user_domain,
        )
        provider = tempest_auth.KeystoneV3AuthProvider(credentials, mock.auth_url)
        self.servers = servers_client.ServersClient(provider, "compute", mock.region)
        self.flavors = flavors_client.FlavorsClient(provider, "compute", mock.region)
        self.versions = versions_client.VersionsClient(provider, "compute", mock.region)


@pytest.fixture
def microversion(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Sets the microversion tempest's compute clients send and validate against."""

    def use(version: str) -> None:
        monkeypatch.setattr(base_compute_client, "COMPUTE_MICROVERSION", version)

    return use


class OK(dict[str, str]):
    """A response as tempest's validator reads it: a header dict with a status."""

    status = 200


class TestTempestSchemas:
    """Every answer tempest's clients get validates against tempest's schema of its version."""

    @pytest.mark.parametrize("admin", [False, True], ids=["member", "admin"])
    @pytest.mark.parametrize("version", VERSIONS)
    def test_servers_and_flavors(
        self,
        served: MockCloud,
        microversion: Callable[[str], None],
        version: str,
        admin: bool,
    ) -> None:
        microversion(version)
        tempest = Tempest(served, admin=admin)
        detail = tempest.servers.list_servers(detail=True)["servers"]
        assert len(detail) == len(served.servers)
        summary = tempest.servers.list_servers(limit=10)
        assert len(summary["servers"]) == 10 and summary["servers_links"]
        one_of_each = {
            (r["status"], r["OS-EXT-STS:task_state"], r["hostId"] == ""): r for r in detail
        }
        for record in one_of_each.values():
            shown = tempest.servers.show_server(record["id"])["server"]
            assert shown["status"] == record["status"]
        flavors = tempest.flavors.list_flavors(detail=True)["flavors"]
        assert {f["id"] for f in tempest.flavors.list_flavors()["flavors"]} == {
            f["id"] for f in flavors
        }
        tempest.flavors.show_flavor(flavors[0]["id"])

        statuses = {r["status"] for r in detail}
        assert {"ACTIVE", "SHUTOFF", "ERROR", "PAUSED"} <= statuses
        unscheduled = [r for r in detail if r["status"] == "ERROR" and not r["hostId"]]
        assert unscheduled and all("No valid host" in r["fault"]["message"] for r in unscheduled)
        admin_keys = {k for r in detail for k in r if k.startswith("OS-EXT-SRV-ATTR:host")}
        if admin:
            assert "OS-EXT-SRV-ATTR:host" in admin_keys
        else:
            assert "OS-EXT-SRV-ATTR:host" not in admin_keys

    def test_versions(self, served: MockCloud, microversion: Callable[[str], None]) -> None:
        microversion("2.96")
        tempest = Tempest(served, admin=False)
        versions = tempest.versions.list_versions()["versions"]
        assert [v["id"] for v in versions] == ["v2.0", "v2.1"]
        assert versions[1]["version"] == "2.96"
        # The version document under the project's endpoint, as clients discover it.
        document = tempest.versions.get_version_by_url(served.compute_url(served.project_ids[0]))
        assert document["version"]["id"] == "v2.1"

    def test_the_schemas_are_not_vacuous(self, served: MockCloud) -> None:
        """A 2.46-shaped record (the old mock's) fails the 2.96 schema: the check can fail."""
        record = next(iter(served.servers.values())).detail(
            served.base_url, View.of((2, 46), admin=False)
        )
        response = OK()
        rest_client.RestClient.validate_response(
            schema_296.get_server,
            response,
            {
                "server": served.servers[record["id"]].detail(
                    served.base_url, View.of((2, 96), show=True)
                )
            },
        )
        old = copy.deepcopy(record)
        with pytest.raises(tempest_exceptions.InvalidHTTPResponseBody):
            rest_client.RestClient.validate_response(
                schema_296.get_server, response, {"server": old}
            )


#: An exact fleet for the filters: (name, fleet entry options).
FILTER_FLEET: Final = {
    "projects": [{"id": "f" * 32, "name": "filters"}],
    "servers": [
        {"id": "s-0", "name": "web-a", "project": "filters", "flavor": "2"},
        {"id": "s-1", "name": "web-b", "project": "filters", "locked": True, "flavor": "2"},
        {"id": "s-2", "name": "db-a", "project": "filters", "vm_state": "stopped", "flavor": "4"},
        {"id": "s-3", "name": "db-b", "project": "filters", "vm_state": "error", "host": None},
        {"id": "s-4", "name": "batch-a", "project": "filters", "host": "compute-9"},
    ],
}


async def names(client: Any, query: str, *, status: int = 200) -> list[str]:
    answer = await client.get(f"/servers/detail?{query}")
    assert answer.status == status, answer.text
    return [r["name"] for r in answer.json["servers"]] if status == 200 else []


class TestFilters:
    """Each list filter is applied where Nova applies it, and ignored only where Nova does."""

    @pytest.fixture
    async def mock(self, make_mock_cloud: Make) -> MockCloud:
        return await make_mock_cloud(MockConfig(fleet=FILTER_FLEET))

    async def test_locked_from_2_73(self, mock: MockCloud, mock_client: Connect) -> None:
        assert await names(await mock_client(mock, version="2.73"), "locked=true") == ["web-b"]
        assert len(await names(await mock_client(mock, version="2.73"), "locked=0")) == 4
        # Below 2.73 Nova strips the parameter: every server.
        assert len(await names(await mock_client(mock, version="2.72"), "locked=true")) == 5
        await names(await mock_client(mock, version="2.73"), "locked=maybe", status=400)

    async def test_changes_since_and_before(self, mock: MockCloud, mock_client: Connect) -> None:
        client = await mock_client(mock, version="2.66")
        mock.servers["s-2"].set_state("active")  # updated now; the others in 2024
        assert await names(client, "changes-since=2025-01-01T00:00:00Z") == ["db-a"]
        assert len(await names(client, "changes-before=2025-01-01T00:00:00Z")) == 4
        await names(
            client,
            "changes-since=2025-01-02T00:00:00Z&changes-before=2025-01-01T00:00:00Z",
            status=400,
        )
        await names(client, "changes-since=yesterday", status=400)
        older = await mock_client(mock, version="2.65")  # changes-before is ignored below 2.66
        assert len(await names(older, "changes-before=2000-01-01T00:00:00Z")) == 5

    async def test_ip_image_flavor(self, mock: MockCloud, mock_client: Connect) -> None:
        client = await mock_client(mock)
        assert await names(client, "ip=10.0.0.2$") == ["db-a"]  # matched from the start
        assert await names(client, "ip=0.0.2") == []
        assert len(await names(client, "image=70a599e0-31e7-49b7-b260-868f441e862b")) == 5
        assert await names(client, "image=another") == []
        assert await names(client, "flavor=2") == ["web-a", "web-b"]
        assert await names(client, "flavor=nope") == []

    async def test_sorting_and_pages(self, mock: MockCloud, mock_client: Connect) -> None:
        client = await mock_client(mock)
        ordered = await names(client, "sort_key=display_name&sort_dir=asc")
        assert ordered == sorted(ordered)
        first = await client.get("/servers/detail?sort_key=display_name&sort_dir=asc&limit=2")
        marker = first.json["servers"][-1]["id"]
        rest = await names(client, f"sort_key=display_name&sort_dir=asc&marker={marker}")
        assert [r["name"] for r in first.json["servers"]] + rest == ordered
        await names(client, "sort_key=display_name&sort_dir=sideways", status=400)
        await names(client, "sort_key=host", status=403)  # admins only
        admin = await mock_client(mock, admin=True)
        assert len(await names(admin, "sort_key=host")) == 5

    async def test_admin_only_filters(self, mock: MockCloud, mock_client: Connect) -> None:
        member = await mock_client(mock, version="2.82")
        admin = await mock_client(mock, admin=True, version="2.82")
        # Ignored for members (Nova strips them), applied for admins.
        assert len(await names(member, "vm_state=stopped")) == 5
        assert await names(admin, "vm_state=stopped") == ["db-a"]
        assert len(await names(member, "host=compute-9")) == 5
        assert await names(admin, "host=compute-9") == ["batch-a"]
        assert await names(admin, "task_state=powering-off") == []
        # From 2.83 members may filter by state, never by host.
        newer = await mock_client(mock, version="2.83")
        assert await names(newer, "vm_state=error") == ["db-b"]
        assert len(await names(newer, "host=compute-9")) == 5

    async def test_unknown_parameters(self, mock: MockCloud, mock_client: Connect) -> None:
        assert len(await names(await mock_client(mock, version="2.74"), "colour=red")) == 5
        await names(await mock_client(mock, version="2.75"), "colour=red", status=400)
        await names(await mock_client(mock), "metadata=x", status=400)

    async def test_tags_below_2_26_are_ignored(self, mock: MockCloud, mock_client: Connect) -> None:
        assert len(await names(await mock_client(mock, version="2.25"), "tags=nope")) == 5
        assert await names(await mock_client(mock, version="2.26"), "tags=nope") == []
