"""Shared fixtures of the integration tests: the mock cloud on a real loopback port.

* ``mock_cloud``: a running :class:`MockCloud` (200 servers, 2 projects, seed 1, 0.1 s
  transitions), fresh for each test.
* ``make_mock_cloud``: ``await make_mock_cloud(MockConfig(...))`` (or keyword options) for a
  test that needs another fleet or faults; every mock it made is closed after the test.
* ``mock_client``: ``await mock_client(mock, project_id=None, admin=False, version="2.26")``,
  a bare HTTP client holding a token of that project, for tests of the wire itself.
* ``use_env``: ``use_env({"OS_...": ...})`` sets variables in an isolated configuration
  (``isolated_openstack_env``), undone after the test.
* ``runner``: ``await runner(mock, RunRequest(...), ...)``, a run through the Python API
  configured only by the mock's ``OS_*`` (see :class:`api_runner.Runner`);
  ``report_path`` is where a test's run may write its report.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from api_runner import Runner
from multidict import CIMultiDict

from bulkstop.mockcloud import MockCloud, MockConfig
from bulkstop.testing import mock_cloud as mock_cloud_of

#: The ``mock_cloud`` fixture's fleet.
FIXTURE_CONFIG: Final = MockConfig(servers=200, projects=2, seed=1, transition_delay=0.1)


@pytest.fixture
async def mock_cloud() -> AsyncIterator[MockCloud]:
    """A running mock cloud: 200 servers over 2 projects (seed 1), 0.1 s transitions."""
    async with mock_cloud_of(FIXTURE_CONFIG) as mock:
        yield mock


@pytest.fixture
async def make_mock_cloud() -> AsyncIterator[Callable[..., Awaitable[MockCloud]]]:
    """A factory of running mock clouds: ``await make_mock_cloud(config)`` or ``(**options)``."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(config: MockConfig | None = None, **options: Any) -> MockCloud:
            return await stack.enter_async_context(mock_cloud_of(config, **options))

        yield make


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, isolated_openstack_env: Path) -> Runner:
    """Runs through the Python API; the machine's own ``OS_*`` and clouds.yaml are kept out."""
    return Runner(monkeypatch)


@pytest.fixture
def report_path(tmp_path: Path) -> Path:
    """Where a test's run writes its report."""
    return tmp_path / "report.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One HTTP answer: status, headers (case-insensitive), and the body."""

    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.text)


class MockClient:
    """Raw HTTP against one project of a mock, with a token; no retries, no cleverness."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        mock: MockCloud,
        project_id: str,
        token: str,
        version: str | None,
    ) -> None:
        self.session = session
        self.mock = mock
        self.project_id = project_id
        self.token = token
        self.version = version

    @property
    def compute(self) -> str:
        """This project's compute endpoint."""
        return self.mock.compute_url(self.project_id)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        url: str | None = None,
    ) -> Answer:
        """``method`` on ``compute + path`` (or ``url``), with token and microversion."""
        sent = {"X-Auth-Token": self.token}
        if self.version is not None:
            sent["OpenStack-API-Version"] = f"compute {self.version}"
        sent.update(headers or {})
        async with self.session.request(
            method, url or self.compute + path, json=body, data=data, headers=sent
        ) as response:
            return Answer(
                status=response.status,
                headers=CIMultiDict(response.headers),
                text=await response.text(),
            )

    async def get(self, path: str, **options: Any) -> Answer:
        """GET ``compute + path``."""
        return await self.request("GET", path, **options)

    async def action(self, server_id: str, action: str = "os-stop", **options: Any) -> Answer:
        """POST ``{action: {}}`` to the server's action URL."""
        return await self.request(
            "POST", f"/servers/{server_id}/action", body={action: {}}, **options
        )


async def issue_token(
    session: aiohttp.ClientSession, mock: MockCloud, project_id: str, *, admin: bool = False
) -> str:
    """A token of the member (or the admin) scoped to ``project_id``."""
    user = {
        "name": mock.admin_username if admin else mock.username,
        "domain": {"name": mock.user_domain},
        "password": mock.admin_password if admin else mock.password,
    }
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"id": project_id}},
        }
    }
    async with session.post(mock.auth_url + "/auth/tokens", json=body) as response:
        assert response.status == 201, await response.text()
        return response.headers["X-Subject-Token"]


@pytest.fixture
async def mock_client() -> AsyncIterator[Callable[..., Awaitable[MockClient]]]:
    """``await mock_client(mock, project_id=None, admin=False, version="2.26")``."""
    session = aiohttp.ClientSession()

    async def connect(
        mock: MockCloud,
        project_id: str | None = None,
        *,
        admin: bool = False,
        version: str | None = "2.26",
    ) -> MockClient:
        project = project_id or mock.project_ids[0]
        token = await issue_token(session, mock, project, admin=admin)
        return MockClient(session, mock, project, token, version)

    yield connect
    await session.close()


#: ``use_env(variables)``: see the fixture.
UseEnv = Callable[[dict[str, str]], None]


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch, isolated_openstack_env: Path) -> UseEnv:
    """Set environment variables on top of an isolated OpenStack configuration."""

    def apply(env: dict[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return apply
