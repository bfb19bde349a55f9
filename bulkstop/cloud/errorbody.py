"""Readable errors out of whatever body a cloud, a gateway or a proxy answered with.

Pure functions, no I/O; none of them raises on any input. They read; what an answer *means*
(throttle? conflict?) is decided in :mod:`bulkstop.cloud.verdict`. The body shapes they know (see
``docs/cloud-api.md`` in the shared docs):

* Nova: one top-level key named after the fault,
  ``{"conflictingRequest": {"code": 409, "message": "..."}}``; a throttling ``overLimit`` fault
  may carry ``"retryAfter": "30"``.
* Keystone: ``{"error": {"code": 401, "title": "Unauthorized", "message": "..."}}``.
* Huawei BMS v1: ``{"error": {"code": "BMS.0040", "message": "..."}}``.
* Huawei API gateway: ``{"error_code": "APIG.0308", "error_msg": "...", "request_id": "..."}``.
* Anything else (HTML proxy pages, plain text, empty, truncated or non-UTF-8 bytes, JSON of
  another shape): the code is ``HTTP <status>`` and the message the first readable text.
"""

from __future__ import annotations

import email.utils
import html
import http
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final

from bulkstop.limits import MAX_MESSAGE_CHARS, MAX_SCAN_BYTES
from bulkstop.models import ErrorInfo
from bulkstop.redaction import redact

#: Fault code of Nova's throttling answer (413 on old clouds, 429 on newer ones).
OVER_LIMIT: Final = "overLimit"

_WHITESPACE: Final = re.compile(r"\s+")
_HTML_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HTML_NOISE: Final = re.compile(
    r"<(script|style|head)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_HTML_TAG: Final = re.compile(r"<[^>]*>")
_DELTA_SECONDS: Final = re.compile(r"[+-]?\d+(?:\.\d*)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorBody:
    """What an error body says: the error, and the raw ``retryAfter`` of an ``overLimit`` fault."""

    error: ErrorInfo
    retry_after: str | None = None


def parse_error_body(status: int | None, content_type: str | None, body: bytes) -> ErrorBody:
    """Parse an error answer of any shape; never raises.

    ``content_type`` is only a hint: clouds label JSON as ``text/plain`` and proxies label HTML
    as anything, so the body's first character decides as much as the header does.
    """
    text = _clean(body[:MAX_SCAN_BYTES].decode("utf-8", errors="replace"))
    fallback = _status_code(status)
    if not text:
        return ErrorBody(error=ErrorInfo(code=fallback, message=_phrase(status)))
    kind = (content_type or "").lower()
    if text.startswith(("{", "[")) or "json" in kind:
        parsed = _from_json(text, fallback)
        if parsed is not None:
            return parsed
    if text.startswith("<") or "html" in kind or "xml" in kind:
        message = _from_markup(text)
    else:
        message = shorten(text)
    return ErrorBody(error=ErrorInfo(code=fallback, message=message or _phrase(status)))


def parse_error(status: int | None, content_type: str | None, body: bytes) -> ErrorInfo:
    """The :class:`~bulkstop.models.ErrorInfo` of an error answer; never raises."""
    return parse_error_body(status, content_type, body).error


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value, or ``None`` if there is none.

    Accepts delta-seconds (``"30"``, ``"1.5"``) and HTTP dates (``"Wed, 21 Oct 2015 07:28:00
    GMT"``, compared with ``now``, a Unix time). The result is never negative: a date in the past
    means "now". Anything unreadable (or infinite) is ``None``.
    """
    if value is None:
        return None
    candidate = value.strip()
    if _DELTA_SECONDS.fullmatch(candidate):
        seconds = float(candidate)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(candidate)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are always GMT.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def shorten(text: str) -> str:
    """Collapse whitespace, drop control characters, mask credentials in URLs (see
    :func:`~bulkstop.redaction.redact`), cut to :data:`MAX_MESSAGE_CHARS` (``…``)."""
    flat = redact(_WHITESPACE.sub(" ", _clean(text)).strip())
    if len(flat) > MAX_MESSAGE_CHARS:
        return flat[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return flat


def _from_json(text: str, fallback: str) -> ErrorBody | None:
    """The error of a JSON body, or ``None`` if the text is not JSON at all."""
    try:
        document: Any = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict):
        known = _known_shape(document, fallback)
        if known is not None:
            return known
    # JSON of an unexpected shape: show it compactly rather than lose it.
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return ErrorBody(error=ErrorInfo(code=fallback, message=shorten(compact)))


def _known_shape(document: dict[str, Any], fallback: str) -> ErrorBody | None:
    """Match the documented error shapes; ``None`` when none fits."""
    if "error_code" in document or "error_msg" in document:  # Huawei API gateway
        return _error_body(document.get("error_code"), document.get("error_msg"), fallback)
    inner = document.get("error")
    if isinstance(inner, dict):  # Keystone (numeric code, title) and Huawei BMS v1 (string code)
        code = inner.get("code")
        if not isinstance(code, str):
            code = inner.get("title")
        return _error_body(code, inner.get("message"), fallback)
    for fault, detail in document.items():  # Nova: the fault name is the only key
        if isinstance(detail, dict) and "message" in detail:
            retry_after = detail.get("retryAfter") if fault == OVER_LIMIT else None
            return _error_body(
                fault,
                detail["message"],
                fallback,
                retry_after=None if retry_after is None else str(retry_after),
            )
    if "message" in document:  # the bare {"code": ..., "message": ...} some gateways use
        return _error_body(document.get("code"), document["message"], fallback)
    return None


def _error_body(
    code: object, message: object, fallback: str, *, retry_after: str | None = None
) -> ErrorBody:
    """An ErrorBody from loosely typed JSON values (codes may be ints, anything may be null)."""
    code_text = (shorten(str(code)) if code is not None else "") or fallback
    message_text = shorten(str(message)) if message is not None else ""
    return ErrorBody(
        error=ErrorInfo(code=code_text, message=message_text or code_text),
        retry_after=retry_after,
    )


def _from_markup(text: str) -> str:
    """The ``<title>`` of an HTML page, else its first visible text."""
    title = _HTML_TITLE.search(text)
    if title is not None:
        shown = shorten(html.unescape(_HTML_TAG.sub(" ", title.group(1))))
        if shown:
            return shown
    visible = _HTML_TAG.sub(" ", _HTML_NOISE.sub(" ", text))
    return shorten(html.unescape(visible))


def _clean(text: str) -> str:
    """Drop what would garble a terminal or a report (controls, NUL, BOM); trim the ends."""
    if text.isprintable():
        return text.strip()
    kept = (c for c in text if c.isprintable() or c in "\t\n\r ")
    return "".join(kept).strip()


def _status_code(status: int | None) -> str:
    return f"HTTP {status}" if status is not None else "invalid_response"


def _phrase(status: int | None) -> str:
    """The standard reason phrase of a status, for bodies that say nothing."""
    if status is None:
        return "empty body"
    try:
        return f"{http.HTTPStatus(status).phrase} (empty body)"
    except ValueError:
        return "empty body"
