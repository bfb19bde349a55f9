"""HttpCompute against scripted loopback servers: requests sent, replies parsed, failures mapped.

aioresponses 0.7.9 cannot build responses for aiohttp 3.14 (pnuckowski/aioresponses#289), and a
real loopback server checks more (headers on the wire, URL encoding, broken connections), so
these tests answer from a tiny aiohttp.web app or from raw asyncio sockets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

import aiohttp
import certifi
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.cloud.auth import ProjectAccess, TlsSettings
from bulkstop.cloud.http import (
    NOVA_MICROVERSION,
    HttpCompute,
    _path_segment,
    action_body,
    client_ssl,
    transport_error,
)
from bulkstop.errors import ConfigError, EndpointError
from bulkstop.limits import MAX_RESPONSE_BYTES
from bulkstop.models import Action, ErrorInfo, ListQuery, Server, ServerPage

SERVER = "95bf2490-5428-432c-ad9b-5e3406f869dd"
OTHER = "0b7c2c3e-2f0a-4c53-9a43-6b1f1f0e1d11"
NOW = 1_700_000_000.0


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedNova:
    """A loopback server answering from a queue (default 204) and recording every request."""

    base: str = ""
    answers: deque[web.Response] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    def answer(
        self,
        status: int,
        body: object = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        chunked: bool = False,
    ) -> None:
        if raw is None:
            raw = b"" if body is None else json.dumps(body).encode()
        response = web.Response(status=status, body=raw, headers=headers, content_type=content_type)
        if chunked:  # no Content-Length: the client learns the size only by reading
            response.enable_chunked_encoding()
        self.answers.append(response)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(
                method=request.method,
                raw_path=request.raw_path.split("?")[0],
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        return self.answers.popleft() if self.answers else web.Response(status=204)


class FakeTokens:
    """A TokenSource with one token per project that changes on every renewal."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.generation = 1
        self.renewals: list[tuple[str, str | None]] = []
        self.closed = False

    async def current(self, project_id: str) -> ProjectAccess:
        return ProjectAccess(
            project_id=project_id,
            token=f"token-{project_id}-{self.generation}",
            compute_url=f"{self.base}/v2.1/{project_id}",
            issued_at=NOW,
            expires_at=NOW + 3600,
        )

    async def renew(self, project_id: str, *, rejected_token: str | None = None) -> ProjectAccess:
        self.renewals.append((project_id, rejected_token))
        self.generation += 1
        return await self.current(project_id)

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
async def nova() -> AsyncIterator[ScriptedNova]:
    server = ScriptedNova()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base = f"http://{host}:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
def tokens(nova: ScriptedNova) -> FakeTokens:
    return FakeTokens(nova.base)


@pytest.fixture
async def compute(tokens: FakeTokens) -> AsyncIterator[HttpCompute]:
    client = HttpCompute(tokens, request_timeout=5.0, pool_size=4, wall_clock=lambda: NOW)
    yield client
    await client.aclose()


class TestAction:
    """The hot path: POST /servers/{id}/action."""

    async def test_stop_request_on_the_wire(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(202, headers={"X-Openstack-Request-Id": "req-1"})
        reply = await compute.action("p1", SERVER, Action.STOP)
        assert (reply.status, reply.request_id, reply.error, reply.body) == (
            202,
            "req-1",
            None,
            None,
        )
        [seen] = nova.seen
        assert (seen.method, seen.raw_path) == ("POST", f"/v2.1/p1/servers/{SERVER}/action")
        assert seen.body == b'{"os-stop":{}}'
        assert seen.headers["X-Auth-Token"] == "token-p1-1"
        assert seen.headers["X-OpenStack-Nova-API-Version"] == NOVA_MICROVERSION
        assert seen.headers["OpenStack-API-Version"] == f"compute {NOVA_MICROVERSION}"
        assert seen.headers["Accept"] == "application/json"
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.headers["User-Agent"].startswith("bulkstop/")

    @pytest.mark.parametrize(
        ("action", "stop_type", "expected"),
        [
            (Action.STOP, "HARD", {"os-stop": {"type": "HARD"}}),
            (Action.STOP, "SOFT", {"os-stop": {"type": "SOFT"}}),
            (Action.START, None, {"os-start": None}),
        ],
    )
    async def test_bodies(
        self,
        compute: HttpCompute,
        nova: ScriptedNova,
        action: Action,
        stop_type: str | None,
        expected: object,
    ) -> None:
        await compute.action("p1", SERVER, action, stop_type=stop_type)
        assert json.loads(nova.seen[0].body) == expected

    @given(st.text())
    def test_an_id_in_the_path_is_quoted_as_quote_would(self, server_id: str) -> None:
        # The shortcut for UUIDs must never send a different path than quote() did.
        assert _path_segment(server_id) == quote(server_id, safe="")

    async def test_an_id_that_needs_quoting_is_quoted_on_the_wire(
        self, compute: HttpCompute, nova: ScriptedNova
    ) -> None:
        await compute.action("p1", "a b/c", Action.STOP)
        assert nova.seen[0].raw_path == "/v2.1/p1/servers/a%20b%2Fc/action"

    def test_unusual_stop_type_is_still_encoded(self) -> None:
        assert json.loads(action_body(Action.STOP, "GENTLE")) == {"os-stop": {"type": "GENTLE"}}

    async def test_any_2xx_is_success_and_its_body_ignored(
        self, compute: HttpCompute, nova: ScriptedNova
    ) -> None:
        nova.answer(200, raw=b"<html>not json</html>", content_type="text/html")
        reply = await compute.action("p1", SERVER, Action.STOP)
        assert reply.ok
        assert reply.error is None

    @pytest.mark.parametrize(
        "header", ["X-Openstack-Request-Id", "X-Compute-Request-Id", "X-Request-Id"]
    )
    async def test_request_id_headers(
        self, compute: HttpCompute, nova: ScriptedNova, header: str
    ) -> None:
        nova.answer(204, headers={header: "req-abc"})
        assert (await compute.action("p1", SERVER, Action.STOP)).request_id == "req-abc"

    async def test_conflict_is_parsed(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        message = f"Cannot 'stop' instance {SERVER} while it is in vm_state stopped"
        nova.answer(
            409,
            {"conflictingRequest": {"code": 409, "message": message}},
            headers={"X-Compute-Request-Id": "req-9"},
        )
        reply = await compute.action("p1", SERVER, Action.STOP)
        assert reply.status == 409
        assert reply.error == ErrorInfo(code="conflictingRequest", message=message)
        assert reply.request_id == "req-9"
        assert reply.retry_after is None

    async def test_server_id_is_escaped_in_the_path(
        self, compute: HttpCompute, nova: ScriptedNova
    ) -> None:
        await compute.action("p1", "../x?y", Action.STOP)
        assert nova.seen[0].raw_path == "/v2.1/p1/servers/..%2Fx%3Fy/action"


class TestRetryAfter:
    """Throttled replies carry the wait the cloud asked for."""

    async def test_header_seconds(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(429, raw=b"", headers={"Retry-After": "3"})
        reply = await compute.action("p1", SERVER, Action.STOP)
        assert (reply.status, reply.retry_after) == (429, 3.0)
        assert reply.error == ErrorInfo(code="HTTP 429", message="Too Many Requests (empty body)")

    async def test_header_http_date(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        when = format_datetime(datetime.fromtimestamp(NOW + 90, tz=UTC), usegmt=True)
        nova.answer(503, raw=b"", headers={"Retry-After": when})
        assert (await compute.action("p1", SERVER, Action.STOP)).retry_after == 90.0

    async def test_over_limit_body(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(413, {"overLimit": {"code": 413, "message": "slow", "retryAfter": "30"}})
        reply = await compute.action("p1", SERVER, Action.STOP)
        assert reply.retry_after == 30.0
        assert reply.error == ErrorInfo(code="overLimit", message="slow")

    async def test_header_wins_over_body(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(
            429,
            {"overLimit": {"code": 429, "message": "slow", "retryAfter": "30"}},
            headers={"Retry-After": "2"},
        )
        assert (await compute.action("p1", SERVER, Action.STOP)).retry_after == 2.0

    async def test_gateway_throttle(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(429, {"error_code": "APIG.0308", "error_msg": "over ratelimit"})
        reply = await compute.action("p1", SERVER, Action.STOP)
        assert reply.error == ErrorInfo(code="APIG.0308", message="over ratelimit")
        assert reply.retry_after is None


class TestTokens:
    """401 handling and token changes."""

    async def test_renew_after_401_names_the_rejected_token(
        self, compute: HttpCompute, nova: ScriptedNova, tokens: FakeTokens
    ) -> None:
        nova.answer(401, {"error": {"code": 401, "title": "Unauthorized", "message": "expired"}})
        reply = await compute.action("p1", SERVER, Action.STOP)
        assert reply.status == 401
        assert reply.error == ErrorInfo(code="Unauthorized", message="expired")
        await compute.renew_auth("p1")
        assert tokens.renewals == [("p1", "token-p1-1")]

    async def test_renew_without_401_forces(self, compute: HttpCompute, tokens: FakeTokens) -> None:
        await compute.renew_auth("p2")
        assert tokens.renewals == [("p2", None)]

    async def test_new_token_is_sent_after_renewal(
        self, compute: HttpCompute, nova: ScriptedNova, tokens: FakeTokens
    ) -> None:
        await compute.action("p1", SERVER, Action.STOP)
        await compute.renew_auth("p1")
        await compute.action("p1", SERVER, Action.STOP)
        assert [seen.headers["X-Auth-Token"] for seen in nova.seen] == [
            "token-p1-1",
            "token-p1-2",
        ]

    async def test_projects_get_their_own_url_and_token(
        self, compute: HttpCompute, nova: ScriptedNova
    ) -> None:
        await compute.action("p1", SERVER, Action.STOP)
        await compute.action("p2", SERVER, Action.STOP)
        assert [(s.raw_path.split("/")[2], s.headers["X-Auth-Token"]) for s in nova.seen] == [
            ("p1", "token-p1-1"),
            ("p2", "token-p2-1"),
        ]


def detail(server_id: str, **extra: object) -> dict[str, object]:
    return {
        "id": server_id,
        "name": f"vm-{server_id[:4]}",
        "status": "ACTIVE",
        "tenant_id": "p1",
        "tags": ["nightly"],
        "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:task_state": None,
        "OS-EXT-STS:power_state": 1,
        **extra,
    }


class TestListPage:
    """GET /servers/detail: filters out, pages in."""

    async def test_filters_in_the_query(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(200, {"servers": []})
        query = ListQuery(
            tags=("a b", "c"),
            tags_any=("d",),
            not_tags=("e",),
            not_tags_any=("f", "g"),
            all_tenants=True,
            limit=50,
        )
        await compute.list_page("p1", query, "m-1")
        [seen] = nova.seen
        assert (seen.method, seen.raw_path) == ("GET", "/v2.1/p1/servers/detail")
        assert seen.query == {
            "tags": "a b,c",
            "tags-any": "d",
            "not-tags": "e",
            "not-tags-any": "f,g",
            "all_tenants": "True",
            "limit": "50",
            "marker": "m-1",
        }
        assert seen.headers["X-OpenStack-Nova-API-Version"] == NOVA_MICROVERSION
        assert "Content-Type" not in seen.headers

    async def test_no_filters_no_query(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(200, {"servers": []})
        await compute.list_page("p1", ListQuery(), None)
        assert nova.seen[0].query == {}

    async def test_page_with_next_marker(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        next_href = f"{nova.base}/v2.1/p1/servers/detail?limit=2&marker={OTHER}"
        nova.answer(
            200,
            {
                "servers": [detail(SERVER), detail(OTHER, locked=True)],
                "servers_links": [{"rel": "next", "href": next_href}],
            },
            headers={"X-Openstack-Request-Id": "req-l"},
        )
        reply = await compute.list_page("p1", ListQuery(limit=2), None)
        assert reply.error is None
        assert reply.request_id == "req-l"
        assert isinstance(reply.body, ServerPage)
        assert reply.body.next_marker == OTHER
        first, second = reply.body.servers
        assert first == Server.from_api(detail(SERVER))
        assert (first.tags, second.locked) == (frozenset({"nightly"}), True)

    async def test_last_page_has_no_marker(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(200, {"servers": [detail(SERVER)], "servers_links": [{"rel": "self"}]})
        reply = await compute.list_page("p1", ListQuery(), None)
        assert isinstance(reply.body, ServerPage)
        assert reply.body.next_marker is None

    async def test_next_link_without_marker_uses_last_id(
        self, compute: HttpCompute, nova: ScriptedNova
    ) -> None:
        nova.answer(
            200,
            {
                "servers": [detail(SERVER), detail(OTHER)],
                "servers_links": [{"rel": "next", "href": "/servers/detail?limit=2"}],
            },
        )
        reply = await compute.list_page("p1", ListQuery(), None)
        assert isinstance(reply.body, ServerPage)
        assert reply.body.next_marker == OTHER

    async def test_records_without_tenant_take_the_project(
        self, compute: HttpCompute, nova: ScriptedNova
    ) -> None:
        nova.answer(200, {"servers": [{"id": SERVER}]})
        reply = await compute.list_page("p9", ListQuery(), None)
        assert isinstance(reply.body, ServerPage)
        assert reply.body.servers[0].project_id == "p9"
        assert reply.body.servers[0].tags is None

    @pytest.mark.parametrize(
        "forged", [None, "", "..", f"x/../{SERVER}", f" {SERVER}", f"{SERVER}\n", 7]
    )
    async def test_records_whose_id_is_not_exactly_a_uuid_are_dropped_and_counted(
        self, compute: HttpCompute, nova: ScriptedNova, forged: object
    ) -> None:
        record = {} if forged is None else {"id": forged}
        nova.answer(200, {"servers": [record, {"id": SERVER.upper()}]})
        reply = await compute.list_page("p1", ListQuery(), None)
        assert isinstance(reply.body, ServerPage)
        assert [s.id for s in reply.body.servers] == [SERVER.lower()]
        assert reply.body.dropped == 1

    @pytest.mark.parametrize(
        ("raw", "fragment"),
        [
            (b"<html><title>Login</title></html>", "not JSON"),
            (b'{"servers": 5}', "unexpected JSON"),
            (b'{"servers": ["x"]}', "unexpected JSON"),
            (b"[]", "unexpected JSON"),
            (b"", "not JSON"),
        ],
    )
    async def test_2xx_with_a_body_of_another_shape(
        self, compute: HttpCompute, nova: ScriptedNova, raw: bytes, fragment: str
    ) -> None:
        nova.answer(200, raw=raw)
        reply = await compute.list_page("p1", ListQuery(), None)
        assert reply.status == 200
        assert reply.body is None
        assert reply.error is not None
        assert reply.error.code == "invalid_response"
        assert fragment in reply.error.message

    async def test_bad_marker(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(400, {"badRequest": {"code": 400, "message": "marker [x] not found"}})
        reply = await compute.list_page("p1", ListQuery(), "x")
        assert reply.error == ErrorInfo(code="badRequest", message="marker [x] not found")
        assert reply.body is None


class TestGetServer:
    """GET /servers/{id}."""

    async def test_found(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(200, {"server": detail(SERVER, status="SHUTOFF")})
        reply = await compute.get_server("p1", SERVER)
        assert nova.seen[0].raw_path == f"/v2.1/p1/servers/{SERVER}"
        assert isinstance(reply.body, Server)
        assert reply.body.is_stopped

    async def test_not_found(self, compute: HttpCompute, nova: ScriptedNova) -> None:
        nova.answer(404, {"itemNotFound": {"code": 404, "message": "gone"}})
        reply = await compute.get_server("p1", SERVER)
        assert (reply.status, reply.body) == (404, None)
        assert reply.error == ErrorInfo(code="itemNotFound", message="gone")


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    await writer.drain()
    writer.close()


async def cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 409 Conflict\r\nContent-Length: 100\r\n\r\n{"conflic')
    await writer.drain()
    writer.close()


async def plain_http_to_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(16)  # the TLS ClientHello
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    await writer.drain()
    writer.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await reader.read()  # until the client gives up


@pytest.mark.parametrize(
    ("behaviour", "scheme", "code"),
    [
        (close_at_once, "http", "connection_reset"),
        (reset, "http", "connection_reset"),
        (cut_body, "http", "connection_reset"),
        (not_http, "http", "invalid_response"),
        (plain_http_to_tls, "https", "tls_error"),
        (never_answer, "http", "timeout"),
    ],
)
async def test_broken_connections_become_replies(
    behaviour: Behaviour, scheme: str, code: str
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await behaviour(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    compute = HttpCompute(FakeTokens(f"{scheme}://127.0.0.1:{port}"), request_timeout=0.2)
    try:
        reply = await compute.action("p1", SERVER, Action.STOP)
    finally:
        await compute.aclose()
        server.close()
        await server.wait_closed()
    assert reply.status is None
    assert reply.error is not None
    assert reply.error.code == code
    assert reply.error.message


async def test_refused_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    compute = HttpCompute(FakeTokens(f"http://127.0.0.1:{port}"))
    try:
        reply = await compute.action("p1", SERVER, Action.STOP)
    finally:
        await compute.aclose()
    assert reply.status is None
    assert reply.error is not None
    assert reply.error.code == "connect_error"


@pytest.mark.parametrize("base", ["ftp://nova.test", "no-scheme"])
async def test_unusable_compute_url_is_a_run_wide_error(base: str) -> None:
    compute = HttpCompute(FakeTokens(base))
    try:
        with pytest.raises(EndpointError, match="compute URL"):
            await compute.list_page("p1", ListQuery(), None)
    finally:
        await compute.aclose()


def test_dns_failure_is_a_connect_error() -> None:
    key = ConnectionKey("nova.invalid", 443, True, True, None, None, None)
    exc = aiohttp.ClientConnectorDNSError(key, socket.gaierror(-2, "Name or service not known"))
    assert transport_error(exc).code == "connect_error"


def test_certificate_error_is_a_tls_error() -> None:
    key = ConnectionKey("nova.test", 443, True, True, None, None, None)
    cert_error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc = aiohttp.ClientConnectorCertificateError(key, cert_error)
    assert transport_error(exc).code == "tls_error"


async def test_aclose_closes_the_token_source(tokens: FakeTokens, nova: ScriptedNova) -> None:
    compute = HttpCompute(tokens)
    await compute.action("p1", SERVER, Action.STOP)
    await compute.aclose()
    assert tokens.closed


class TestSslContext:
    """What aiohttp gets for OS_INSECURE / OS_CACERT / client certificates."""

    def test_insecure(self) -> None:
        assert client_ssl(TlsSettings(verify=False)) is False

    def test_default(self) -> None:
        assert client_ssl(TlsSettings()) is True

    def test_ca_bundle(self) -> None:
        context = client_ssl(TlsSettings(verify=certifi.where()))
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED

    def test_missing_ca_bundle(self) -> None:
        with pytest.raises(ConfigError, match="CA"):
            client_ssl(TlsSettings(verify="/nonexistent/ca.pem"))


class TestResponseCap:
    """Row 10h at its edge: an answer of exactly ``max_response_bytes`` is read, one more is not."""

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    async def test_the_cap_is_exact(
        self, tokens: FakeTokens, nova: ScriptedNova, chunked: bool
    ) -> None:
        body = json.dumps({"servers": [{"id": SERVER}]}).encode()
        client = HttpCompute(tokens, request_timeout=5.0, pool_size=4, max_response_bytes=len(body))
        try:
            nova.answer(200, raw=body, chunked=chunked)
            at_cap = await client.list_page("p1", ListQuery(), None)
            nova.answer(200, raw=body + b" ", chunked=chunked)
            over = await client.list_page("p1", ListQuery(), None)
        finally:
            await client.aclose()
        assert isinstance(at_cap.body, ServerPage)
        assert over.status == 200 and over.body is None
        assert over.error is not None and over.error.code == "response_too_large"

    def test_the_default_is_the_named_limit(self) -> None:
        assert MAX_RESPONSE_BYTES == 64 * 1024 * 1024
