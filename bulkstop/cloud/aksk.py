"""Huawei Cloud AK/SK request signing (SDK-HMAC-SHA256), exactly as ``huaweicloudsdkcore`` signs.

Pure functions over the stdlib: no clock, no network. The algorithm (core ``signer/signer.py``)::

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n hex(sha256(body))
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(CanonicalRequest))
    Signature        = hex(HMAC-SHA256(key=SK, StringToSign))
    Authorization    = "SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b;c, Signature=..."

* CanonicalURI: the path unquoted, split on ``/``, each segment quoted (only ``~`` kept among
  the reserved characters), rejoined, with a trailing ``/`` added.
* CanonicalQuery: the (key, value) pairs sorted as raw strings, each side quoted the same way,
  joined with ``&``. The gateway checks the query it receives against the signature, so the
  query that goes on the wire must be exactly this string: :func:`wire_url` builds it, and the
  HTTP client must send it unchanged (``yarl.URL(url, encoded=True)``).
* Signed headers: ``host``, ``x-sdk-date`` and ``x-project-id`` always, ``x-security-token``
  with a temporary key, ``content-type`` when the request has a body. Each as
  ``name:value.strip()``.

The secret key and the security token live only in :class:`AkSkCredentials`, whose ``repr``
omits them, and in the headers this module returns for one request.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, unquote, urlsplit

#: The algorithm name in the string to sign and the Authorization header.
ALGORITHM: Final = "SDK-HMAC-SHA256"
#: Format of ``X-Sdk-Date`` (UTC, basic ISO 8601).
SDK_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
#: Headers the signer sets (names as sent).
HEADER_DATE: Final = "X-Sdk-Date"
HEADER_PROJECT: Final = "X-Project-Id"
HEADER_TOKEN: Final = "X-Security-Token"
#: sha256 of the empty body.
EMPTY_BODY_HASH: Final = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class AkSkCredentials:
    """A Huawei access key: permanent, or temporary with its security token.

    The secret key and the token never appear in ``repr`` (hence in no traceback or log).
    """

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise ValueError("an AK/SK credential needs both an access key and a secret key")


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """What one signed request carries: its exact URL and the headers to add."""

    url: str
    headers: Mapping[str, str]


def encode(value: str) -> str:
    """Percent-encode a path segment, query key or query value as the signer does."""
    return quote(value, safe="~")


def canonical_uri(path: str) -> str:
    """The CanonicalURI of a (possibly percent-encoded) path, trailing ``/`` added."""
    uri = "/".join(encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """The CanonicalQuery of (key, value) pairs (repeated keys allowed); also the wire query."""
    return "&".join(f"{encode(key)}={encode(value)}" for key, value in sorted(params))


def wire_url(base: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """``base`` (no query) with the canonical query appended, as it must go on the wire."""
    query = canonical_query(params)
    return f"{base}?{query}" if query else base


def sdk_date(now: datetime) -> str:
    """The ``X-Sdk-Date`` value for an aware (or UTC-naive) datetime."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.strftime(SDK_DATE_FORMAT)


def sign(
    credentials: AkSkCredentials,
    *,
    method: str,
    url: str,
    project_id: str,
    body: bytes = b"",
    content_type: str | None = None,
    now: datetime,
) -> Signed:
    """Sign one request whose final URL (query included, as on the wire) is ``url``.

    Returns the headers to add: ``Host``, ``X-Sdk-Date``, ``X-Project-Id``,
    ``X-Security-Token`` (temporary keys), ``Content-Type`` (when given) and ``Authorization``.
    """
    parts = urlsplit(url)
    headers = {"Host": parts.netloc, HEADER_DATE: sdk_date(now), HEADER_PROJECT: project_id}
    if credentials.security_token:
        headers[HEADER_TOKEN] = credentials.security_token
    if content_type:
        headers["Content-Type"] = content_type
    canonical = {name.lower(): value for name, value in headers.items()}
    names = sorted(canonical)
    request = canonical_request(
        method=method,
        path=parts.path,
        query=parts.query,
        headers=canonical,
        signed=names,
        body=body,
    )
    signature = signature_of(credentials.secret_key, headers[HEADER_DATE], request)
    headers["Authorization"] = (
        f"{ALGORITHM} Access={credentials.access_key}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return Signed(url=url, headers=headers)


def signature_of(secret_key: str, date: str, request: str) -> str:
    """The hex signature of a canonical request (also what a verifier recomputes)."""
    digest = hashlib.sha256(request.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    return hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed: Sequence[str],
    body: bytes,
) -> str:
    """The CanonicalRequest of a request as it is on the wire (``query`` without ``?``).

    ``headers`` are keyed by lower-case name; ``signed`` are the lower-case names to sign, sorted.
    A verifier calls this with what it received.
    """
    pairs = (item.partition("=") for item in query.split("&") if item)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query((unquote(key), unquote(value)) for key, _, value in pairs),
            "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed),
            ";".join(signed),
            hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_HASH,
        )
    )
