"""The mock cloud as one object: :class:`MockCloud` assembles Keystone, Nova and admin routes.

::

    async with MockCloud(MockConfig(servers=200, projects=2, seed=1)) as mock:
        env = mock.os_env()              # OS_* variables for a client
        ...                              # drive a client against mock.auth_url
        assert max(mock.accepted_stops().values()) == 1

Admin endpoints (unauthenticated; the mock binds loopback):

* ``GET /_mock/requests[?offset=N][&kind=action]`` → ``{"requests": [...], "next_offset": M}``
* ``GET /_mock/servers[?project_id=P]`` → ``{"servers": [...]}`` in the fleet file format
* ``GET /_mock/info`` → :meth:`MockCloud.connection_info`
* ``POST /_mock/reset`` → 204: journal cleared, fleet and fault counters restored
* ``POST /_mock/revoke-tokens`` → 204: every token issued so far stops working

Why one module of ~460 lines: it wires every room of the mock (Keystone, Nova, Huawei, admin
routes, faults) into one server; each room's logic lives in its own module.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from . import bodies, credentials, fleet
from .compute import Compute
from .config import FleetSource, MockConfig
from .faults import Injector
from .huawei import BatchApi, Signatures, access_keys, mark_baremetal
from .identity import Identity
from .journal import KIND_ADMIN, KIND_IDENTITY, KIND_OTHER, RequestRecord, accepted, peak
from .state import Fleet, MockServer, Project

#: Listen backlog: benchmarks open a few hundred connections at once.
BACKLOG: Final = 1024
_WILDCARDS: Final = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MockCloud:
    """An in-process Keystone + Nova on a loopback port, with its state and journal.

    Use as an async context manager (or :meth:`start` / :meth:`aclose`). The fleet exists
    from construction on; URLs exist once started.
    """

    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        self._fleet = Fleet(*self._build())
        #: The request journal, oldest first (the list object survives :meth:`reset`).
        self.requests: list[RequestRecord] = []
        overrides = {}
        for key, faults in self.config.project_faults.items():
            project = self._fleet.project(key)
            if project is None:
                raise ValueError(f"project_faults names an unknown project: {key}")
            overrides[project.id] = faults
        self._injector = Injector(
            seed=self.config.seed,
            default=self.config.faults,
            overrides=overrides,
            clock=self.config.clock,
        )
        self._runner: web.AppRunner | None = None
        self._identity: Identity | None = None
        #: The AK/SK check (AK/SK mode only, once started).
        self.signatures: Signatures | None = None

    def _build(self) -> tuple[list[Project], list[MockServer]]:
        projects, servers = fleet.build(self.config)
        mark_baremetal(servers, fraction=self.config.baremetal_fraction, seed=self.config.seed)
        return projects, servers

    @classmethod
    def from_fleet(cls, source: FleetSource, **options: Any) -> MockCloud:
        """A mock serving exactly this fleet (see :mod:`bulkstop.mockcloud.fleet`)."""
        return cls(MockConfig(fleet=source, **options))

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bind ``config.host:config.port`` (port 0 = any free port) and serve."""
        if self._runner is not None:
            raise RuntimeError("the mock cloud is already running")
        sock = _bind(self.config.host, self.config.port)
        host, port = sock.getsockname()[:2]
        host = _WILDCARDS.get(host, host)
        base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._identity = Identity(
            config=self.config, fleet=self._fleet, injector=self._injector, base_url=base_url
        )
        compute = Compute(
            config=self.config,
            fleet=self._fleet,
            identity=self._identity,
            injector=self._injector,
            journal=self.requests,
            base_url=base_url,
        )
        app = self._app(self._identity, compute)
        if self.config.aksk:
            self.signatures = compute.signatures = Signatures(
                config=self.config, fleet=self._fleet, member=self._identity.member
            )
            BatchApi(
                config=self.config,
                fleet=self._fleet,
                signatures=self.signatures,
                tokens=self._identity.check,
                injector=self._injector,
                journal=self.requests,
            ).routes(app)
        app.router.add_route("*", "/{tail:.*}", self._journaled(KIND_OTHER, _not_found))
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=self.config.shutdown_timeout,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock, backlog=BACKLOG).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def aclose(self) -> None:
        """Stop serving; in-flight requests get ``shutdown_timeout`` seconds to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _app(self, identity: Identity, compute: Compute) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        plain: list[tuple[str, str, Handler, str]] = [
            ("GET", "/", compute.versions, KIND_OTHER),
            ("GET", "/v2", compute.legacy_version, KIND_OTHER),
            ("GET", "/v2/", compute.legacy_version, KIND_OTHER),
            ("GET", "/v2.1", compute.version, KIND_OTHER),
            ("GET", "/v2.1/", compute.version, KIND_OTHER),
            ("GET", "/identity", identity.versions, KIND_IDENTITY),
            ("GET", "/identity/", identity.versions, KIND_IDENTITY),
            ("GET", "/identity/v3", identity.version, KIND_IDENTITY),
            ("GET", "/identity/v3/", identity.version, KIND_IDENTITY),
            ("POST", "/identity/v3/auth/tokens", identity.tokens, KIND_IDENTITY),
            ("GET", "/_mock/requests", self._admin_requests, KIND_ADMIN),
            ("GET", "/_mock/servers", self._admin_servers, KIND_ADMIN),
            ("GET", "/_mock/info", self._admin_info, KIND_ADMIN),
            ("POST", "/_mock/reset", self._admin_reset, KIND_ADMIN),
            ("POST", "/_mock/revoke-tokens", self._admin_revoke, KIND_ADMIN),
        ]
        for method, path, handler, kind in plain:
            app.router.add_route(method, path, self._journaled(kind, handler))
        servers = "/v2.1/{project_id}/servers"
        app.router.add_get(servers, compute.list_servers)
        app.router.add_get(servers + "/detail", compute.list_details)
        app.router.add_get(servers + "/{server_id}", compute.show_server)
        app.router.add_post(servers + "/{server_id}/action", compute.server_action)
        flavors = "/v2.1/{project_id}/flavors"
        app.router.add_get("/v2.1/{project_id}", compute.project_version)
        app.router.add_get("/v2.1/{project_id}/", compute.project_version)
        app.router.add_get(flavors, compute.list_flavors)
        app.router.add_get(flavors + "/detail", compute.list_flavor_details)
        app.router.add_get(flavors + "/{flavor_id}", compute.show_flavor)
        return app

    def _journaled(self, kind: str, handler: Handler) -> Handler:
        async def journaled(request: web.Request) -> web.StreamResponse:
            arrival, wall = self.config.clock(), time.time()
            status = None
            try:
                response = await handler(request)
                status = response.status
                return response
            finally:
                self.requests.append(
                    RequestRecord(
                        t=arrival,
                        wall=wall,
                        method=request.method,
                        path=request.path,
                        kind=kind,
                        status=status,
                        query=request.query_string,
                    )
                )

        return journaled

    # -- what tests and users read ---------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`aclose`."""
        return self._runner is not None

    def _started(self) -> Identity:
        if self._identity is None:
            raise RuntimeError("the mock cloud has not been started")
        return self._identity

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._started().base_url

    @property
    def auth_url(self) -> str:
        """Keystone v3: ``{base_url}/identity/v3``."""
        return self._started().auth_url

    def compute_url(self, project_id: str) -> str:
        """The compute endpoint of a project, as the catalog gives it."""
        return f"{self.base_url}/v2.1/{project_id}"

    @property
    def region(self) -> str:
        """The one region of the catalog."""
        return self.config.region

    @property
    def username(self) -> str:
        """A member of every project (no admin role)."""
        return self.config.username

    @property
    def password(self) -> str:
        """Password of :attr:`username`."""
        return self.config.password

    @property
    def user_domain(self) -> str:
        """Domain name of both users (and of the projects)."""
        return self.config.user_domain

    @property
    def admin_username(self) -> str:
        """A user with the admin role in every project (``all_tenants``, locked servers)."""
        return self.config.admin_username

    @property
    def admin_password(self) -> str:
        """Password of :attr:`admin_username`."""
        return self.config.admin_password

    @property
    def projects(self) -> list[Project]:
        """The projects, in order."""
        return list(self._fleet.projects)

    @property
    def project_ids(self) -> list[str]:
        """Project ids (32 lowercase hex)."""
        return [p.id for p in self._fleet.projects]

    @property
    def project_names(self) -> list[str]:
        """Project names, in the order of :attr:`project_ids`."""
        return [p.name for p in self._fleet.projects]

    @property
    def servers(self) -> dict[str, MockServer]:
        """Live servers by id (the dict object survives :meth:`reset`)."""
        return self._fleet.servers

    def server_ids(self, project_id: str | None = None) -> list[str]:
        """Server ids in listing order, of one project or of all."""
        return list(self._fleet.order(project_id))

    def application_credential(self, project_id: str | None = None) -> tuple[str, str]:
        """(id, secret) of the member's application credential for a project."""
        credential = self._started().app_credential(self._project(project_id))
        return credential.id, credential.secret

    def accepted_stops(self) -> Counter[str]:
        """How many os-stop requests each server had accepted (2xx)."""
        return accepted(self.requests, "os-stop")

    def peak_rate(self, project_id: str | None = None, *, window: float = 1.0) -> int:
        """The most requests (of a project, if given) that arrived within any ``window`` s."""
        return peak(self.requests, project_id=project_id, window=window)

    def reset(self) -> None:
        """Clear the journal, restore the initial fleet, replay faults from the start."""
        self.requests.clear()
        self._fleet.replace(*self._build())
        self._injector.reset()

    def revoke_tokens(self) -> None:
        """Make every token issued so far answer 401 (clients must re-authenticate)."""
        self._started().revoke_all()

    def _project(self, project_id: str | None) -> Project:
        if project_id is None:
            return self._fleet.projects[0]
        project = self._fleet.project(project_id)
        if project is None:
            raise KeyError(f"no project {project_id}")
        return project

    # -- client configuration ----------------------------------------------------------------

    def os_env(
        self,
        project_id: str | None = None,
        *,
        admin: bool = False,
        application_credential: bool = False,
    ) -> dict[str, str]:
        """``OS_*`` variables for the member (or the admin) on a project (default: the first)."""
        return credentials.os_env(
            self.connection_info(),
            project_id,
            admin=admin,
            application_credential=application_credential,
        )

    def clouds_entry(
        self,
        project_id: str | None = None,
        *,
        admin: bool = False,
        application_credential: bool = False,
    ) -> dict[str, Any]:
        """One ``clouds.yaml`` cloud for the member (or the admin) on a project."""
        return credentials.clouds_entry(
            self.connection_info(),
            project_id,
            admin=admin,
            application_credential=application_credential,
        )

    def aksk_env(self, project_id: str | None = None) -> dict[str, str]:
        """``OS_ACCESS_KEY``-style variables for the member's AK/SK (AK/SK mode)."""
        access_key, secret_key = access_keys(self.config.seed)
        return {
            "OS_ACCESS_KEY": access_key,
            "OS_SECRET_KEY": secret_key,
            "OS_PROJECT_ID": self._project(project_id).id,
            "OS_REGION_NAME": self.region,
        }

    @property
    def batch_url_template(self) -> str:
        """The batch API's endpoint template (``{service}``, ``{project_id}``) on this mock."""
        return self.base_url + "/{service}/v1/{project_id}"

    def write_clouds_yaml(
        self,
        path: str | os.PathLike[str],
        cloud: str = credentials.DEFAULT_CLOUD,
        project_id: str | None = None,
        *,
        admin: bool = False,
    ) -> None:
        """Write a ``clouds.yaml`` (replacing the file) with one cloud for the member (admin)."""
        credentials.write_clouds_yaml(path, {cloud: self.clouds_entry(project_id, admin=admin)})

    def connection_info(self) -> dict[str, Any]:
        """What a client needs to connect (the standalone server prints it as JSON)."""
        return {
            "base_url": self.base_url,
            "auth_url": self.auth_url,
            "compute_url_template": self.base_url + "/v2.1/{project_id}",
            "region": self.region,
            "username": self.username,
            "password": self.password,
            "user_domain": self.user_domain,
            "admin_username": self.admin_username,
            "admin_password": self.admin_password,
            "project_ids": self.project_ids,
            "project_names": self.project_names,
            "application_credentials": {
                pid: dict(zip(("id", "secret"), self.application_credential(pid), strict=True))
                for pid in self.project_ids
            },
            "servers": len(self.servers),
            "huawei": self.config.huawei,
        } | (self._aksk_info() if self.config.aksk else {})

    def _aksk_info(self) -> dict[str, Any]:
        access_key, secret_key = access_keys(self.config.seed)
        return {
            "access_key": access_key,
            "secret_key": secret_key,
            "batch_url_template": self.batch_url_template,
        }

    # -- admin routes --------------------------------------------------------------------------

    async def _admin_requests(self, request: web.Request) -> web.Response:
        try:
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            offset = -1
        if offset < 0:
            return _json(400, {"error": "offset must be a non-negative integer"})
        kind = request.query.get("kind")
        end = len(self.requests)
        records = [r.as_dict() for r in self.requests[offset:end] if kind is None or r.kind == kind]
        return _json(200, {"requests": records, "next_offset": max(offset, end)})

    async def _admin_servers(self, request: web.Request) -> web.Response:
        scope = request.query.get("project_id")
        servers = [self.servers[sid].to_fleet() for sid in self._fleet.order(scope)]
        return _json(200, {"servers": servers})

    async def _admin_info(self, request: web.Request) -> web.Response:
        return _json(200, self.connection_info())

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)

    async def _admin_revoke(self, request: web.Request) -> web.Response:
        self.revoke_tokens()
        return web.Response(status=204)


def _json(status: int, document: Any) -> web.Response:
    return web.Response(status=status, body=bodies.dumps(document), content_type="application/json")


async def _not_found(request: web.Request) -> web.Response:
    return _json(404, bodies.nova(404, "The resource could not be found."))


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on (host, port); port 0 picks a free one."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
