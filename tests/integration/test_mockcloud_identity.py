"""The mock's Keystone over loopback: discovery, password and app-credential auth, tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bulkstop.mockcloud import FakeClock, Faults, MockCloud, MockConfig

Make = Callable[..., Awaitable[MockCloud]]


async def post_token(mock: MockCloud, auth: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(mock.auth_url + "/auth/tokens", json={"auth": auth}) as response,
    ):
        return response.status, dict(response.headers), await response.json()


def password(mock: MockCloud, scope: dict[str, Any] | None = None, **user: Any) -> dict[str, Any]:
    user.setdefault("password", mock.password)
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    if scope is not None:
        auth["scope"] = scope
    return auth


async def compute_status(mock: MockCloud, token: str, project_id: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            mock.compute_url(project_id) + "/servers", headers={"X-Auth-Token": token}
        ) as response,
    ):
        return response.status


class TestDiscovery:
    """Version documents as keystoneauth expects them."""

    async def test_version_list_and_v3(self, mock_cloud: MockCloud) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(mock_cloud.base_url + "/identity/") as response:
                assert response.status == 300
                values = (await response.json())["versions"]["values"]
            async with session.get(mock_cloud.auth_url) as response:
                assert response.status == 200
                version = (await response.json())["version"]
        assert values[0]["id"] == version["id"] == "v3.14"
        assert version["status"] == "stable"
        assert version["links"][0]["href"] == mock_cloud.auth_url + "/"


class TestPasswordAuth:
    """Password auth: users by name or id, projects by id or name, errors like Keystone's."""

    async def test_token_and_catalog(self, mock_cloud: MockCloud) -> None:
        pid = mock_cloud.project_ids[1]
        status, headers, body = await post_token(
            mock_cloud,
            password(
                mock_cloud,
                {"project": {"id": pid}},
                name=mock_cloud.username,
                domain={"name": mock_cloud.user_domain},
            ),
        )
        assert status == 201
        assert headers["X-Subject-Token"]
        token = body["token"]
        assert token["project"]["id"] == pid
        assert token["expires_at"].endswith("Z")
        assert {r["name"] for r in token["roles"]} == {"member", "reader"}
        compute = next(s for s in token["catalog"] if s["type"] == "compute")
        assert {e["interface"] for e in compute["endpoints"]} == {"public", "internal", "admin"}
        assert {e["url"] for e in compute["endpoints"]} == {mock_cloud.compute_url(pid)}
        assert {e["region"] for e in compute["endpoints"]} == {mock_cloud.region}

    async def test_user_by_id_and_project_by_name(self, mock_cloud: MockCloud) -> None:
        _, _, first = await post_token(
            mock_cloud,
            password(mock_cloud, name=mock_cloud.username, domain={"id": "default"}),
        )
        user_id = first["token"]["user"]["id"]
        scope = {"project": {"name": mock_cloud.project_names[1], "domain": {"id": "default"}}}
        status, _, body = await post_token(mock_cloud, password(mock_cloud, scope, id=user_id))
        assert status == 201
        assert body["token"]["project"]["id"] == mock_cloud.project_ids[1]
        # No scope: the default project (the first).
        assert first["token"]["project"]["id"] == mock_cloud.project_ids[0]

    async def test_admin_has_the_admin_role(self, mock_cloud: MockCloud) -> None:
        status, _, body = await post_token(
            mock_cloud,
            password(
                mock_cloud,
                name=mock_cloud.admin_username,
                domain={"name": mock_cloud.user_domain},
                password=mock_cloud.admin_password,
            ),
        )
        assert status == 201
        assert "admin" in {r["name"] for r in body["token"]["roles"]}

    @pytest.mark.parametrize(
        "change",
        [
            {"password": "wrong"},
            {"name": "nobody"},
            {"domain": {"name": "OtherDomain"}},
            {"scope": {"project": {"id": "0" * 32}}},
        ],
    )
    async def test_wrong_credentials_are_401(
        self, mock_cloud: MockCloud, change: dict[str, Any]
    ) -> None:
        user: dict[str, Any] = {
            "name": mock_cloud.username,
            "domain": {"name": mock_cloud.user_domain},
        }
        scope = change.pop("scope", None)
        user.update(change)
        status, headers, body = await post_token(mock_cloud, password(mock_cloud, scope, **user))
        assert status == 401
        assert body["error"]["code"] == 401
        assert body["error"]["title"] == "Unauthorized"
        assert headers["WWW-Authenticate"].startswith("Keystone uri=")

    async def test_malformed_body_is_400(self, mock_cloud: MockCloud) -> None:
        status, _, body = await post_token(mock_cloud, {"identity": {}})
        assert status == 400
        assert body["error"]["title"] == "Bad Request"


class TestApplicationCredentials:
    """Application credentials carry their own project and refuse another scope."""

    async def test_by_id_scopes_to_its_project(self, mock_cloud: MockCloud) -> None:
        pid = mock_cloud.project_ids[1]
        cred_id, secret = mock_cloud.application_credential(pid)
        auth = {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": cred_id, "secret": secret},
            }
        }
        status, headers, body = await post_token(mock_cloud, auth)
        assert status == 201
        assert body["token"]["project"]["id"] == pid
        assert await compute_status(mock_cloud, headers["X-Subject-Token"], pid) == 200

    async def test_wrong_secret_or_extra_scope_is_401(self, mock_cloud: MockCloud) -> None:
        cred_id, secret = mock_cloud.application_credential()
        identity = {"methods": ["application_credential"]}
        wrong = {**identity, "application_credential": {"id": cred_id, "secret": "x"}}
        status, _, _ = await post_token(mock_cloud, {"identity": wrong})
        assert status == 401
        right = {**identity, "application_credential": {"id": cred_id, "secret": secret}}
        scope = {"project": {"id": mock_cloud.project_ids[1]}}
        status, _, body = await post_token(mock_cloud, {"identity": right, "scope": scope})
        assert status == 401
        assert "cannot request a scope" in body["error"]["message"]


class TestTokenLifetime:
    """Tokens expire (lifetime, token_ttl fault, revocation) and then answer 401."""

    async def token(self, mock: MockCloud) -> str:
        scope = {"project": {"id": mock.project_ids[0]}}
        auth = password(mock, scope, name=mock.username, domain={"name": mock.user_domain})
        status, headers, _ = await post_token(mock, auth)
        assert status == 201
        return headers["X-Subject-Token"]

    async def test_lifetime_is_enforced(self, make_mock_cloud: Make) -> None:
        clock = FakeClock()
        mock = await make_mock_cloud(servers=4, projects=1, token_lifetime=60.0, clock=clock)
        token = await self.token(mock)
        pid = mock.project_ids[0]
        clock.advance(59.9)
        assert await compute_status(mock, token, pid) == 200
        clock.advance(0.1)
        assert await compute_status(mock, token, pid) == 401

    async def test_token_ttl_fault_kills_tokens_early(self, make_mock_cloud: Make) -> None:
        clock = FakeClock()
        mock = await make_mock_cloud(
            servers=4, projects=1, clock=clock, faults=Faults(token_ttl=5.0)
        )
        token = await self.token(mock)
        clock.advance(5.0)
        assert await compute_status(mock, token, mock.project_ids[0]) == 401
        assert mock.requests[-1].fault == "token_ttl"
        fresh = await self.token(mock)
        assert await compute_status(mock, fresh, mock.project_ids[0]) == 200

    async def test_revocation(self, make_mock_cloud: Make) -> None:
        mock = await make_mock_cloud(MockConfig(servers=4, projects=1))
        token = await self.token(mock)
        mock.revoke_tokens()
        assert await compute_status(mock, token, mock.project_ids[0]) == 401
