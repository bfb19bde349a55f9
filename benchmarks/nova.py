"""A second, minimal Nova-like server, written for the benchmarks and nothing else.

``python -m benchmarks.nova --fleet FLEET.json --latency 0.02`` serves, on 127.0.0.1:

* Keystone v3: the version documents (keystoneauth's discovery) and ``POST /auth/tokens``
  (password auth, scoped to a project id) answering 201 with ``X-Subject-Token`` and a catalog;
* ``GET /v2.1/{project}/servers/detail`` with ``limit``/``marker`` pagination (``max_limit``
  1,000, a ``rel: next`` link whenever a page is full, as Nova does);
* ``POST /v2.1/{project}/servers/{id}/action`` ``os-stop``: 202 for an active server, 409 for a
  stopped one;

with a fixed added latency on every compute call, and prints one JSON line with what a client
needs (the shape :class:`benchmarks.procs.MockProcess` reads from the mock cloud).

Why a second server: bulkstop's optimisations must not be tuned to its own mock cloud. This one
shares no code with ``bulkstop.mockcloud``: no fault injection, no journal objects, no state
machine, one dict lookup per request. It speaks the mock's two admin endpoints the harness uses
(``POST /_mock/reset``, ``GET /_mock/requests``), so the same harness measures both servers; its
request records are plain tuples until a reader asks for them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import itertools
import json
import secrets
import signal
import socket
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

#: Nova's default ``max_limit``: a ``limit`` above it is clamped, not refused.
MAX_LIMIT: Final = 1000
#: Who may authenticate (password auth, any project of the fleet).
USERNAME: Final = "bench"
PASSWORD: Final = "bench-secret"
DOMAIN: Final = "Default"
REGION: Final = "RegionOne"
#: Lifetime of the tokens it issues.
TOKEN_LIFETIME: Final = timedelta(hours=1)
#: Record kinds, as the mock's journal names them.
KIND_IDENTITY: Final = "identity"
KIND_LIST: Final = "list"
KIND_ACTION: Final = "action"
_JSON: Final = "application/json"

#: (monotonic, unix time, method, path, kind, status, project id, server id, action, query)
Record = tuple[float, float, str, str, str, int, str | None, str | None, str | None, str]


class Nova:
    """The server's state: the fleet (server id -> project id, active or not), tokens, records."""

    def __init__(self, fleet: dict[str, Any], *, latency: float) -> None:
        self.latency = latency
        self.project_ids: list[str] = [p["id"] for p in fleet["projects"]]
        #: Per project, its servers' detail records in listing order (id order, like Nova's).
        self.listing: dict[str, list[dict[str, Any]]] = {pid: [] for pid in self.project_ids}
        #: Server id -> its detail record (the same dict the listing holds).
        self.servers: dict[str, dict[str, Any]] = {}
        for server in fleet["servers"]:
            record = _detail(server["id"], server["project"], server["name"])
            self.listing[server["project"]].append(record)
            self.servers[server["id"]] = record
        for records in self.listing.values():
            records.sort(key=lambda r: r["id"])
        #: Token -> the project it is scoped to.
        self.tokens: dict[str, str] = {}
        self.records: list[Record] = []
        self._request_ids = itertools.count(1)
        self.base_url = ""

    def reset(self) -> None:
        """Every server active again; no records."""
        for record in self.servers.values():
            _set_active(record, active=True)
        self.records.clear()

    def record(
        self,
        request: web.Request,
        arrival: tuple[float, float],
        kind: str,
        status: int,
        project_id: str | None = None,
        server_id: str | None = None,
        action: str | None = None,
    ) -> None:
        """Note one request (kept as a tuple: this is on the hot path)."""
        self.records.append(
            (
                *arrival,
                request.method,
                request.path,
                kind,
                status,
                project_id,
                server_id,
                action,
                request.query_string,
            )
        )

    def request_id(self) -> dict[str, str]:
        """The header Nova answers every request with."""
        return {"X-Openstack-Request-Id": f"req-{next(self._request_ids):012d}"}

    # -- Keystone ---------------------------------------------------------------------------

    async def identity_versions(self, request: web.Request) -> web.Response:
        """``GET /identity``: the version list (300, like Keystone)."""
        document = {"versions": {"values": [self._version()]}}
        return web.json_response(document, status=300)

    async def identity_version(self, request: web.Request) -> web.Response:
        """``GET /identity/v3``: the v3 version document."""
        return web.json_response({"version": self._version()})

    def _version(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base_url}/identity/v3/"}],
            "media-types": [{"base": _JSON, "type": "application/vnd.openstack.identity-v3+json"}],
        }

    async def issue_token(self, request: web.Request) -> web.Response:
        """``POST /identity/v3/auth/tokens``: password auth scoped to a project id."""
        arrival = (time.monotonic(), time.time())
        try:
            auth = (await request.json())["auth"]
            user = auth["identity"]["password"]["user"]
            project_id = auth["scope"]["project"]["id"]
            valid = user["name"] == USERNAME and user["password"] == PASSWORD
        except (ValueError, LookupError, TypeError):
            self.record(request, arrival, KIND_IDENTITY, 400)
            return _error(400, "badRequest", "malformed auth request")
        if not valid or project_id not in self.listing:
            self.record(request, arrival, KIND_IDENTITY, 401)
            return _error(401, "unauthorized", "The request you have made requires authentication.")
        token = secrets.token_hex(16)
        self.tokens[token] = project_id
        self.record(request, arrival, KIND_IDENTITY, 201, project_id)
        now = datetime.now(UTC)
        stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
        compute = f"{self.base_url}/v2.1/{project_id}"
        body = {
            "token": {
                "methods": ["password"],
                "user": {"id": "u-bench", "name": USERNAME, "domain": {"id": "default"}},
                "project": {"id": project_id, "name": project_id, "domain": {"id": "default"}},
                "roles": [{"id": "r-member", "name": "member"}],
                "issued_at": now.strftime(stamp),
                "expires_at": (now + TOKEN_LIFETIME).strftime(stamp),
                "catalog": [
                    {
                        "type": "compute",
                        "name": "nova",
                        "id": "s-compute",
                        "endpoints": [
                            {"id": f"e-{i}", "interface": i, "region": REGION, "url": compute}
                            | {"region_id": REGION}
                            for i in ("public", "internal", "admin")
                        ],
                    }
                ],
            }
        }
        return web.json_response(body, status=201, headers={"X-Subject-Token": token})

    # -- Nova -------------------------------------------------------------------------------

    def _refused(self, request: web.Request, project_id: str) -> web.Response | None:
        """A 401 unless the token is valid for the project."""
        if self.tokens.get(request.headers.get("X-Auth-Token", "")) == project_id:
            return None
        return _error(401, "unauthorized", "The request you have made requires authentication.")

    async def list_details(self, request: web.Request) -> web.Response:
        """``GET /v2.1/{project}/servers/detail?limit=&marker=``."""
        arrival = (time.monotonic(), time.time())
        project_id = request.match_info["project_id"]
        refusal = self._refused(request, project_id)
        if refusal is not None:
            self.record(request, arrival, KIND_LIST, 401, project_id)
            return refusal
        records = self.listing.get(project_id, [])
        try:
            limit = min(int(request.query.get("limit", MAX_LIMIT)), MAX_LIMIT)
        except ValueError:
            limit = -1
        marker = request.query.get("marker")
        start = 0
        if marker is not None:
            start = next((i + 1 for i, r in enumerate(records) if r["id"] == marker), -1)
        if limit < 0 or start < 0:
            self.record(request, arrival, KIND_LIST, 400, project_id)
            return _error(400, "badRequest", "bad limit or marker")
        page = records[start : start + limit]
        document: dict[str, Any] = {"servers": page}
        if len(page) == limit and page:
            href = f"{self.base_url}{request.path}?limit={limit}&marker={page[-1]['id']}"
            document["servers_links"] = [{"rel": "next", "href": href}]
        body = json.dumps(document).encode()
        await asyncio.sleep(self.latency)
        self.record(request, arrival, KIND_LIST, 200, project_id)
        return web.Response(body=body, content_type=_JSON, headers=self.request_id())

    async def action(self, request: web.Request) -> web.Response:
        """``POST /v2.1/{project}/servers/{id}/action``: ``os-stop`` only."""
        arrival = (time.monotonic(), time.time())
        project_id, server_id = request.match_info["project_id"], request.match_info["server_id"]
        refusal = self._refused(request, project_id)
        if refusal is not None:
            self.record(request, arrival, KIND_ACTION, 401, project_id, server_id)
            return refusal
        try:
            (action,) = (await request.json()).keys()
        except (ValueError, TypeError, AttributeError):
            action = ""
        server = self.servers.get(server_id)
        if action != "os-stop":
            status, response = 400, _error(400, "badRequest", "only os-stop is served here")
        elif server is None or server["tenant_id"] != project_id:
            status, response = 404, _error(404, "itemNotFound", f"{server_id} not found")
        elif server["OS-EXT-STS:vm_state"] != "active":
            status = 409
            response = _error(409, "conflictingRequest", f"{server_id} is not active")
        else:
            _set_active(server, active=False)
            status, response = 202, web.Response(status=202, headers=self.request_id())
        await asyncio.sleep(self.latency)
        self.record(request, arrival, KIND_ACTION, status, project_id, server_id, action or None)
        return response

    # -- the harness's admin endpoints --------------------------------------------------------

    async def admin_reset(self, request: web.Request) -> web.Response:
        """``POST /_mock/reset``."""
        self.reset()
        return web.json_response({"reset": True})

    async def admin_requests(self, request: web.Request) -> web.Response:
        """``GET /_mock/requests[?kind=K]``: the records, shaped like the mock's journal."""
        kind = request.query.get("kind")
        fields = ("t", "wall", "method", "path", "kind", "status", "project_id", "server_id")
        rows = [
            {**dict(zip(fields, r[:8], strict=True)), "action": r[8], "query": r[9]}
            for r in sorted(self.records)
            if kind is None or r[4] == kind
        ]
        return web.json_response({"requests": rows})

    def app(self) -> web.Application:
        """The routes."""
        app = web.Application()
        app.router.add_get("/identity", self.identity_versions)
        app.router.add_get("/identity/", self.identity_versions)
        app.router.add_get("/identity/v3", self.identity_version)
        app.router.add_get("/identity/v3/", self.identity_version)
        app.router.add_post("/identity/v3/auth/tokens", self.issue_token)
        app.router.add_get("/v2.1/{project_id}/servers/detail", self.list_details)
        app.router.add_post("/v2.1/{project_id}/servers/{server_id}/action", self.action)
        app.router.add_post("/_mock/reset", self.admin_reset)
        app.router.add_get("/_mock/requests", self.admin_requests)
        return app


def _detail(server_id: str, project_id: str, name: str) -> dict[str, Any]:
    record = {"id": server_id, "name": name, "tenant_id": project_id, "tags": [], "metadata": {}}
    _set_active(record, active=True)
    return record


def _set_active(record: dict[str, Any], *, active: bool) -> None:
    record["status"] = "ACTIVE" if active else "SHUTOFF"
    record["OS-EXT-STS:vm_state"] = "active" if active else "stopped"
    record["OS-EXT-STS:task_state"] = None
    record["OS-EXT-STS:power_state"] = 1 if active else 4


def _error(status: int, fault: str, message: str) -> web.Response:
    return web.json_response({fault: {"code": status, "message": message}}, status=status)


async def serve(nova: Nova) -> None:
    """Serve until SIGTERM or SIGINT, after printing the connection line."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    nova.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    runner = web.AppRunner(nova.app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener, backlog=1024).start()
    info = {
        "base_url": nova.base_url,
        "auth_url": f"{nova.base_url}/identity/v3",
        "compute_url_template": nova.base_url + "/v2.1/{project_id}",
        "region": REGION,
        "username": USERNAME,
        "password": PASSWORD,
        "user_domain": DOMAIN,
        "project_ids": nova.project_ids,
        "servers": len(nova.servers),
    }
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: ``python -m benchmarks.nova --fleet F [--latency S]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nova", description=__doc__)
    parser.add_argument("--fleet", required=True, help="fleet JSON (benchmarks.fleets)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per compute call")
    args = parser.parse_args(argv)
    with open(args.fleet, encoding="utf-8") as handle:
        nova = Nova(json.load(handle), latency=args.latency)
    # On uvloop when installed: the server should be the faster side of the benchmark.
    uvloop = importlib.util.find_spec("uvloop") is not None
    factory = importlib.import_module("uvloop").new_event_loop if uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(nova))


if __name__ == "__main__":
    main()
