"""The aiohttp implementation of :class:`~bulkstop.cloud.base.ComputeAPI`.

One shared :class:`aiohttp.ClientSession` per run, one HTTP request per call, no retries: the
engine owns retries, backoff, pacing and token renewal. Every call returns a
:class:`~bulkstop.models.Reply`: HTTP statuses are data, and so are broken connections, which
:func:`transport_error` (the one place aiohttp and socket exceptions are translated) turns into
an :class:`~bulkstop.models.ErrorInfo` with ``status=None``:

==================== ==========================================================
``timeout``          no complete answer within the request timeout
``connect_error``    connection refused, DNS failure, host unreachable
``tls_error``        certificate or handshake failure
``connection_reset`` the server closed or reset the connection, or cut the body
``invalid_response`` the answer was not HTTP (or, with a 2xx status, not the
                     expected JSON: then the status is kept)
``response_too_large`` the body is larger than ``max_response_bytes`` (the status
                     is kept; nothing of it is parsed)
==================== ==========================================================

``action`` is the hot path of a fan-out: its body bytes are encoded once, its URL prefix and
headers are built once per project and token, and a 2xx body is never parsed.

Why one module of ~500 lines: it is the one place aiohttp is used and its exceptions are
translated (:func:`transport_error`); the signed (AK/SK) and token paths share every request.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import anyio.to_thread
from multidict import CIMultiDictProxy
from yarl import URL

from bulkstop.cloud import aksk
from bulkstop.cloud.auth import (
    USER_AGENT,
    AuthSettings,
    Keystone,
    KeystoneTokens,
    ProjectAccess,
    TlsSettings,
    authenticate_scope,
    bounded,
)
from bulkstop.cloud.errorbody import parse_error_body, parse_retry_after, shorten
from bulkstop.cloud.huawei import AkSkAccess, load_aksk
from bulkstop.errors import ConfigError, EndpointError
from bulkstop.limits import DEFAULT_REQUEST_TIMEOUT, MAX_RESPONSE_BYTES
from bulkstop.models import Action, ErrorInfo, ListQuery, Reply, Server, ServerPage

#: The compute microversion that makes Nova honour tag filters (below it they are ignored).
NOVA_MICROVERSION: Final = "2.26"
#: Open connections to the compute endpoint; match the engine's concurrency.
DEFAULT_POOL_SIZE: Final = 64
#: Response headers that carry the cloud's request id, in order of preference.
REQUEST_ID_HEADERS: Final = ("X-Openstack-Request-Id", "X-Compute-Request-Id", "X-Request-Id")

_BASE_HEADERS: Final = {
    "Accept": "application/json",
    "User-Agent": USER_AGENT,
    "X-OpenStack-Nova-API-Version": NOVA_MICROVERSION,
    "OpenStack-API-Version": f"compute {NOVA_MICROVERSION}",
}


class RequestSigner(Protocol):
    """Signs every request instead of a token header (Huawei AK/SK: :class:`~.huawei.AkSkAccess`).

    With a signer, the client puts the query on the URL itself, in the signer's canonical form,
    and sends that URL unchanged.
    """

    def sign(self, project_id: str, method: str, url: str, body: bytes | None) -> Mapping[str, str]:
        """The headers that authenticate this exact request (its URL carries the final query)."""
        ...

    def refused(self, project_id: str, error: ErrorInfo | None, server_date: str | None) -> None:
        """The cloud answered 401 to a signed request; ``server_date`` is its ``Date`` header."""
        ...


class TokenSource(Protocol):
    """Where :class:`HttpCompute` gets tokens; :class:`~.auth.KeystoneTokens` is one."""

    async def current(self, project_id: str) -> ProjectAccess:
        """A valid token for the project (cheap when cached)."""
        ...

    async def renew(self, project_id: str, *, rejected_token: str | None = None) -> ProjectAccess:
        """A fresh token, unless the cached one is no longer ``rejected_token``."""
        ...

    async def aclose(self) -> None:
        """Release whatever the source holds."""
        ...


def action_body(action: Action, stop_type: str | None = None) -> bytes:
    """The encoded body of a server action.

    ``{"os-stop": {}}`` (``{"os-stop": {"type": "HARD"}}`` for a typed stop) as Huawei documents
    it; Nova accepts any value there. ``{"os-start": null}`` as Nova's api-ref shows it.
    """
    value: dict[str, str] | None = None
    if action is Action.STOP:
        value = {"type": stop_type} if stop_type else {}
    return json.dumps({action.value: value}, separators=(",", ":")).encode()


_ACTION_BODIES: Final = {
    (action, stop_type): action_body(action, stop_type)
    for action in Action
    for stop_type in (None, "SOFT", "HARD")
}


@dataclass(frozen=True, slots=True)
class _Route:
    """What every request of one project needs, built once per token."""

    access: ProjectAccess
    servers: str  # "{compute_url}/servers/"
    headers: Mapping[str, str]
    post_headers: Mapping[str, str]

    @classmethod
    def of(cls, access: ProjectAccess) -> _Route:
        headers = dict(_BASE_HEADERS)
        if access.token:  # signed requests (AK/SK) carry no token
            headers["X-Auth-Token"] = access.token
        return cls(
            access=access,
            servers=f"{access.compute_url}/servers/",
            headers=headers,
            post_headers={**headers, "Content-Type": "application/json"},
        )


class HttpCompute:
    """:class:`~.base.ComputeAPI` over aiohttp, with tokens from a :class:`TokenSource`.

    ``pool_size`` caps open connections (set it to the engine's concurrency); ``ssl_context`` is
    what :func:`client_ssl` makes of the cloud's TLS settings; ``wall_clock`` (Unix time) dates
    ``Retry-After`` HTTP dates. The session is created lazily inside the running event loop.
    """

    def __init__(
        self,
        tokens: TokenSource,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        ssl_context: ssl.SSLContext | bool = True,
        wall_clock: Callable[[], float] = time.time,
        signer: RequestSigner | None = None,
        region: str | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        #: The configured region, when known (it names Huawei's batch endpoints).
        self.region = region
        self._tokens = tokens
        self._signer = signer
        #: Default: :data:`~bulkstop.limits.MAX_RESPONSE_BYTES`.
        self._max_body = MAX_RESPONSE_BYTES if max_response_bytes is None else max_response_bytes
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._pool_size = pool_size
        self._ssl = ssl_context
        self._wall_clock = wall_clock
        self._session: aiohttp.ClientSession | None = None
        self._routes: dict[str, _Route] = {}
        #: Per project, the last token the cloud answered 401 to (see :meth:`renew_auth`).
        self._rejected: dict[str, str] = {}

    async def list_page(self, project_id: str, query: ListQuery, marker: str | None) -> Reply:
        """``GET /servers/detail``; on success ``body`` is a :class:`ServerPage`."""
        route = await self._route(project_id)
        return await self._send(
            route,
            "GET",
            route.servers + "detail",
            params=_list_params(query, marker),
            parse=lambda document: _server_page(document, project_id),
        )

    async def get_server(self, project_id: str, server_id: str) -> Reply:
        """``GET /servers/{id}``; on success ``body`` is a :class:`Server`."""
        route = await self._route(project_id)
        return await self._send(
            route,
            "GET",
            route.servers + _path_segment(server_id),
            parse=lambda document: Server.from_api(document["server"], project_id=project_id),
        )

    async def action(
        self, project_id: str, server_id: str, action: Action, *, stop_type: str | None = None
    ) -> Reply:
        """``POST /servers/{id}/action``; any 2xx is success and its body is not read."""
        route = await self._route(project_id)
        body = _ACTION_BODIES.get((action, stop_type)) or action_body(action, stop_type)
        url = f"{route.servers}{_path_segment(server_id)}/action"
        return await self._send(route, "POST", url, data=body)

    async def request(
        self,
        project_id: str,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        parse: Callable[[Any], object] | None = None,
    ) -> Reply:
        """One request with the project's credentials to another API of the cloud.

        ``url`` must already be percent-encoded; it is sent as it is. Used by
        :class:`~bulkstop.cloud.batch.HttpBatch` for the batch and job APIs.
        """
        route = await self._route(project_id)
        return await self._send(route, method, url, data=data, parse=parse)

    async def renew_auth(self, project_id: str) -> None:
        """Replace the project's token after a 401 (once, however many requests saw the 401)."""
        await self._tokens.renew(project_id, rejected_token=self._rejected.get(project_id))

    async def aclose(self) -> None:
        """Close the HTTP session and the token source."""
        try:
            if self._session is not None:
                await self._session.close()
                self._session = None
        finally:
            await self._tokens.aclose()

    async def _route(self, project_id: str) -> _Route:
        access = await self._tokens.current(project_id)
        route = self._routes.get(project_id)
        if route is None or route.access is not access:
            route = self._routes[project_id] = _Route.of(access)
        return route

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool_size, ssl=self._ssl),
            timeout=self._timeout,
            # Keystone tokens are the only credentials; cookies would only cost time.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def _send(
        self,
        route: _Route,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        parse: Callable[[Any], object] | None = None,
    ) -> Reply:
        """One request; the reply says what happened, whatever happened."""
        session = self._session or self._open()
        headers = route.headers if data is None else route.post_headers
        if self._signer is not None:
            url = aksk.wire_url(url, (params or {}).items())
            params = None
            signed = self._signer.sign(route.access.project_id, method, url, data)
            headers = {**headers, **signed}
        try:
            # No redirects: one gated call must be one request, and a POST is never re-sent.
            async with session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                params=params,
                data=data,
                allow_redirects=False,
            ) as response:
                status = response.status
                request_id = _request_id(response.headers)
                payload = await _read_capped(response, self._max_body)
                if payload is None:
                    error = ErrorInfo(
                        code="response_too_large",
                        message=f"the answer is larger than {self._max_body} bytes",
                    )
                    return Reply(status=status, request_id=request_id, error=error)
                if 200 <= status < 300:
                    if parse is None:
                        return Reply(status=status, request_id=request_id)
                    return _parsed(status, request_id, payload, parse)
                return self._refusal(route, response, status, request_id, payload)
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise EndpointError(f"not a usable compute URL: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Reply(status=None, error=transport_error(exc))

    def _refusal(
        self,
        route: _Route,
        response: aiohttp.ClientResponse,
        status: int,
        request_id: str | None,
        payload: bytes,
    ) -> Reply:
        """The reply to a non-2xx answer: parsed error, request id, Retry-After."""
        parsed = parse_error_body(status, response.content_type, payload)
        if status == 401:
            self._rejected[route.access.project_id] = route.access.token
            if self._signer is not None:
                self._signer.refused(
                    route.access.project_id, parsed.error, response.headers.get("Date")
                )
        retry_after = response.headers.get("Retry-After") or parsed.retry_after
        return Reply(
            status=status,
            error=parsed.error,
            request_id=request_id,
            retry_after=parse_retry_after(retry_after, now=self._wall_clock()),
        )


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None (and nothing more read) once it is known to exceed ``cap`` bytes."""
    length = response.content_length
    if length == 0:  # an action's 202: nothing to wait for
        return b""
    if length is not None and length > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def transport_error(exc: BaseException) -> ErrorInfo:
    """The error of a request that got no usable HTTP answer (the reply's status is None)."""
    message = shorten(str(exc)) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch | ssl.SSLError):
        return ErrorInfo(code="tls_error", message=message)
    if isinstance(exc, TimeoutError):  # also aiohttp's connect and socket-read timeouts
        return ErrorInfo(code="timeout", message=message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorInfo(code="connect_error", message=message)
    if isinstance(exc, aiohttp.ClientResponseError):
        return ErrorInfo(code="invalid_response", message=message)
    return ErrorInfo(code="connection_reset", message=message)


def client_ssl(tls: TlsSettings) -> ssl.SSLContext | bool:
    """What aiohttp needs for the configured certificate checks; raises ConfigError if unusable."""
    if tls.verify is False:
        return False
    if tls.verify is True and tls.cert is None:
        return True
    try:
        context = ssl.create_default_context(
            cafile=tls.verify if isinstance(tls.verify, str) else None
        )
        if isinstance(tls.cert, tuple):
            context.load_cert_chain(*tls.cert)
        elif tls.cert is not None:
            context.load_cert_chain(tls.cert)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(
            f"cannot use the configured CA bundle or client certificate: {exc}"
        ) from exc
    return context


async def open_compute(
    settings: AuthSettings,
    *,
    request_timeout: float,
    pool_size: int,
    max_response_bytes: int | None = None,
) -> tuple[HttpCompute, list[str]]:
    """Configure, authenticate every project in scope, and return the client and those ids.

    Bad configuration or credentials fail here (ConfigError, AuthError, EndpointError: exit 3),
    before any compute call. The caller owns the client: ``await compute.aclose()``.
    """
    signing = await anyio.to_thread.run_sync(load_aksk, settings)
    if signing is not None:  # Huawei AK/SK: no Keystone, every request signed
        access = AkSkAccess(signing)
        compute = HttpCompute(
            access,
            request_timeout=request_timeout,
            pool_size=pool_size,
            signer=access,
            region=signing.region,
            max_response_bytes=max_response_bytes,
        )
        return compute, access.scope(settings)
    keystone = await bounded(
        request_timeout, lambda s: Keystone.load(s, timeout=request_timeout), settings
    )
    tokens = KeystoneTokens(keystone.authenticate, close=keystone.close, timeout=request_timeout)
    try:
        compute = HttpCompute(
            tokens,
            request_timeout=request_timeout,
            pool_size=pool_size,
            ssl_context=client_ssl(keystone.tls),
            region=keystone.region_name,
            max_response_bytes=max_response_bytes,
        )
    except BaseException:
        await tokens.aclose()
        raise
    try:
        scope = await authenticate_scope(settings, tokens)
    except BaseException:
        await compute.aclose()
        raise
    return compute, scope


def _list_params(query: ListQuery, marker: str | None) -> dict[str, str]:
    params = {
        name: ",".join(values)
        for name, values in (
            ("tags", query.tags),
            ("tags-any", query.tags_any),
            ("not-tags", query.not_tags),
            ("not-tags-any", query.not_tags_any),
        )
        if values
    }
    if query.all_tenants:
        params["all_tenants"] = "True"
    if query.limit is not None:
        params["limit"] = str(query.limit)
    if marker is not None:
        params["marker"] = marker
    return params


def _path_segment(server_id: str) -> str:
    """``server_id`` percent-encoded as one path segment (a UUID, the usual id, is as it is)."""
    if server_id.isascii() and server_id.replace("-", "").isalnum():
        return server_id  # quote() would return it unchanged, at several times the cost
    return quote(server_id, safe="")


def _request_id(headers: CIMultiDictProxy[str]) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _parsed(
    status: int, request_id: str | None, payload: bytes, parse: Callable[[Any], object]
) -> Reply:
    """A 2xx reply whose body is decoded by ``parse``, or an ``invalid_response`` error."""
    try:
        return Reply(status=status, request_id=request_id, body=parse(json.loads(payload)))
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as exc:
        # A proxy's HTML page or a truncated document behind a 200: keep the status, say why.
        what = "not JSON" if isinstance(exc, ValueError) else f"unexpected JSON ({exc!r})"
        sample = shorten(payload[:200].decode("utf-8", errors="replace"))
        return Reply(
            status=status,
            request_id=request_id,
            error=ErrorInfo(code="invalid_response", message=shorten(f"{what}: {sample}")),
        )


def _server_page(document: Any, project_id: str) -> ServerPage:
    """The page of a ``/servers/detail`` body; raises on a body of another shape.

    A record that is not an object fails the page; one without a usable id is dropped. The
    servers are built here, at once: a page kept as its raw records until used (to build them
    while the next page is on its way) cost 100-150 MB more at 100,000 servers over 20
    projects, and no time (benchmarks/README.md).
    """
    records = document["servers"]
    if not isinstance(records, list):
        raise TypeError("'servers' is not a list")
    servers: list[Server] = []
    dropped = 0
    for record in records:
        if not isinstance(record, dict):
            raise TypeError("a server record is not an object")
        try:
            servers.append(Server.from_api(record, project_id=project_id))
        except (ValueError, KeyError):
            dropped += 1  # no id, or not a UUID: never in a URL, never merged with another
    page = tuple(servers)
    return ServerPage(servers=page, next_marker=_next_marker(document, page), dropped=dropped)


def _next_marker(document: Mapping[str, Any], servers: tuple[Server, ...]) -> str | None:
    """The ``marker`` of the ``rel: next`` link, ``None`` on the last page.

    A next link without a marker falls back to the last id of the page, which is what Nova's
    marker is by definition.
    """
    links = document.get("servers_links")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("rel") == "next":
            href = link.get("href")
            query = urlsplit(href).query if isinstance(href, str) else ""
            markers = parse_qs(query).get("marker")
            if markers:
                return markers[-1]
            return servers[-1].id if servers else None
    return None
