"""The mock's Nova over loopback: listing, microversions, actions, scoping, admin endpoints."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bulkstop.mockcloud import FakeClock, Faults, MockCloud, MockConfig

Make = Callable[..., Awaitable[MockCloud]]
Connect = Callable[..., Awaitable[Any]]

ALPHA: Final = "a" * 32
BETA: Final = "b" * 32
EXACT_FLEET: Final = {
    "projects": [{"id": ALPHA, "name": "alpha"}, {"id": BETA, "name": "beta"}],
    "servers": [
        {"id": "s-active", "name": "web-1", "project": "alpha", "tags": ["env=prod"]},
        {"id": "s-stopped", "name": "web-2", "project": "alpha", "vm_state": "stopped"},
        {"id": "s-locked", "name": "db-1", "project": "alpha", "locked": True},
        {"id": "s-paused", "name": "db-2", "project": "alpha", "vm_state": "paused"},
        {"id": "s-error", "name": "batch-1", "project": "alpha", "vm_state": "error"},
        {"id": "s-beta", "name": "web-3", "project": "beta"},
    ],
}
#: Keys of Nova's 2.26 ``servers/detail`` record (non-admin view).
DETAIL_KEYS: Final = {
    "id",
    "name",
    "status",
    "tenant_id",
    "user_id",
    "tags",
    "metadata",
    "locked",
    "description",
    "created",
    "updated",
    "links",
    "addresses",
    "flavor",
    "image",
    "hostId",
    "key_name",
    "progress",
    "accessIPv4",
    "accessIPv6",
    "config_drive",
    "security_groups",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:power_state",
    "OS-EXT-AZ:availability_zone",
    "OS-DCF:diskConfig",
    "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at",
    "os-extended-volumes:volumes_attached",
}


async def exact(make: Make, **options: Any) -> MockCloud:
    return await make(MockConfig(fleet=EXACT_FLEET, **options))


def next_href(body: dict[str, Any]) -> str | None:
    return next(
        (link["href"] for link in body.get("servers_links", []) if link["rel"] == "next"), None
    )


async def list_all(client: Any, path: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Follow ``next`` links; returns all records and each page's size."""
    records: list[dict[str, Any]] = []
    sizes = []
    url: str | None = client.compute + path
    while url is not None:
        answer = await client.get("", url=url)
        assert answer.status == 200, answer.text
        body = answer.json
        records += body["servers"]
        sizes.append(len(body["servers"]))
        url = next_href(body)
    return records, sizes


class TestDiscovery:
    """Version documents for keystoneauth's discovery."""

    async def test_root_and_v21(self, mock_cloud: MockCloud) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(mock_cloud.base_url + "/") as response:
                versions = (await response.json())["versions"]
            async with session.get(mock_cloud.base_url + "/v2.1") as response:
                version = (await response.json())["version"]
        assert [v["id"] for v in versions] == ["v2.0", "v2.1"]  # as Nova lists them
        assert version["min_version"] == "2.1"
        assert tuple(int(x) for x in version["version"].split(".")) >= (2, 26)
        assert version["links"][0]["href"] == mock_cloud.base_url + "/v2.1/"


class TestPagination:
    """limit/marker, servers_links rel=next whenever a page is full, max_limit clamping."""

    async def test_full_pages_then_an_empty_last_page(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        client = await mock_client(mock_cloud)
        records, sizes = await list_all(client, "/servers/detail?limit=10")
        assert sizes == [10] * 10 + [0]
        assert [r["id"] for r in records] == mock_cloud.server_ids(client.project_id)

    async def test_partial_last_page_has_no_link(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        client = await mock_client(mock_cloud)
        records, sizes = await list_all(client, "/servers?limit=30")
        assert sizes == [30, 30, 30, 10]
        assert set(records[0]) == {"id", "name", "links"}

    async def test_next_link_keeps_filters(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        client = await mock_client(mock_cloud)
        answer = await client.get("/servers/detail?limit=2&tags=env=prod")
        href = next_href(answer.json)
        assert href is not None
        parts = urlsplit(href)
        assert parts.path == f"/v2.1/{client.project_id}/servers/detail"
        query = parse_qs(parts.query)
        assert query["tags"] == ["env=prod"]
        assert query["marker"] == [answer.json["servers"][-1]["id"]]

    async def test_limit_is_clamped_to_max_limit(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        mock = await make_mock_cloud(servers=20, projects=1, max_limit=7)
        client = await mock_client(mock)
        first = await client.get("/servers?limit=500")
        assert len(first.json["servers"]) == 7
        _, sizes = await list_all(client, "/servers")
        assert sizes == [7, 7, 6]

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("marker=nope", "marker [nope] not found"),
            ("limit=-1", "limit param must be positive"),
            ("limit=ten", "limit param must be an integer"),
            ("all_tenants=maybe", "all_tenants"),
        ],
    )
    async def test_bad_parameters_are_400(
        self, mock_cloud: MockCloud, mock_client: Connect, query: str, message: str
    ) -> None:
        answer = await (await mock_client(mock_cloud)).get("/servers/detail?" + query)
        assert answer.status == 400
        assert message in answer.json["badRequest"]["message"]

    async def test_limit_zero_is_an_empty_page(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        answer = await (await mock_client(mock_cloud)).get("/servers?limit=0")
        assert answer.json == {"servers": []}


class TestFilters:
    """Tag filters (2.26+ only), name regex, status."""

    def expected(self, mock: MockCloud, project_id: str, keep: Callable[[Any], bool]) -> list[str]:
        return [sid for sid in mock.server_ids(project_id) if keep(mock.servers[sid])]

    async def ids(self, client: Any, query: str) -> list[str]:
        records, _ = await list_all(client, "/servers/detail?" + query)
        return [r["id"] for r in records]

    @pytest.mark.parametrize(
        ("query", "keep"),
        [
            ("tags=env=prod,nightly-stop", lambda t: {"env=prod", "nightly-stop"} <= t),
            ("tags-any=role=db,role=batch", lambda t: bool({"role=db", "role=batch"} & t)),
            ("not-tags=env=prod,nightly-stop", lambda t: not {"env=prod", "nightly-stop"} <= t),
            ("not-tags-any=env=prod,nightly-stop", lambda t: not {"env=prod", "nightly-stop"} & t),
            ("tags=nightly-stop&not-tags-any=bulkstop:protect", lambda t: "nightly-stop" in t),
        ],
    )
    async def test_tag_filters(
        self, mock_cloud: MockCloud, mock_client: Connect, query: str, keep: Callable[[Any], bool]
    ) -> None:
        client = await mock_client(mock_cloud)
        if "bulkstop:protect" in query:
            want = self.expected(
                mock_cloud,
                client.project_id,
                lambda s: keep(s.tags) and "bulkstop:protect" not in s.tags,
            )
        else:
            want = self.expected(mock_cloud, client.project_id, lambda s: keep(s.tags))
        got = await self.ids(client, query + "&limit=7")
        assert got == want
        assert 0 < len(got) < 100

    @pytest.mark.parametrize("version", [None, "2.1", "2.25"])
    async def test_tag_filters_are_silently_ignored_below_2_26(
        self, mock_cloud: MockCloud, mock_client: Connect, version: str | None
    ) -> None:
        client = await mock_client(mock_cloud, version=version)
        answer = await client.get("/servers/detail?tags=nightly-stop&not-tags-any=env=prod")
        assert answer.status == 200
        records = answer.json["servers"]
        assert len(records) == 100  # the whole project
        assert all("tags" not in r for r in records)
        assert answer.headers["X-OpenStack-Nova-API-Version"] == (version or "2.1")

    async def test_legacy_header_and_precedence(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        client = await mock_client(mock_cloud, version=None)
        legacy = {"X-OpenStack-Nova-API-Version": "2.26"}
        answer = await client.get("/servers/detail?tags=nightly-stop", headers=legacy)
        assert 0 < len(answer.json["servers"]) < 100
        both = {**legacy, "OpenStack-API-Version": "compute 2.1"}
        answer = await client.get("/servers/detail?tags=nightly-stop", headers=both)
        assert len(answer.json["servers"]) == 100
        assert answer.headers["OpenStack-API-Version"] == "compute 2.1"

    async def test_name_is_a_regex(self, mock_cloud: MockCloud, mock_client: Connect) -> None:
        client = await mock_client(mock_cloud)
        pattern = re.compile(r"^web-00[0-4]")
        want = self.expected(
            mock_cloud, client.project_id, lambda s: pattern.search(s.name) is not None
        )
        assert await self.ids(client, "name=^web-00[0-4]") == want
        assert want

    async def test_status(self, mock_cloud: MockCloud, mock_client: Connect) -> None:
        client = await mock_client(mock_cloud)
        want = self.expected(mock_cloud, client.project_id, lambda s: s.status == "SHUTOFF")
        assert await self.ids(client, "status=shutoff") == want
        assert want
        both = self.expected(
            mock_cloud, client.project_id, lambda s: s.status in {"SHUTOFF", "ERROR"}
        )
        assert await self.ids(client, "status=SHUTOFF&status=ERROR") == both

    async def test_unknown_status(self, mock_cloud: MockCloud, mock_client: Connect) -> None:
        old = await (await mock_client(mock_cloud)).get("/servers/detail?status=NAPPING")
        assert (old.status, old.json["servers"]) == (200, [])
        new = await (await mock_client(mock_cloud, version="2.38")).get("/servers?status=NAPPING")
        assert new.status == 400


class TestScoping:
    """Tokens, projects and the admin role."""

    async def test_all_tenants_is_admin_only(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        member = await mock_client(mock_cloud)
        answer = await member.get("/servers/detail?all_tenants=1")
        assert answer.status == 403
        assert answer.json["forbidden"]["message"] == (
            "Policy doesn't allow os_compute_api:servers:detail:get_all_tenants to be performed."
        )
        admin = await mock_client(mock_cloud, admin=True)
        records, _ = await list_all(admin, "/servers?all_tenants=True")
        assert [r["id"] for r in records] == mock_cloud.server_ids()
        other = mock_cloud.project_ids[1]
        records, _ = await list_all(admin, f"/servers/detail?all_tenants=1&project_id={other}")
        assert {r["tenant_id"] for r in records} == {other}
        assert len(records) == 100

    async def test_all_tenants_false_is_the_own_project(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        member = await mock_client(mock_cloud)
        records, _ = await list_all(member, "/servers?all_tenants=0")
        assert len(records) == 100

    @pytest.mark.parametrize("admin", [False, True])
    async def test_token_of_another_project_is_refused(
        self, mock_cloud: MockCloud, mock_client: Connect, admin: bool
    ) -> None:
        client = await mock_client(mock_cloud, admin=admin)
        other = mock_cloud.project_ids[1]
        answer = await client.get("", url=mock_cloud.compute_url(other) + "/servers")
        # Nova checks the URL's project against the token's, admins included.
        assert answer.status == 400
        assert "doesn't match Context's project_id" in answer.json["badRequest"]["message"]

    async def test_servers_of_other_projects_are_not_found(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        mock = await exact(make_mock_cloud)
        member = await mock_client(mock, ALPHA)
        assert (await member.get("/servers/s-beta")).status == 404
        assert (await member.action("s-beta")).status == 404
        admin = await mock_client(mock, ALPHA, admin=True)
        assert (await admin.get("/servers/s-beta")).status == 200

    @pytest.mark.parametrize("token", [None, "not-a-token"])
    async def test_missing_or_unknown_token_is_401(
        self, mock_cloud: MockCloud, token: str | None
    ) -> None:
        headers = {"X-Auth-Token": token} if token else {}
        url = mock_cloud.compute_url(mock_cloud.project_ids[0]) + "/servers"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers) as response,
        ):
            assert response.status == 401
            body = await response.json()
        assert body["error"]["code"] == 401
        assert mock_cloud.requests[-1].status == 401

    @pytest.mark.parametrize(
        ("version", "status"), [("2.999", 406), ("two", 400), ("latest", 200), ("2.0", 406)]
    )
    async def test_microversion_bounds(
        self, mock_cloud: MockCloud, mock_client: Connect, version: str, status: int
    ) -> None:
        answer = await (await mock_client(mock_cloud, version=version)).get("/servers?limit=1")
        assert answer.status == status


class TestShow:
    """``GET /servers/{id}``."""

    async def test_record_shape(self, mock_cloud: MockCloud, mock_client: Connect) -> None:
        client = await mock_client(mock_cloud)
        sid = mock_cloud.server_ids(client.project_id)[0]
        answer = await client.get(f"/servers/{sid}")
        assert answer.status == 200
        record = answer.json["server"]
        assert set(record) == DETAIL_KEYS
        server = mock_cloud.servers[sid]
        assert record["tags"] == sorted(server.tags)
        assert (record["id"], record["tenant_id"], record["status"]) == (
            sid,
            client.project_id,
            server.status,
        )
        assert answer.headers["X-Openstack-Request-Id"].startswith("req-")
        assert answer.headers["X-Compute-Request-Id"] == answer.headers["X-Openstack-Request-Id"]

    async def test_old_microversion_record(
        self, mock_cloud: MockCloud, mock_client: Connect
    ) -> None:
        client = await mock_client(mock_cloud, version="2.8")
        sid = mock_cloud.server_ids(client.project_id)[0]
        record = (await client.get(f"/servers/{sid}")).json["server"]
        assert DETAIL_KEYS - set(record) == {"tags", "locked", "description"}

    async def test_unknown_server_is_404(self, mock_cloud: MockCloud, mock_client: Connect) -> None:
        answer = await (await mock_client(mock_cloud)).get("/servers/nope")
        assert answer.status == 404
        assert answer.json == {
            "itemNotFound": {"code": 404, "message": "Instance nope could not be found."}
        }


class TestActions:
    """os-stop / os-start: Nova's preconditions, messages and transitions."""

    async def test_stop_then_409s_then_shutoff(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        clock = FakeClock()
        mock = await exact(make_mock_cloud, clock=clock, transition_delay=1.0)
        client = await mock_client(mock, ALPHA)
        accepted = await client.action("s-active")
        assert (accepted.status, accepted.text) == (202, "")
        during = await client.action("s-active")
        assert during.status == 409
        assert during.json == {
            "conflictingRequest": {
                "code": 409,
                "message": "Cannot 'stop' instance s-active while it is in task_state powering-off",
            }
        }
        record = (await client.get("/servers/s-active")).json["server"]
        assert (record["status"], record["OS-EXT-STS:task_state"]) == ("ACTIVE", "powering-off")
        clock.advance(1.0)
        record = (await client.get("/servers/s-active")).json["server"]
        assert (record["status"], record["OS-EXT-STS:vm_state"]) == ("SHUTOFF", "stopped")
        assert record["OS-EXT-STS:power_state"] == 4
        after = await client.action("s-active")
        assert after.json["conflictingRequest"]["message"] == (
            "Cannot 'stop' instance s-active while it is in vm_state stopped"
        )
        assert mock.accepted_stops() == {"s-active": 1}

    async def test_start_reverses_stop(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        mock = await exact(make_mock_cloud, transition_delay=0.0)
        client = await mock_client(mock, ALPHA)
        assert (await client.action("s-stopped", "os-start")).status == 202
        assert (await client.get("/servers/s-stopped")).json["server"]["status"] == "ACTIVE"
        refused = await client.action("s-active", "os-start")
        assert refused.json["conflictingRequest"]["message"] == (
            "Cannot 'start' instance s-active while it is in vm_state active"
        )

    @pytest.mark.parametrize(
        ("server", "message"),
        [
            ("s-locked", "Instance s-locked is locked"),
            ("s-paused", "Cannot 'stop' instance s-paused while it is in vm_state paused"),
            ("s-stopped", "Cannot 'stop' instance s-stopped while it is in vm_state stopped"),
        ],
    )
    async def test_conflicts(
        self, make_mock_cloud: Make, mock_client: Connect, server: str, message: str
    ) -> None:
        client = await mock_client(await exact(make_mock_cloud), ALPHA)
        answer = await client.action(server)
        assert answer.status == 409
        assert answer.json["conflictingRequest"]["message"] == message

    async def test_error_state_stops_and_admin_stops_locked(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        mock = await exact(make_mock_cloud)
        assert (await (await mock_client(mock, ALPHA)).action("s-error")).status == 202
        admin = await mock_client(mock, ALPHA, admin=True)
        assert (await admin.action("s-locked")).status == 202

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"{not json", "Malformed request body"),
            (b'{"os-stop": {}, "os-start": {}}', "Malformed request body"),
            (b"[]", "Malformed request body"),
            (b'{"os-reboot": {}}', "There is no such action: os-reboot"),
        ],
    )
    async def test_bad_bodies_are_400_before_404(
        self, make_mock_cloud: Make, mock_client: Connect, data: bytes, message: str
    ) -> None:
        client = await mock_client(await exact(make_mock_cloud), ALPHA)
        for server in ("s-active", "no-such-server"):
            answer = await client.request(
                "POST",
                f"/servers/{server}/action",
                data=data,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status == 400
            assert answer.json == {"badRequest": {"code": 400, "message": message}}

    @pytest.mark.parametrize("body", [{"os-stop": None}, {"os-stop": {"type": "HARD"}}])
    async def test_any_stop_value_is_accepted(
        self, make_mock_cloud: Make, mock_client: Connect, body: dict[str, Any]
    ) -> None:
        client = await mock_client(await exact(make_mock_cloud), ALPHA)
        answer = await client.request("POST", "/servers/s-active/action", body=body)
        assert answer.status == 202

    async def test_unknown_server_is_404(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        client = await mock_client(await exact(make_mock_cloud), ALPHA)
        answer = await client.action("nope")
        assert answer.json == {
            "itemNotFound": {"code": 404, "message": "Instance nope could not be found."}
        }

    async def test_huawei_mode(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        mock = await exact(make_mock_cloud, huawei=True, faults=Faults(flavour="huawei"))
        client = await mock_client(mock, ALPHA)
        accepted = await client.action("s-active")
        assert (accepted.status, accepted.text) == (204, "")
        assert accepted.headers["X-Request-Id"].startswith("req-")
        stopped = await client.action("s-stopped")
        assert stopped.status == 409
        assert stopped.json["error"]["code"] == "BMS.0039"
        powering_off = await client.action("s-active")
        assert powering_off.json["error"]["code"] == "BMS.0036"
        assert mock.accepted_stops() == {"s-active": 1}


class TestAdminEndpoints:
    """The journal and the state, read back over HTTP and in process."""

    async def test_journal(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        mock = await exact(make_mock_cloud)
        client = await mock_client(mock, ALPHA)
        await client.action("s-active")
        await client.action("s-active")
        record = mock.requests[-2]
        assert (record.kind, record.method, record.project_id) == ("action", "POST", ALPHA)
        assert (record.server_id, record.action, record.status) == ("s-active", "os-stop", 202)
        assert mock.requests[-1].status == 409
        assert mock.requests[0].kind == "identity"
        async with aiohttp.ClientSession() as session:
            url = mock.base_url + "/_mock/requests?kind=action"
            async with session.get(url) as response:
                body = await response.json()
            assert [r["status"] for r in body["requests"]] == [202, 409]
            # Polling from next_offset returns only what came since (here: the poll itself).
            url = f"{mock.base_url}/_mock/requests?offset={body['next_offset']}"
            async with session.get(url) as response:
                assert [r["path"] for r in (await response.json())["requests"]] == [
                    "/_mock/requests"
                ]
            async with session.get(mock.base_url + "/_mock/requests?offset=-1") as response:
                assert response.status == 400
        assert mock.requests[-1].kind == "admin"

    async def test_servers_reset_and_info(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        mock = await exact(make_mock_cloud, transition_delay=0.0)
        client = await mock_client(mock, ALPHA)
        await client.action("s-active")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{mock.base_url}/_mock/servers?project_id={BETA}") as response:
                assert [s["id"] for s in (await response.json())["servers"]] == ["s-beta"]
            async with session.get(mock.base_url + "/_mock/servers") as response:
                servers = {s["id"]: s for s in (await response.json())["servers"]}
            assert servers["s-active"]["status"] == "SHUTOFF"
            async with session.post(mock.base_url + "/_mock/reset") as response:
                assert response.status == 204
            assert mock.servers["s-active"].status == "ACTIVE"
            assert [r.kind for r in mock.requests] == ["admin"]  # only the reset itself
            async with session.get(mock.base_url + "/_mock/info") as response:
                info = await response.json()
        assert info["project_ids"] == [ALPHA, BETA]
        assert info["auth_url"] == mock.auth_url
        # A token from before the reset still works.
        assert (await client.get("/servers/s-active")).status == 200

    async def test_revoke_tokens_endpoint(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        mock = await exact(make_mock_cloud)
        client = await mock_client(mock, ALPHA)
        async with (
            aiohttp.ClientSession() as session,
            session.post(mock.base_url + "/_mock/revoke-tokens") as response,
        ):
            assert response.status == 204
        assert (await client.get("/servers")).status == 401

    async def test_unknown_paths_are_journaled_404s(self, mock_cloud: MockCloud) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.delete(mock_cloud.base_url + "/v2.1/x/servers/y") as response,
        ):
            assert response.status == 404
        assert (mock_cloud.requests[-1].kind, mock_cloud.requests[-1].status) == ("other", 404)


class TestClientConfiguration:
    """OS_* variables and clouds.yaml point at the mock."""

    async def test_os_env(self, mock_cloud: MockCloud) -> None:
        env = mock_cloud.os_env()
        assert env == {
            "OS_AUTH_URL": mock_cloud.auth_url,
            "OS_USERNAME": mock_cloud.username,
            "OS_PASSWORD": mock_cloud.password,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_ID": mock_cloud.project_ids[0],
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_REGION_NAME": "RegionOne",
            "OS_INTERFACE": "public",
            "OS_IDENTITY_API_VERSION": "3",
        }
        app = mock_cloud.os_env(mock_cloud.project_names[1], application_credential=True)
        assert app["OS_AUTH_TYPE"] == "v3applicationcredential"
        assert (app["OS_APPLICATION_CREDENTIAL_ID"], app["OS_APPLICATION_CREDENTIAL_SECRET"]) == (
            mock_cloud.application_credential(mock_cloud.project_ids[1])
        )

    # openstacksdk's loader warns about its own deprecated InfluxDB option on every load.
    @pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
    async def test_clouds_yaml_loads_with_openstack_config(
        self, mock_cloud: MockCloud, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from openstack import config as os_config

        path = tmp_path / "clouds.yaml"
        mock_cloud.write_clouds_yaml(path, cloud="rehearsal", project_id=mock_cloud.project_ids[1])
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        region = os_config.OpenStackConfig(config_files=[str(path)]).get_one(cloud="rehearsal")
        assert region.auth["auth_url"] == mock_cloud.auth_url
        assert region.auth["project_id"] == mock_cloud.project_ids[1]
        assert region.region_name == "RegionOne"


async def test_legacy_cloud_ignores_tag_filters_and_drops_tags(
    make_mock_cloud: Make, mock_client: Connect
) -> None:
    """``legacy=True`` is the old cloud bulkstop must not trust: 2.26 asked, 2.1 served."""
    mock = await make_mock_cloud(servers=30, projects=1, seed=3, legacy=True)
    client = await mock_client(mock)
    answer = await client.get("/servers/detail?tags=nightly-stop")
    servers = answer.json["servers"]
    assert len(servers) == 30
    assert all("tags" not in s for s in servers)
