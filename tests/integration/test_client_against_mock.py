"""The real client (openstack.config + keystoneauth1 + aiohttp) against the mock cloud.

Every test isolates the configuration (``isolated_openstack_env``): no ``OS_*`` variable of the
machine leaks in, and ``OS_CLIENT_CONFIG_FILE``/``OS_CLIENT_SECURE_FILE`` point at a file in a
temporary directory, so a developer's ``~/.config/openstack/clouds.yaml`` is never read.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.http import HttpCompute, open_compute
from bulkstop.errors import AuthError, ConfigError, EndpointError
from bulkstop.mockcloud import Faults, MockCloud, MockConfig, Trigger
from bulkstop.models import Action, ListQuery, Server, ServerPage

# openstacksdk 4.x warns about InfluxDB on every CloudRegion it builds (a PendingDeprecationWarning,
# which pyproject's DeprecationWarning filters do not cover).

TIMEOUT = 5.0
TAG = "nightly-stop"


class MockClock:
    """The mock cloud's clock, moved by hand (token ttl, transitions)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock()


@pytest.fixture
async def mock(mock_clock: MockClock) -> AsyncIterator[MockCloud]:
    async with MockCloud(
        MockConfig(servers=20, projects=2, seed=1, clock=mock_clock, transition_delay=0.0)
    ) as cloud:
        yield cloud


UseEnv = Callable[[dict[str, str]], None]


async def connect(settings: AuthSettings) -> tuple[HttpCompute, list[str]]:
    return await open_compute(settings, request_timeout=TIMEOUT, pool_size=4)


async def list_all(compute: HttpCompute, project_id: str, query: ListQuery) -> list[Server]:
    servers: list[Server] = []
    marker = None
    while True:
        reply = await compute.list_page(project_id, query, marker)
        assert reply.error is None, reply.error
        assert isinstance(reply.body, ServerPage)
        servers.extend(reply.body.servers)
        marker = reply.body.next_marker
        if marker is None:
            return servers


class TestConfiguration:
    """The OpenStack conventions: OS_* variables, clouds.yaml, and clear failures."""

    async def test_os_environment(self, mock: MockCloud, use_env: UseEnv) -> None:
        use_env(mock.os_env())
        compute, scope = await connect(AuthSettings())
        try:
            assert scope == [mock.project_ids[0]]
            servers = await list_all(compute, scope[0], ListQuery())
            assert {s.id for s in servers} == set(mock.server_ids(scope[0]))
        finally:
            await compute.aclose()

    async def test_clouds_yaml(self, mock: MockCloud, isolated_openstack_env: Path) -> None:
        mock.write_clouds_yaml(isolated_openstack_env, cloud="mock", project_id=mock.project_ids[1])
        compute, scope = await connect(AuthSettings(os_cloud="mock"))
        try:
            assert scope == [mock.project_ids[1]]
            reply = await compute.list_page(scope[0], ListQuery(limit=1), None)
            assert reply.status == 200
        finally:
            await compute.aclose()

    async def test_os_cloud_variable(
        self, mock: MockCloud, isolated_openstack_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mock.write_clouds_yaml(isolated_openstack_env, cloud="other")
        with isolated_openstack_env.open("a") as extra:  # a second cloud, so the choice matters
            extra.write('  "broken":\n    auth:\n      auth_url: "http://127.0.0.1:9/v3"\n')
        monkeypatch.setenv("OS_CLOUD", "other")
        compute, scope = await connect(AuthSettings())
        await compute.aclose()
        assert scope == [mock.project_ids[0]]

    async def test_bad_password(self, mock: MockCloud, use_env: UseEnv) -> None:
        wrong = "not-the-password-123"
        use_env(mock.os_env() | {"OS_PASSWORD": wrong})
        with pytest.raises(AuthError, match="Keystone refused the credentials") as caught:
            await connect(AuthSettings())
        assert wrong not in str(caught.value)

    async def test_unreachable_keystone(self, use_env: UseEnv) -> None:
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}/identity/v3"
        use_env(
            {
                "OS_AUTH_URL": url,
                "OS_USERNAME": "alice",
                "OS_PASSWORD": "secret-password",
                "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_ID": "p1",
            }
        )
        with pytest.raises(EndpointError, match=url) as caught:
            await connect(AuthSettings())
        assert "secret-password" not in str(caught.value)

    async def test_nothing_configured(self, isolated_openstack_env: Path) -> None:
        with pytest.raises(ConfigError, match="OS_AUTH_URL"):
            await connect(AuthSettings())

    async def test_application_credential_in_its_own_project(
        self, mock: MockCloud, use_env: UseEnv
    ) -> None:
        use_env(mock.os_env(mock.project_ids[1], application_credential=True))
        compute, scope = await connect(AuthSettings())
        await compute.aclose()
        assert scope == [mock.project_ids[1]]

    async def test_application_credential_cannot_change_project(
        self, mock: MockCloud, use_env: UseEnv
    ) -> None:
        use_env(mock.os_env(mock.project_ids[0], application_credential=True))
        with pytest.raises(ConfigError, match="application credentials"):
            await connect(AuthSettings(projects=(mock.project_ids[1],)))

    async def test_endpoint_override_with_placeholder(
        self, mock: MockCloud, use_env: UseEnv
    ) -> None:
        use_env(mock.os_env())
        settings = AuthSettings(endpoint=mock.base_url + "/v2.1/{project_id}/")
        compute, scope = await connect(settings)
        try:
            reply = await compute.get_server(scope[0], mock.server_ids(scope[0])[0])
            assert isinstance(reply.body, Server)
        finally:
            await compute.aclose()


@pytest.fixture
async def compute(mock: MockCloud, use_env: UseEnv) -> AsyncIterator[HttpCompute]:
    use_env(mock.os_env())
    client, _ = await connect(AuthSettings(projects=tuple(mock.project_ids)))
    yield client
    await client.aclose()


class TestCompute:
    """Listing, reading and stopping through the seam."""

    async def test_two_projects_are_scoped_separately(
        self, mock: MockCloud, compute: HttpCompute
    ) -> None:
        for project_id in mock.project_ids:
            servers = await list_all(compute, project_id, ListQuery())
            assert {s.id for s in servers} == set(mock.server_ids(project_id))
            assert {s.project_id for s in servers} == {project_id}

    async def test_tag_filters_and_pagination(self, mock: MockCloud, compute: HttpCompute) -> None:
        project_id = mock.project_ids[0]
        servers = await list_all(compute, project_id, ListQuery(tags=(TAG,), limit=2))
        expected = {sid for sid in mock.server_ids(project_id) if TAG in mock.servers[sid].tags}
        assert expected, "the seeded fleet should tag some servers"
        assert {s.id for s in servers} == expected
        assert all(s.tags is not None and TAG in s.tags for s in servers)
        listings = [r for r in mock.requests if r.kind == "list"]
        assert len(listings) >= len(expected) // 2
        assert all(f"tags={TAG}" in r.query for r in listings)

    async def test_not_tags_any(self, mock: MockCloud, compute: HttpCompute) -> None:
        project_id = mock.project_ids[0]
        servers = await list_all(compute, project_id, ListQuery(not_tags_any=(TAG,)))
        assert servers
        assert all(s.tags is not None and TAG not in s.tags for s in servers)

    async def test_get_stop_and_stop_again(self, mock: MockCloud, compute: HttpCompute) -> None:
        project_id = mock.project_ids[0]
        active = [s for s in await list_all(compute, project_id, ListQuery()) if not s.is_stopped]
        server_id = active[0].id
        got = await compute.get_server(project_id, server_id)
        assert isinstance(got.body, Server)
        assert got.body.id == server_id
        first = await compute.action(project_id, server_id, Action.STOP)
        assert (first.status, first.error) == (202, None)
        assert first.request_id
        again = await compute.action(project_id, server_id, Action.STOP)
        assert again.status == 409
        assert again.error is not None
        assert again.error.code == "conflictingRequest"
        assert mock.accepted_stops()[server_id] == 1

    async def test_unknown_server(self, mock: MockCloud, compute: HttpCompute) -> None:
        reply = await compute.get_server(
            mock.project_ids[0], "00000000-0000-4000-8000-000000000000"
        )
        assert reply.status == 404
        assert reply.error is not None
        assert reply.error.code == "itemNotFound"

    async def test_renew_after_revocation(self, mock: MockCloud, compute: HttpCompute) -> None:
        project_id = mock.project_ids[0]
        server_id = mock.server_ids(project_id)[0]
        assert (await compute.get_server(project_id, server_id)).status == 200
        mock.revoke_tokens()
        refused = await compute.get_server(project_id, server_id)
        assert refused.status == 401
        await compute.renew_auth(project_id)
        await compute.renew_auth(project_id)  # a second 401 handler finds the token renewed
        assert (await compute.get_server(project_id, server_id)).status == 200
        token_requests = [r for r in mock.requests if r.path.endswith("/auth/tokens")]
        assert len(token_requests) == len(mock.project_ids) + 1


async def test_renew_after_token_ttl(
    mock_clock: MockClock, use_env: UseEnv, isolated_openstack_env: Path
) -> None:
    """Tokens that stop working before ``expires_at`` (the mock's token_ttl fault)."""
    config = MockConfig(servers=4, projects=1, clock=mock_clock, faults=Faults(token_ttl=60.0))
    async with MockCloud(config) as mock:
        use_env(mock.os_env())
        compute, [project_id] = await connect(AuthSettings())
        try:
            query = ListQuery()
            assert (await compute.list_page(project_id, query, None)).status == 200
            mock_clock.now += 61
            assert (await compute.list_page(project_id, query, None)).status == 401
            await compute.renew_auth(project_id)
            assert (await compute.list_page(project_id, query, None)).status == 200
        finally:
            await compute.aclose()


THROTTLED = Faults(rate_limit=1.0, burst=1)


@pytest.mark.parametrize(
    ("faults", "status", "code", "retry_after"),
    [
        (THROTTLED, 429, "overLimit", 1.0),
        # HTTP dates have whole seconds: "in 1 s" is anything up to 1 s from now.
        (replace(THROTTLED, retry_after="date"), 429, "overLimit", pytest.approx(0.5, abs=0.5)),
        # No header: the overLimit body's retryAfter is used.
        (replace(THROTTLED, throttle="413", retry_after="none"), 413, "overLimit", 1.0),
        (replace(THROTTLED, throttle="apig", flavour="huawei"), 429, "APIG.0308", 1.0),
        (replace(THROTTLED, throttle="apig", retry_after="none"), 429, "APIG.0308", None),
    ],
)
async def test_throttle_flavours(
    mock_clock: MockClock,
    use_env: UseEnv,
    faults: Faults,
    status: int,
    code: str,
    retry_after: object,
) -> None:
    config = MockConfig(servers=4, projects=1, clock=mock_clock, faults=faults)
    async with MockCloud(config) as mock:
        use_env(mock.os_env())
        compute, [project_id] = await connect(AuthSettings())
        try:
            server_id = mock.server_ids(project_id)[0]
            assert (await compute.get_server(project_id, server_id)).ok
            throttled = await compute.get_server(project_id, server_id)
        finally:
            await compute.aclose()
    assert throttled.status == status
    assert throttled.error is not None
    assert throttled.error.code == code
    assert throttled.retry_after == retry_after


async def test_huawei_mode_answers_204(mock_clock: MockClock, use_env: UseEnv) -> None:
    async with MockCloud(MockConfig(servers=4, projects=1, huawei=True, clock=mock_clock)) as mock:
        use_env(mock.os_env())
        compute, [project_id] = await connect(AuthSettings())
        try:
            active = [
                sid for sid in mock.server_ids(project_id) if mock.servers[sid].vm_state == "active"
            ]
            reply = await compute.action(project_id, active[0], Action.STOP)
        finally:
            await compute.aclose()
    assert (reply.status, reply.error) == (204, None)
    assert reply.request_id


@pytest.mark.parametrize(
    ("faults", "status", "code"),
    [
        (Faults(html=Trigger(rate=1.0)), 502, "HTTP 502"),
        (Faults(reset=Trigger(rate=1.0)), None, "connection_reset"),
        (Faults(server_error=Trigger(rate=1.0), error_status=503), 503, "serviceUnavailable"),
    ],
)
async def test_broken_answers(
    mock_clock: MockClock, use_env: UseEnv, faults: Faults, status: int | None, code: str
) -> None:
    config = MockConfig(servers=4, projects=1, clock=mock_clock, faults=faults)
    async with MockCloud(config) as mock:
        use_env(mock.os_env())
        compute, [project_id] = await connect(AuthSettings())
        try:
            reply = await compute.action(project_id, mock.server_ids(project_id)[0], Action.STOP)
        finally:
            await compute.aclose()
    assert reply.status == status
    assert reply.error is not None
    assert reply.error.code == code
    assert reply.error.message
