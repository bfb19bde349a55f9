"""What a cloud's answer means: the one place that judges a :class:`~bulkstop.models.Reply`.

:func:`judge` turns a reply (its status, the error parsed from its body, its ``Retry-After``)
into a :class:`Verdict`; the gate, the resolver, the dispatchers and the ``--wait`` poller all
act on the verdict's :class:`Kind` and never look at a status code or an error code themselves.
:mod:`bulkstop.cloud.errorbody` only *reads* bodies into an :class:`~bulkstop.models.ErrorInfo`;
this module decides. Rules, first match wins:

==================================================  ==========================================
answer                                              kind
==================================================  ==========================================
a code in :data:`CODE_TABLE` (any status)           the table's kind (Huawei codes, below)
no answer (timeout, reset), 5xx                     ``TRANSIENT`` (retry; ``Retry-After`` kept)
429, 413 ``overLimit``                              ``THROTTLED`` (delay = clamped Retry-After)
2xx without an error                                ``ACCEPTED``
2xx whose body was unreadable                       ``FAILED`` ("invalid response")
401                                                 ``AUTH_EXPIRED`` (renew the token once)
403                                                 ``FORBIDDEN``
404                                                 ``NOT_FOUND``
409 "Instance <id> is not ready"                    ``SKIPPED`` ("not ready: never scheduled")
409 (any other)                                     ``REREAD`` (find out the server's state)
anything else                                       ``FAILED``
==================================================  ==========================================

Nova answers ``os-stop`` on a server that was never scheduled (ERROR, no host) with 409 "Instance
<id> is not ready" (``check_instance_host`` in nova/compute/api.py): no state will make it
stoppable, so it is ``skipped``, not a failure that trips ``max_errors``.

Huawei codes mean the same whichever API brought them, so they live here as data
(:data:`CODE_TABLE`; sources in ``docs/huawei-cloud.md`` of the shared docs, section 2 "Error
codes" and section 3). Add a code by adding a row; nothing else changes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from bulkstop.cloud.errorbody import OVER_LIMIT
from bulkstop.errors import AuthError, CloudAccessError, EndpointError
from bulkstop.limits import MAX_RETRY_AFTER
from bulkstop.models import Reply, SubJob

__all__ = [
    "CODE_TABLE",
    "NOT_READY",
    "CodeRule",
    "Kind",
    "Verdict",
    "clamp_delay",
    "judge",
    "read_failure",
]

#: Reason of the "never scheduled" rule (Nova's 409 "Instance <id> is not ready").
NOT_READY: Final = "not ready: never scheduled"

_NOT_READY_MESSAGE: Final = re.compile(r"\bis not ready\b", re.IGNORECASE)


class Kind(enum.Enum):
    """What an answer means for the request that got it."""

    #: Done as asked (any 2xx that is not a throttle in disguise).
    ACCEPTED = "accepted"
    #: The server already is where the action would take it (Huawei BMS.0039).
    ALREADY_DONE = "already_done"
    #: "Not in a state to do that": read the server to learn which state (409, BMS.0035-0037).
    REREAD = "reread"
    #: The action is not allowed on this server and no wait will change that (locked, never
    #: scheduled): the server is ``skipped``, which is not a failure.
    SKIPPED = "skipped"
    #: The cloud does not know the server.
    NOT_FOUND = "not_found"
    #: Slow down: wait (``delay``, or back off) and send again; not a failed attempt.
    THROTTLED = "throttled"
    #: No answer, or a server-side error: the request may have been carried out; retry.
    TRANSIENT = "transient"
    #: The token was refused: renew it and retry once.
    AUTH_EXPIRED = "auth_expired"
    #: The credentials are good but not allowed to do this.
    FORBIDDEN = "forbidden"
    #: Refused for good.
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What one reply means.

    ``reason`` is a short phrase for the report (``None`` when the kind says it all);
    ``delay`` is the cloud's ``Retry-After`` clamped to :data:`MAX_RETRY_AFTER`, for
    ``THROTTLED`` and ``TRANSIENT`` (``None``: the cloud named no delay, back off).
    """

    kind: Kind
    reason: str | None = None
    delay: float | None = None

    @property
    def is_auth(self) -> bool:
        """The credentials, not the request, are the problem (exit 3 when a read fails so)."""
        return self.kind in (Kind.AUTH_EXPIRED, Kind.FORBIDDEN)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRule:
    """How to judge a cloud error code, whatever HTTP status it came with."""

    kind: Kind
    reason: str


#: Cloud error codes with a meaning of their own (Huawei BMS/ECS/API gateway), by code.
#: Source: ``docs/huawei-cloud.md`` (shared docs), section 2 "Error codes" and section 3;
#: Huawei notes that "HTTP codes may be inaccurate", hence the table ignores the status. The
#: rows hold for every action bulkstop sends (BMS.0039 can only answer a stop); a code whose
#: meaning differs between stop and start would need the action in :class:`CodeRule`.
CODE_TABLE: Final[Mapping[str, CodeRule]] = MappingProxyType(
    {
        "BMS.0039": CodeRule(kind=Kind.ALREADY_DONE, reason="already stopped (BMS.0039)"),
        "Ecs.0605": CodeRule(kind=Kind.SKIPPED, reason="locked (Ecs.0605)"),
        "BMS.0035": CodeRule(kind=Kind.REREAD, reason="powering on (BMS.0035)"),
        "BMS.0036": CodeRule(kind=Kind.REREAD, reason="powering off (BMS.0036)"),
        "BMS.0037": CodeRule(kind=Kind.REREAD, reason="rebooting (BMS.0037)"),
        "Ecs.0100": CodeRule(kind=Kind.REREAD, reason="wrong status (Ecs.0100)"),
        "BMS.0040": CodeRule(kind=Kind.NOT_FOUND, reason="does not exist (BMS.0040)"),
        "Ecs.0114": CodeRule(kind=Kind.NOT_FOUND, reason="does not exist (Ecs.0114)"),
        "Ecs.0614": CodeRule(kind=Kind.NOT_FOUND, reason="does not exist (Ecs.0614)"),
        "APIG.0308": CodeRule(kind=Kind.THROTTLED, reason="throttled (APIG.0308)"),
        "APIGW.0308": CodeRule(kind=Kind.THROTTLED, reason="throttled (APIGW.0308)"),
        "Common.1503": CodeRule(kind=Kind.THROTTLED, reason="throttled (Common.1503)"),
        # Listed as an HTTP 202: a 2xx that is no success.
        "Common.0024": CodeRule(kind=Kind.THROTTLED, reason="flow limit exceeded (Common.0024)"),
    }
)


def clamp_delay(retry_after: float | None) -> float | None:
    """The cloud's ``Retry-After`` in [0, :data:`MAX_RETRY_AFTER`], or None if it named none.

    The one clamp: the request's own wait and the project's hold both use the verdict's delay.
    """
    if retry_after is None:
        return None
    return min(max(retry_after, 0.0), MAX_RETRY_AFTER)


def judge(reply: Reply) -> Verdict:
    """What ``reply`` means (see the module's table). Pure; never raises."""
    status, error = reply.status, reply.error
    rule = CODE_TABLE.get(error.code) if error is not None else None
    if rule is not None:
        delay = clamp_delay(reply.retry_after) if rule.kind is Kind.THROTTLED else None
        return Verdict(kind=rule.kind, reason=rule.reason, delay=delay)
    if status is None or status >= 500:
        return Verdict(kind=Kind.TRANSIENT, delay=clamp_delay(reply.retry_after))
    if status == 429 or (status == 413 and error is not None and error.code == OVER_LIMIT):
        return Verdict(kind=Kind.THROTTLED, delay=clamp_delay(reply.retry_after))
    if 200 <= status < 300:
        if error is None:
            return Verdict(kind=Kind.ACCEPTED)
        return Verdict(kind=Kind.FAILED, reason="invalid response")
    if status == 401:
        return Verdict(kind=Kind.AUTH_EXPIRED)
    if status == 403:
        return Verdict(kind=Kind.FORBIDDEN)
    if status == 404:
        return Verdict(kind=Kind.NOT_FOUND)
    if status == 409:
        if error is not None and _NOT_READY_MESSAGE.search(error.message):
            return Verdict(kind=Kind.SKIPPED, reason=NOT_READY)
        return Verdict(kind=Kind.REREAD)
    return Verdict(kind=Kind.FAILED)


def judge_sub_job(sub: SubJob) -> Verdict:
    """What one server's sub-job of an ended batch job means: ``SUCCESS`` is ``ACCEPTED``
    (done); a failure is its code's row of :data:`CODE_TABLE` (BMS.0039 already stopped,
    Ecs.0605 locked, ...), else ``FAILED``. Pure; never raises."""
    if sub.status == "SUCCESS":
        return Verdict(kind=Kind.ACCEPTED)
    rule = CODE_TABLE.get(sub.error.code) if sub.error is not None else None
    if rule is None:
        return Verdict(kind=Kind.FAILED)
    return Verdict(kind=rule.kind, reason=rule.reason)


def read_failure(project_id: str, reply: Reply, *, what: str) -> CloudAccessError:
    """The run-wide error for a read (listing, GET) the cloud did not answer usably.

    Refused credentials are an :class:`~bulkstop.errors.AuthError`; anything else means the
    endpoint cannot be used: :class:`~bulkstop.errors.EndpointError`.
    """
    error = reply.error
    detail = f"{error.code}: {error.message}" if error else f"HTTP {reply.status}"
    message = f"project {project_id}: could not {what} ({detail})"
    if judge(reply).is_auth:
        return AuthError(message)
    return EndpointError(message)
