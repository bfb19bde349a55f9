"""Fault decisions: per-project token buckets and seeded, order-independent draws.

A probabilistic fault does not consume a shared random stream (whose outcome would depend on
how concurrent requests interleave). It hashes (seed, fault, request key, attempt number),
where the request key names what is asked (``<server>/os-stop``, ``<project>/list?...``) and
the attempt number counts requests with that key. So the third stop of server X fails in
every run with the same seed, however the client schedules its requests.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import itertools
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from . import bodies
from .config import Clock, Faults, Trigger

_HASH_SCALE: Final = float(1 << 64)
THROTTLE_MESSAGE: Final = "This request was rate-limited."


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; starts full.

    ``TokenBucket(10, 10)`` admits a burst of 10 and then 10 per second; ``TokenBucket(10, 1)``
    admits one request every 0.1 s.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if granted, else the seconds until one will be available."""
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled:
    """The answer to a throttled request."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class Injector:
    """Decides, per request, which faults fire. One per mock; :meth:`reset` replays a run."""

    def __init__(
        self, *, seed: int, default: Faults, overrides: Mapping[str, Faults], clock: Clock
    ) -> None:
        self._seed = seed
        self._default = default
        #: Faults by project id.
        self._overrides = dict(overrides)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._attempts: dict[str, int] = {}

    def reset(self) -> None:
        """Forget attempt counts and refill the buckets."""
        self._buckets.clear()
        self._attempts.clear()

    def faults(self, project_id: str | None) -> Faults:
        """The faults of a project (the default for unknown or no project)."""
        if project_id is None:
            return self._default
        return self._overrides.get(project_id, self._default)

    def attempt(self, key: str) -> int:
        """Count one more request with this key; returns its number (1-based)."""
        n = self._attempts.get(key, 0) + 1
        self._attempts[key] = n
        return n

    def draw(self, fault: str, key: str, attempt: int) -> float:
        """A uniform [0, 1) number fixed by (seed, fault, key, attempt)."""
        digest = hashlib.blake2b(
            f"{self._seed}|{fault}|{key}|{attempt}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / _HASH_SCALE

    def fires(
        self, fault: str, trigger: Trigger, key: str, attempt: int, server_id: str | None
    ) -> bool:
        """Whether ``trigger`` fires for this request.

        ``server_id`` is given only for action requests: named servers' first K actions fire.
        """
        if server_id is not None:
            first = trigger.servers.get(server_id)
            if first is not None and attempt <= first:
                return True
        return trigger.rate > 0.0 and self.draw(fault, key, attempt) < trigger.rate

    def latency(self, faults: Faults, key: str, attempt: int) -> float:
        """Seconds to delay this request: fixed latency plus seeded jitter."""
        if faults.jitter <= 0:
            return faults.latency
        return faults.latency + faults.jitter * self.draw("jitter", key, attempt)

    def throttle(self, project_id: str, faults: Faults, now: float) -> float:
        """Charge the project's bucket: 0.0 if admitted, else seconds until it would be."""
        if faults.rate_limit is None:
            return 0.0
        bucket = self._buckets.get(project_id)
        if bucket is None:
            burst = faults.burst or max(1, math.floor(faults.rate_limit))
            bucket = self._buckets[project_id] = TokenBucket(faults.rate_limit, burst, now)
        return bucket.take(now)


def throttled(faults: Faults, wait: float, request_id: str) -> Throttled:
    """The 429/413 answer for a request that must wait ``wait`` seconds."""
    seconds = max(1, math.ceil(wait))
    headers: dict[str, str] = {}
    if faults.retry_after_value is not None:
        headers["Retry-After"] = faults.retry_after_value
    elif faults.retry_after == "seconds":
        headers["Retry-After"] = str(seconds)
    elif faults.retry_after == "date":
        headers["Retry-After"] = email.utils.formatdate(time.time() + seconds, usegmt=True)
    limit = math.floor(faults.rate_limit or 0)
    if faults.throttle == "apig":
        message = (
            "The throttling threshold has been reached: policy user over ratelimit,"
            f"limit:{limit},time:1 second"
        )
        return Throttled(
            status=429,
            body=bodies.gateway(bodies.APIG_THROTTLED, message, request_id),
            headers=headers,
        )
    status = 413 if faults.throttle == "413" else 429
    body = bodies.nova(status, THROTTLE_MESSAGE, retryAfter=str(seconds))
    if status == 413:
        body["overLimit"]["details"] = f"Only {limit} request(s) can be made to * every second."
    return Throttled(status=status, body=body, headers=headers)


# -- a hostile cloud: answers an honest Nova never gives --------------------------------------

_TREADMILL: Final = itertools.count(1)


def forged_ids(server_id: str) -> tuple[str, ...]:
    """Ids a hostile listing gives copies of a record: path tricks, padding, empty, upper case."""
    return ("..", f"x/../{server_id}", f" {server_id}", "", server_id.upper())


def forge(record: str, tags: tuple[str, ...] = ()) -> list[str]:
    """Forged copies of one rendered server record (see :func:`forged_ids`).

    The upper-case copy also carries ``tags`` (e.g. the protect tag): a client must treat it
    as the same server, protection included.
    """
    document = json.loads(record)
    copies = []
    for forged in forged_ids(document["id"]):
        copy = dict(document, id=forged)
        if forged == document["id"].upper() and "tags" in copy:
            copy["tags"] = [*copy["tags"], *tags]
        copies.append(json.dumps(copy, separators=(",", ":")))
    return copies


def treadmill_marker() -> str:
    """A marker never seen before, for a ``next`` link that never ends."""
    return f"treadmill-{next(_TREADMILL)}"


def padded(body: str, size: int) -> str:
    """A JSON object's text with ``size`` bytes of padding in an extra key."""
    if size <= 0:
        return body
    return body[:-1] + ',"padding":"' + "x" * size + '"}'


def extra_headers(faults: Faults, status: int) -> dict[str, str]:
    """Headers a hostile cloud adds to an error answer (a ``Retry-After`` on a 5xx)."""
    if status >= 500 and faults.retry_after_value is not None:
        return {"Retry-After": faults.retry_after_value}
    return {}


async def drip(request: web.Request, response: web.Response, interval: float) -> web.StreamResponse:
    """Send ``response`` one byte every ``interval`` seconds (a dripping answer)."""
    body = response.body
    assert isinstance(body, bytes)
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    for index in range(len(body)):
        await stream.write(body[index : index + 1])
        await asyncio.sleep(interval)
    await stream.write_eof()
    return stream
