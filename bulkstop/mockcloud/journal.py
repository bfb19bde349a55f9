"""The request journal: one small frozen record per request the mock cloud received.

Tests read it to prove properties of a client ("no stop outside the selector", "no server got
two accepted stops", "never more than R requests in a second for a project"). Appending a
record is the only bookkeeping on the hot path, so a record is small and built once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final

#: Values of :attr:`RequestRecord.kind`.
KIND_IDENTITY: Final = "identity"
KIND_LIST: Final = "list"
KIND_GET: Final = "get"
KIND_ACTION: Final = "action"
KIND_ADMIN: Final = "admin"
KIND_OTHER: Final = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One request as the mock saw it.

    ``t`` is the config clock (``time.monotonic`` unless faked) at arrival, ``wall`` the unix
    time at arrival. ``status`` is what the mock answered, or ``None`` when it dropped the
    connection (``reset`` fault) or was shut down first. For a ``slow`` answer, the record is
    written when the answer is decided, before it is held back. ``fault`` names the injected
    fault that shaped the answer (``throttle``, ``reset``, ``html``, ``server_error``,
    ``token_ttl``, ``race``, ``slow``), if any.
    """

    t: float
    wall: float
    method: str
    path: str
    kind: str
    status: int | None
    project_id: str | None = None
    server_id: str | None = None
    action: str | None = None
    fault: str | None = None
    request_id: str | None = None
    query: str = ""
    #: The servers a batch call named (Huawei mode's v1 batch API), in the order given.
    servers: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Answered with a 2xx."""
        return self.status is not None and 200 <= self.status < 300

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``GET /_mock/requests``)."""
        return asdict(self)


def accepted(records: Iterable[RequestRecord], action: str = "os-stop") -> Counter[str]:
    """How many times each server had ``action`` accepted (answered 2xx)."""
    return Counter(
        r.server_id
        for r in records
        if r.kind == KIND_ACTION and r.action == action and r.ok and r.server_id is not None
    )


def peak(
    records: Iterable[RequestRecord], *, project_id: str | None = None, window: float = 1.0
) -> int:
    """The most requests (of one project, if given) that arrived within any ``window`` seconds.

    Windows are half-open, ``[t, t + window)``: a client paced at exactly R per second peaks at R.
    """
    times = sorted(r.t for r in records if project_id is None or r.project_id == project_id)
    best = start = 0
    for end, arrival in enumerate(times):
        while arrival - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
