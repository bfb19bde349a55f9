"""Nova v2.1, as real clients use it: discovery, servers (list, show, os-stop/os-start), flavors.

Served at the root: ``GET /`` (versions: v2.0 then v2.1), ``GET /v2``, ``GET /v2.1``,
``GET /v2.1/{project_id}/`` (the version document, authenticated), ``/v2.1/{project_id}/servers...``
and ``/v2.1/{project_id}/flavors...``. Records are shaped per microversion and for admins by
:mod:`.records`; list queries are applied as Nova applies them by :mod:`.filters`.

A compute request crosses, in order (see :class:`~bulkstop.mockcloud.config.Faults`):
the gateway faults, the token check (keystonemiddleware: 401), Nova's URL check (a project id
that is not the token's is a 400, for admins too), the microversion (400/406), and the
operation. Microversion rules: ``OpenStack-API-Version: compute X.Y`` wins over
``X-OpenStack-Nova-API-Version: X.Y``; none means 2.1.

Why one module of ~650 lines: it mirrors one Nova API (nova/api/openstack/compute/servers.py)
route by route; record shapes and filters already live in :mod:`.records` and :mod:`.filters`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import re
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from . import bodies, filters, records
from . import faults as hostile
from .config import Faults, MockConfig, Trigger
from .faults import Injector, throttled
from .huawei import Signatures, baremetal_record, is_baremetal, native_refusal_status
from .identity import Identity, Token
from .journal import KIND_ACTION, KIND_GET, KIND_LIST, KIND_OTHER, RequestRecord
from .records import View
from .state import ACTIONS, DEFAULT_VIEW, Fleet, MockServer

Version = records.Version

MIN_VERSION: Final[Version] = (2, 1)
MAX_VERSION: Final[Version] = (2, 96)
VERSION_UPDATED: Final = "2013-07-23T11:33:21Z"
LEGACY_VERSION_UPDATED: Final = "2011-01-21T11:33:21Z"
VERSION_HEADER: Final = "OpenStack-API-Version"
LEGACY_VERSION_HEADER: Final = "X-OpenStack-Nova-API-Version"
_VERSION_RE: Final = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")
_TRUE: Final = frozenset({"", "1", "t", "true", "on", "y", "yes"})
_FALSE: Final = frozenset({"0", "f", "false", "off", "n", "no"})

#: Values of :attr:`RequestRecord.fault`.
FAULT_THROTTLE: Final = "throttle"
FAULT_RESET: Final = "reset"
FAULT_HTML: Final = "html"
FAULT_TOKEN_TTL: Final = "token_ttl"
FAULT_SERVER_ERROR: Final = "server_error"
FAULT_RACE: Final = "race"
FAULT_SLOW: Final = "slow"


class ApiError(Exception):
    """Raised inside an operation for an error answer (a Nova fault)."""

    def __init__(self, status: int, message: str, *, huawei_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.huawei_code = huawei_code


@dataclass(slots=True, kw_only=True)
class Call:
    """One compute request on its way through the pipeline."""

    request: web.Request
    kind: str
    project_id: str | None
    server_id: str | None
    request_id: str
    faults: Faults
    action: str | None = None
    body_ok: bool = True
    attempt: int = 0
    version: Version | None = None
    token: Token | None = None
    raced: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    #: With AK/SK checks: the signature's grant, or why it was refused.
    signed: Token | str | None = None

    @property
    def key(self) -> str:
        """What is asked, for attempt counting and seeded draws."""
        if self.server_id is not None:
            return f"{self.server_id}/{self.action or self.kind}"
        return f"{self.project_id}/{self.request.path}?{self.request.query_string}"

    @property
    def is_admin(self) -> bool:
        """The token carries the admin role."""
        return self.token is not None and self.token.user.is_admin


Operation = Callable[[Call], web.Response]


def parse_version(headers: Mapping[str, str]) -> Version:
    """The requested compute microversion; ApiError 400/406 if malformed or unsupported."""
    raw = None
    for item in headers.get(VERSION_HEADER, "").split(","):
        service, _, value = item.strip().partition(" ")
        if service.lower() == "compute":
            raw = value.strip()
    if raw is None:
        raw = headers.get(LEGACY_VERSION_HEADER)
    if raw is None:
        return MIN_VERSION
    return _version_of(raw.strip())


@functools.lru_cache(maxsize=64)
def _version_of(raw: str) -> Version:
    if raw.lower() == "latest":
        return MAX_VERSION
    match = _VERSION_RE.match(raw)
    if match is None:
        raise ApiError(
            400,
            f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum.",
        )
    version = (int(match[1]), int(match[2]))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ApiError(
            406,
            f"Version {raw} is not supported by the API. Minimum is "
            f"{_fmt(MIN_VERSION)} and maximum is {_fmt(MAX_VERSION)}.",
        )
    return version


def _fmt(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


@functools.lru_cache(maxsize=64)
def _version_headers(version: Version) -> dict[str, str]:
    text = _fmt(version)
    return {
        VERSION_HEADER: f"compute {text}",
        LEGACY_VERSION_HEADER: text,
        "Vary": f"{VERSION_HEADER}, {LEGACY_VERSION_HEADER}",
    }


def peek_action(raw: bytes) -> tuple[str | None, bool]:
    """Nova's ``action_peek``: (action name, body well-formed)."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None, False
    if not isinstance(document, dict) or len(document) != 1:
        return None, False
    return next(iter(document)), True


def _view(call: Call, *, show: bool) -> View:
    """The record view a request asks for (one per request, not per record)."""
    return _view_of(call.version or MIN_VERSION, call.is_admin, show)


@functools.lru_cache(maxsize=256)
def _view_of(version: Version, admin: bool, show: bool) -> View:
    view = View.of(version, admin=admin, show=show)
    # The very object, so the records' cache of bulkstop's own view is found by identity.
    return DEFAULT_VIEW if view == DEFAULT_VIEW else view


def _drop_connection(request: web.Request) -> None:
    """Abort the connection with a TCP reset: the client sees ECONNRESET or a disconnect."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Without the RST an aborted transport still shows as a disconnect; good enough.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Compute:
    """Nova routes over a :class:`~bulkstop.mockcloud.state.Fleet`."""

    def __init__(
        self,
        *,
        config: MockConfig,
        fleet: Fleet,
        identity: Identity,
        injector: Injector,
        journal: list[RequestRecord],
        base_url: str,
    ) -> None:
        self._config = config
        self._fleet = fleet
        self._identity = identity
        self._injector = injector
        self._journal = journal
        self._clock = config.clock
        self.base_url = base_url
        self._accepted = 204 if config.huawei else 202
        self._request_ids = itertools.count(1)
        #: AK/SK checks of requests with an ``Authorization`` header (set in AK/SK mode).
        self.signatures: Signatures | None = None

    # -- discovery ---------------------------------------------------------------------------

    def _version_doc(self, legacy: bool = False) -> dict[str, Any]:
        if legacy:  # Nova's v2.0 compatibility API: no microversions
            return {
                "id": "v2.0",
                "status": "SUPPORTED",
                "version": "",
                "min_version": "",
                "updated": LEGACY_VERSION_UPDATED,
                "links": [{"rel": "self", "href": f"{self.base_url}/v2/"}],
            }
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": _fmt(MAX_VERSION),
            "min_version": _fmt(MIN_VERSION),
            "updated": VERSION_UPDATED,
            "links": [{"rel": "self", "href": f"{self.base_url}/v2.1/"}],
        }

    def _version_body(self, legacy: bool) -> dict[str, Any]:
        doc = self._version_doc(legacy)
        doc["links"].append(
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}
        )
        media = "2" if legacy else "2.1"
        doc["media-types"] = [
            {
                "base": "application/json",
                "type": f"application/vnd.openstack.compute+json;version={media}",
            }
        ]
        return {"version": doc}

    async def versions(self, request: web.Request) -> web.Response:
        """``GET /``: the compute version list, v2.0 first as Nova lists it."""
        return web.json_response({"versions": [self._version_doc(True), self._version_doc()]})

    async def version(self, request: web.Request) -> web.Response:
        """``GET /v2.1``: the v2.1 version document."""
        return web.json_response(self._version_body(False))

    async def legacy_version(self, request: web.Request) -> web.Response:
        """``GET /v2``: the v2.0 version document."""
        return web.json_response(self._version_body(True))

    async def project_version(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2.1/{project_id}/``: the v2.1 version document, behind the token check."""
        return await self._serve(request, KIND_OTHER, self._project_version)

    # -- routes ------------------------------------------------------------------------------

    async def list_servers(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2.1/{project_id}/servers``."""
        return await self._serve(request, KIND_LIST, self._list_summary)

    async def list_details(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2.1/{project_id}/servers/detail``."""
        return await self._serve(request, KIND_LIST, self._list_detail)

    async def show_server(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2.1/{project_id}/servers/{server_id}``."""
        return await self._serve(request, KIND_GET, self._show)

    async def server_action(self, request: web.Request) -> web.StreamResponse:
        """``POST /v2.1/{project_id}/servers/{server_id}/action``."""
        return await self._serve(request, KIND_ACTION, self._act)

    async def list_flavors(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2.1/{project_id}/flavors``."""
        return await self._serve(request, KIND_OTHER, self._flavors_summary)

    async def list_flavor_details(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2.1/{project_id}/flavors/detail``."""
        return await self._serve(request, KIND_OTHER, self._flavors_detail)

    async def show_flavor(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2.1/{project_id}/flavors/{flavor_id}``."""
        return await self._serve(request, KIND_OTHER, self._flavor)

    # -- pipeline ----------------------------------------------------------------------------

    async def _serve(self, request: web.Request, kind: str, op: Operation) -> web.StreamResponse:
        arrival = self._clock()
        wall = time.time()
        project_id = request.match_info.get("project_id")
        call = Call(
            request=request,
            kind=kind,
            project_id=project_id,
            server_id=request.match_info.get("server_id"),
            request_id=f"req-00000000-0000-4000-8000-{next(self._request_ids):012x}",
            faults=self._injector.faults(project_id),
        )
        if kind == KIND_ACTION:
            call.action, call.body_ok = peek_action(await request.read())
        if self.signatures is not None and "Authorization" in request.headers:
            call.signed = self.signatures.check(request, await request.read())
        response: web.Response | None = None
        fault: str | None = None
        try:
            response, fault = await self._decide(call, op, arrival)
        finally:
            self._journal.append(
                RequestRecord(
                    t=arrival,
                    wall=wall,
                    method=request.method,
                    path=request.path,
                    kind=kind,
                    status=None if response is None else response.status,
                    project_id=project_id,
                    server_id=call.server_id,
                    action=call.action,
                    fault=fault,
                    request_id=call.request_id,
                    query=request.query_string,
                )
            )
        if response is None:
            _drop_connection(request)
            return web.Response(status=HTTPStatus.INTERNAL_SERVER_ERROR)  # never reaches anyone
        if fault == FAULT_SLOW:
            await asyncio.sleep(call.faults.slow_delay)
        if call.faults.drip > 0:
            return await hostile.drip(request, response, call.faults.drip)
        return response

    def _fires(self, call: Call, fault: str, trigger: Trigger) -> bool:
        if not trigger.armed:
            return False
        target = call.server_id if call.kind == KIND_ACTION else None
        return self._injector.fires(fault, trigger, call.key, call.attempt, target)

    async def _decide(
        self, call: Call, op: Operation, arrival: float
    ) -> tuple[web.Response | None, str | None]:
        """The answer (None = drop the connection) and the fault that shaped it."""
        faults = call.faults
        if faults.armed:
            early = await self._gateway(call, arrival)
            if early is not None:
                return early
        refusal = self._authorize(call)
        if refusal is not None:
            return refusal
        try:
            # A legacy cloud (or a gateway that strips headers) serves everything as 2.1:
            # tag filters are silently ignored and records carry no tags.
            call.version = (
                MIN_VERSION if self._config.legacy else parse_version(call.request.headers)
            )
            call.headers.update(_version_headers(call.version))
            if self._fires(call, FAULT_SERVER_ERROR, faults.server_error):
                return self._server_error(call), FAULT_SERVER_ERROR
            response = op(call)
        except ApiError as error:
            return self._error(call, error), FAULT_RACE if call.raced else None
        if call.raced:
            return response, FAULT_RACE
        if self._fires(call, FAULT_SLOW, faults.slow):
            return response, FAULT_SLOW
        return response, None

    async def _gateway(self, call: Call, arrival: float) -> tuple[web.Response | None, str] | None:
        """What stands in front of Nova: throttling, latency, resets, proxy pages."""
        faults = call.faults
        injector = self._injector
        wait = 0.0
        if call.project_id is not None:
            wait = injector.throttle(call.project_id, faults, arrival)
        call.attempt = injector.attempt(call.key)
        delay = injector.latency(faults, call.key, call.attempt)
        if delay > 0:
            await asyncio.sleep(delay)
        if wait > 0:
            answer = throttled(faults, wait, call.request_id)
            return self._json(call, answer.status, answer.body, answer.headers), FAULT_THROTTLE
        if self._fires(call, FAULT_RESET, faults.reset):
            return None, FAULT_RESET
        if self._fires(call, FAULT_HTML, faults.html):
            page = bodies.html_page(faults.html_status)
            answer_page = web.Response(
                status=faults.html_status, text=page, content_type="text/html"
            )
            return answer_page, FAULT_HTML
        return None

    def _authorize(self, call: Call) -> tuple[web.Response, str | None] | None:
        """keystonemiddleware's token check, then Nova's URL project check."""
        if call.signed is not None and self.signatures is not None:
            if isinstance(call.signed, str):
                return self.signatures.refusal(call.signed, call.request_id), None
            checked: Token | str = call.signed
        else:
            checked = self._identity.check(call.request.headers.get("X-Auth-Token"))
        if isinstance(checked, str):
            fault = None
            if checked.startswith("token expires") and call.faults.token_ttl is not None:
                fault = FAULT_TOKEN_TTL
            body = bodies.unauthorized(call.faults.flavour, checked, call.request_id)
            headers = {"WWW-Authenticate": f'Keystone uri="{self.base_url}/identity"'}
            return self._json(call, 401, body, headers), fault
        call.token = checked
        if call.project_id != checked.project.id:
            message = (
                f"Malformed request URL: URL's project_id '{call.project_id}' doesn't match "
                f"Context's project_id '{checked.project.id}'"
            )
            return self._error(call, ApiError(400, message)), None
        return None

    # -- answers -----------------------------------------------------------------------------

    def _headers(self, call: Call, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {
            "X-Openstack-Request-Id": call.request_id,
            "X-Compute-Request-Id": call.request_id,
            **call.headers,
        }
        if self._config.huawei:
            headers["X-Request-Id"] = call.request_id
        if extra:
            headers.update(extra)
        return headers

    def _json(
        self,
        call: Call,
        status: int,
        document: Any,
        extra: Mapping[str, str] | None = None,
    ) -> web.Response:
        return self._raw_json(call, status, bodies.dumps(document), extra)

    def _raw_json(
        self, call: Call, status: int, body: bytes, extra: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            status=status,
            body=body,
            content_type="application/json",
            headers=self._headers(call, extra),
        )

    def _error(self, call: Call, error: ApiError) -> web.Response:
        document = bodies.compute_error(
            call.faults.flavour, error.status, error.message, huawei_code=error.huawei_code
        )
        return self._json(call, error.status, document)

    def _server_error(self, call: Call) -> web.Response:
        status = call.faults.error_status
        message = bodies.NOVA_UNEXPECTED if status == 500 else HTTPStatus(status).phrase
        document = bodies.compute_error(call.faults.flavour, status, message)
        return self._json(call, status, document, hostile.extra_headers(call.faults, status))

    # -- operations --------------------------------------------------------------------------

    def _find(self, call: Call) -> MockServer:
        server = self._fleet.servers.get(call.server_id or "")
        if server is None or (server.project_id != call.project_id and not call.is_admin):
            raise ApiError(404, f"Instance {call.server_id} could not be found.")
        return server

    def _render(self, server: MockServer, view: View) -> str:
        if self._config.huawei and is_baremetal(server):
            # The BMS API's power states: not cached, bare metal fleets are small.
            record = baremetal_record(server.detail(self.base_url, view))
            return json.dumps(record, separators=(",", ":"))
        return server.detail_json(self.base_url, view)

    def _show(self, call: Call) -> web.Response:
        server = self._find(call)
        body = f'{{"server":{self._render(server, _view(call, show=True))}}}'
        return self._raw_json(call, 200, body.encode())

    def _list_summary(self, call: Call) -> web.Response:
        return self._list(call, detail=False)

    def _list_detail(self, call: Call) -> web.Response:
        return self._list(call, detail=True)

    def _list(self, call: Call, *, detail: bool) -> web.Response:
        query = call.request.query
        scope = self._scope(call, query, detail=detail)
        limit = self._limit(query)
        try:
            wanted = filters.listing(query, call.version or MIN_VERSION, admin=call.is_admin)
        except filters.QueryError as error:
            raise ApiError(error.status, error.message) from None
        servers = self._fleet.servers
        order = self._fleet.order(scope)
        marker = query.get("marker")
        position: int | None = None
        if wanted.sort is not None:
            order = [s.id for s in wanted.order([servers[sid] for sid in order])]
            if marker is not None and marker in servers:
                with contextlib.suppress(ValueError):
                    position = order.index(marker)
        elif marker is not None:
            position = self._fleet.position(marker, scope)
        start = 0
        if marker is not None:
            # A treadmill's markers are made up: it answers them with the first page again.
            if position is None and not call.faults.list_treadmill:
                raise ApiError(400, f"marker [{marker}] not found")
            start = 0 if position is None else position + 1
        match = wanted.match
        page: list[MockServer] = []
        if limit == 0:
            pass
        elif match is None:
            page = [servers[sid] for sid in order[start : start + limit]]
        else:
            for index in range(start, len(order)):
                server = servers[order[index]]
                if match(server):
                    page.append(server)
                    if len(page) == limit:
                        break
        if detail:
            view = _view(call, show=False)
            parts = [self._render(s, view) for s in page]
        else:
            parts = [s.summary_json(self.base_url) for s in page]
        faults = call.faults
        if faults.forged_ids and parts:
            parts += hostile.forge(parts[0], tags=("bulkstop:protect",))
        body = '{"servers":[' + ",".join(parts) + "]"
        if (page and len(page) == limit) or faults.list_treadmill:
            after = hostile.treadmill_marker() if faults.list_treadmill else page[-1].id
            link = [{"href": self._next_link(call, detail, after), "rel": "next"}]
            body += ',"servers_links":' + json.dumps(link)
        body = hostile.padded(body + "}", faults.page_padding)
        return self._raw_json(call, 200, body.encode())

    def _scope(self, call: Call, query: MultiMapping[str], *, detail: bool) -> str | None:
        """The project listed, or None for all of them (admin ``all_tenants``)."""
        raw = query.get("all_tenants")
        if raw is None:
            return call.project_id
        if raw.lower() not in _TRUE | _FALSE:
            raise ApiError(400, f"Invalid input for query parameters all_tenants. Value: {raw}.")
        if raw.lower() in _FALSE:
            return call.project_id
        if not call.is_admin:
            rule = "detail:get_all_tenants" if detail else "index:get_all_tenants"
            raise ApiError(
                403, f"Policy doesn't allow os_compute_api:servers:{rule} to be performed."
            )
        return query.get("project_id") or query.get("tenant_id")

    def _limit(self, query: MultiMapping[str]) -> int:
        max_limit = self._config.max_limit
        raw = query.get("limit")
        if raw is None:
            return max_limit
        try:
            limit = int(raw)
        except ValueError:
            raise ApiError(400, "limit param must be an integer") from None
        if limit < 0:
            raise ApiError(400, "limit param must be positive")
        return min(limit, max_limit)

    def _next_link(self, call: Call, detail: bool, last_id: str) -> str:
        params = sorted((k, v) for k, v in call.request.query.items() if k != "marker")
        params.append(("marker", last_id))
        collection = "servers/detail" if detail else "servers"
        return f"{self.base_url}/v2.1/{call.project_id}/{collection}?{urlencode(params)}"

    def _project_version(self, call: Call) -> web.Response:
        return self._json(call, 200, self._version_body(False))

    def _flavors_summary(self, call: Call) -> web.Response:
        version = call.version or MIN_VERSION
        pid = call.project_id or ""
        flavors = [f.summary(self.base_url, pid, version) for f in records.FLAVORS.values()]
        return self._json(call, 200, {"flavors": flavors})

    def _flavors_detail(self, call: Call) -> web.Response:
        version = call.version or MIN_VERSION
        pid = call.project_id or ""
        flavors = [f.detail(self.base_url, pid, version) for f in records.FLAVORS.values()]
        return self._json(call, 200, {"flavors": flavors})

    def _flavor(self, call: Call) -> web.Response:
        flavor_id = call.request.match_info["flavor_id"]
        flavor = records.FLAVORS.get(flavor_id)
        if flavor is None:
            raise ApiError(404, f"Flavor {flavor_id} could not be found.")
        detail = flavor.detail(self.base_url, call.project_id or "", call.version or MIN_VERSION)
        return self._json(call, 200, {"flavor": detail})

    def _act(self, call: Call) -> web.Response:
        if not call.body_ok:
            raise ApiError(400, "Malformed request body")
        action = call.action or ""
        if action not in ACTIONS:
            raise ApiError(400, f"There is no such action: {action}")
        server = self._find(call)
        delay = self._config.transition_delay
        if (
            action == "os-stop"
            and self._fires(call, FAULT_RACE, call.faults.race)
            and server.refusal(action, is_admin=False) is None
        ):
            server.begin(action, delay)  # someone else's stop, just before ours
            call.raced = True
        message = server.refusal(action, is_admin=call.is_admin)
        if message is not None:
            code = self._huawei_conflict(server)
            status = native_refusal_status(server, code) if self._config.huawei else 409
            raise ApiError(status, message, huawei_code=code)
        server.begin(action, delay)
        return web.Response(status=self._accepted, headers=self._headers(call))

    @staticmethod
    def _huawei_conflict(server: MockServer) -> str | None:
        if server.vm_state == "stopped":
            return bodies.HUAWEI_STOPPED
        if server.task_state == "powering-off":
            return bodies.HUAWEI_POWERING_OFF
        return None
