"""Configuration of the mock cloud: the fleet, the wire dialect, and the faults to inject.

Everything is a frozen, keyword-only dataclass with named defaults, so a test states only what
it changes::

    MockConfig(servers=200, projects=2, seed=1,
               faults=Faults(rate_limit=50, server_error=Trigger(rate=0.05)),
               project_faults={"project-1": Faults(throttle="apig", rate_limit=5)})

``project_faults`` *replaces* the default :class:`Faults` for the projects it names (by id or
by name); it is not merged field by field.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

DEFAULT_SERVERS: Final = 100
DEFAULT_PROJECTS: Final = 2
DEFAULT_SEED: Final = 0
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 0
DEFAULT_REGION: Final = "RegionOne"
#: Nova's ``[api] max_limit``: a larger ``limit`` is clamped to it, not rejected.
DEFAULT_MAX_LIMIT: Final = 1000
#: Seconds from an accepted stop/start to the final state (0 = settled on the next read).
DEFAULT_TRANSITION_DELAY: Final = 1.0
#: Seconds a mock batch job runs (a guess: Huawei documents no figure).
DEFAULT_JOB_DURATION: Final = 2.0
#: Upstream Keystone's default token lifetime.
DEFAULT_TOKEN_LIFETIME: Final = 3600.0
DEFAULT_USERNAME: Final = "bulkstop"
DEFAULT_PASSWORD: Final = "mock-password"
DEFAULT_ADMIN_USERNAME: Final = "admin"
DEFAULT_ADMIN_PASSWORD: Final = "mock-admin-password"
DEFAULT_USER_DOMAIN: Final = "Default"
#: How long a ``slow`` response is held back: longer than any sane client timeout.
DEFAULT_SLOW_DELAY: Final = 60.0
DEFAULT_ERROR_STATUS: Final = 500
DEFAULT_HTML_STATUS: Final = 502
#: How long the server waits for in-flight (e.g. slow) requests when it stops.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 0.25

#: Error bodies in Nova's shape (``{"conflictingRequest": {...}}``) or Huawei's
#: (``{"error": {"code": "BMS.0039", ...}}``, gateway ``{"error_code": "APIG...."}``).
Flavour = Literal["nova", "huawei"]
#: How throttling is answered: 429 ``overLimit``, legacy 413 ``overLimit``, or Huawei's
#: API gateway 429 ``APIG.0308``.
ThrottleStyle = Literal["429", "413", "apig"]
#: ``Retry-After`` as delta-seconds, as an HTTP date, or not at all.
RetryAfterStyle = Literal["seconds", "date", "none"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """When a fault fires.

    ``rate`` is the probability per request, decided by a hash of (seed, fault, request key,
    attempt number), so the same run replays the same faults whatever the interleaving.
    ``servers`` maps a server id to K: the first K action requests (os-stop/os-start) at that
    server fire, whatever the rate.
    """

    rate: float = 0.0
    servers: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        if any(k < 1 for k in self.servers.values()):
            raise ValueError("a server's attempt count must be at least 1")

    @property
    def armed(self) -> bool:
        """True if this trigger can ever fire."""
        return self.rate > 0.0 or bool(self.servers)


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """Faults injected into compute requests of a project (Keystone is never faulted).

    Order in which a request meets them, like a request crossing a gateway to a cloud:
    rate limit (decided on arrival) → latency → connection reset → HTML error page →
    token check (``token_ttl``) → 5xx → the operation (``race`` happens here) → slow answer.
    """

    #: Fixed seconds added to every compute response.
    latency: float = 0.0
    #: Extra uniform [0, jitter) seconds, seeded.
    jitter: float = 0.0
    #: Requests per second allowed per project (token bucket); ``None`` = unlimited.
    rate_limit: float | None = None
    #: Bucket capacity; ``None`` = ``max(1, rate_limit)`` (one second's worth).
    burst: int | None = None
    throttle: ThrottleStyle = "429"
    retry_after: RetryAfterStyle = "seconds"
    #: Answer a 5xx (``error_status``) instead of serving the request.
    server_error: Trigger = field(default_factory=Trigger)
    error_status: int = DEFAULT_ERROR_STATUS
    #: Close the connection without an answer (the client sees a reset / disconnect).
    reset: Trigger = field(default_factory=Trigger)
    #: Answer a proxy's HTML error page (``html_status``) instead of JSON.
    html: Trigger = field(default_factory=Trigger)
    html_status: int = DEFAULT_HTML_STATUS
    #: Serve the request (a stop is applied) but hold the answer back ``slow_delay`` seconds.
    slow: Trigger = field(default_factory=Trigger)
    slow_delay: float = DEFAULT_SLOW_DELAY
    #: "Someone else" stops the server just before our os-stop arrives (it then gets a 409).
    race: Trigger = field(default_factory=Trigger)
    #: Tokens stop working this many seconds after issue, whatever ``expires_at`` says.
    token_ttl: float | None = None
    flavour: Flavour = "nova"
    # -- a hostile cloud (see :mod:`.faults`): answers no honest Nova gives ----------------
    #: ``Retry-After`` sent verbatim on every throttle and 5xx answer (e.g. ``"999999"``).
    retry_after_value: str | None = None
    #: Every listing page has a ``next`` link with a fresh marker, and an unknown marker
    #: starts the listing again: the same servers, page after page, for ever.
    list_treadmill: bool = False
    #: Each listing page also carries forged copies of its first record, with the ids
    #: :func:`.faults.forged_ids` makes (``..``, ``x/../<uuid>``, padded, empty, upper-case).
    forged_ids: bool = False
    #: Bytes of padding added to every listing page (a huge page).
    page_padding: int = 0
    #: Seconds between the bytes of every answer of the project (a dripping answer); the
    #: default faults' ``drip`` applies to Keystone's token answers too.
    drip: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be positive")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be at least 1")
        if min(self.latency, self.jitter, self.slow_delay, self.drip, self.page_padding) < 0:
            raise ValueError("latency, jitter, slow_delay, drip and page_padding must be >= 0")
        _check_choice("throttle", self.throttle, ThrottleStyle)
        _check_choice("retry_after", self.retry_after, RetryAfterStyle)
        _check_choice("flavour", self.flavour, Flavour)

    @property
    def armed(self) -> bool:
        """True if any fault can fire; when False the request path skips fault logic."""
        return (
            self.latency > 0
            or self.jitter > 0
            or self.rate_limit is not None
            or self.token_ttl is not None
            or self.hostile
            or any(
                t.armed for t in (self.server_error, self.reset, self.html, self.slow, self.race)
            )
        )

    @property
    def hostile(self) -> bool:
        """True if any of the hostile-cloud faults is on."""
        return (
            self.retry_after_value is not None
            or self.list_treadmill
            or self.forged_ids
            or self.page_padding > 0
            or self.drip > 0
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Build from JSON-like data: field names as keys; a trigger is a rate or a dict.

        >>> Faults.from_dict({"rate_limit": 5, "reset": 0.1,
        ...                   "server_error": {"servers": {"<id>": 2}}}).reset.rate
        0.1
        """
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(names)
        if unknown:
            raise ValueError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in _TRIGGER_FIELDS:
                values[key] = _trigger_from(value)
            else:
                values[key] = value
        return cls(**values)


_TRIGGER_FIELDS: Final = frozenset({"server_error", "reset", "html", "slow", "race"})


def _trigger_from(value: Any) -> Trigger:
    if isinstance(value, Trigger):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Trigger(rate=float(value))
    if isinstance(value, Mapping):
        servers = value.get("servers", {})
        if isinstance(servers, Sequence) and not isinstance(servers, str):
            servers = dict.fromkeys(servers, 1)
        return Trigger(rate=float(value.get("rate", 0.0)), servers=dict(servers))
    raise ValueError(f"a fault trigger is a rate or {{'rate', 'servers'}}, got {value!r}")


def _check_choice(name: str, value: str, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


#: Where an exact fleet comes from: a JSON file, or the already parsed document
#: (a list of servers, or ``{"projects": [...], "servers": [...]}``).
FleetSource = os.PathLike[str] | Sequence[Mapping[str, Any]] | Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class MockConfig:
    """Everything a :class:`~bulkstop.mockcloud.MockCloud` needs; all fields have defaults."""

    #: Size of the seeded fleet (ignored when ``fleet`` is given).
    servers: int = DEFAULT_SERVERS
    #: Number of projects the seeded fleet is spread over (ignored when ``fleet`` is given).
    projects: int = DEFAULT_PROJECTS
    #: Seeds the fleet and every fault decision.
    seed: int = DEFAULT_SEED
    #: An exact fleet instead of a seeded one (see :mod:`bulkstop.mockcloud.fleet`).
    fleet: FleetSource | None = None
    #: Share of the seeded fleet that are ERROR servers never scheduled to a host (Nova
    #: answers their ``os-stop`` 409 "is not ready"); the other servers stay as without.
    never_scheduled: float = 0.0
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    region: str = DEFAULT_REGION
    #: Huawei mode: actions answer 204 and responses carry ``X-Request-Id``.
    huawei: bool = False
    #: Huawei AK/SK mode: compute requests must be signed with :meth:`MockCloud.aksk_env`'s
    #: keys (tokens are refused), and the v1 batch API and its jobs are served
    #: (see :mod:`bulkstop.mockcloud.huawei`).
    aksk: bool = False
    #: Seeded fraction of the fleet tagged ``__type_baremetal`` (bare metal servers).
    baremetal_fraction: float = 0.0
    #: Seconds a batch job takes from submission to SUCCESS/FAIL.
    job_duration: float = DEFAULT_JOB_DURATION
    #: Seeded fraction of a batch's servers whose sub-job fails (BMS.0212).
    job_failure_rate: float = 0.0
    #: Seeded fraction of batch calls answered 202 ``Common.0024`` (flow limit) without a job.
    flow_limit_rate: float = 0.0
    #: Behave like a cloud without microversions: every request is served as 2.1, so tag
    #: filters are silently ignored and records carry no ``tags`` (the trap bulkstop guards).
    legacy: bool = False
    max_limit: int = DEFAULT_MAX_LIMIT
    transition_delay: float = DEFAULT_TRANSITION_DELAY
    #: Lifetime announced in ``expires_at`` (and enforced).
    token_lifetime: float = DEFAULT_TOKEN_LIFETIME
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    admin_username: str = DEFAULT_ADMIN_USERNAME
    admin_password: str = DEFAULT_ADMIN_PASSWORD
    user_domain: str = DEFAULT_USER_DOMAIN
    #: Faults of every project not named in ``project_faults``.
    faults: Faults = field(default_factory=Faults)
    #: Per-project replacement of ``faults``, keyed by project id or project name.
    project_faults: Mapping[str, Faults] = field(default_factory=dict)
    #: Monotonic clock for transitions, tokens, rate limits and journal times; tests pass a
    #: fake one to move time without sleeping.
    clock: Clock = time.monotonic
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT

    def __post_init__(self) -> None:
        if self.fleet is None and (self.servers < 0 or self.projects < 1):
            raise ValueError("need servers >= 0 and projects >= 1")
        if not 0.0 <= self.never_scheduled <= 1.0:
            raise ValueError("never_scheduled must be within [0, 1]")
        if self.max_limit < 1:
            raise ValueError("max_limit must be at least 1")
        if self.job_duration < 0 or not 0 <= self.job_failure_rate <= 1:
            raise ValueError("job_duration must be >= 0 and job_failure_rate within 0..1")
        if not 0 <= self.flow_limit_rate <= 1 or not 0 <= self.baremetal_fraction <= 1:
            raise ValueError("flow_limit_rate and baremetal_fraction must be within 0..1")
        if self.transition_delay < 0 or self.token_lifetime <= 0:
            raise ValueError("transition_delay must be >= 0 and token_lifetime > 0")
