"""Records that flow through bulkstop: selector → targets → plan → execution → report.

All records are frozen, slotted dataclasses with keyword-only constructors; they carry no
behaviour beyond small derived properties, so any stage can be tested from plain values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from bulkstop.identifiers import record_project_id, record_server_id

#: vm_states from which Nova accepts os-stop.
STOPPABLE_VM_STATES: Final = frozenset({"active", "error"})
#: vm_state of a server that is already off.
STOPPED_VM_STATE: Final = "stopped"
#: task_state of a server that is being stopped right now.
POWERING_OFF: Final = "powering-off"
#: task_state of a server that is being started right now.
POWERING_ON: Final = "powering-on"
#: Why a run stopped dispatching when SIGINT/SIGTERM arrived (``halted_by`` in the report).
INTERRUPTED: Final = "interrupted"
#: The ``schema`` of a JSON report. Here, not in the report writer, because the ID-file reader
#: (an earlier stage) recognises reports too.
REPORT_SCHEMA: Final = "bulkstop/report/v1"


class Action(enum.StrEnum):
    """A server action bulkstop can fan out (the key of the action body)."""

    STOP = "os-stop"
    START = "os-start"

    @property
    def verb(self) -> str:
        """``stop`` or ``start``: what the report calls this action."""
        return "stop" if self is Action.STOP else "start"

    @property
    def past(self) -> str:
        """``stopped`` or ``started``: "N servers would be ..."."""
        return "stopped" if self is Action.STOP else "started"


class Outcome(enum.StrEnum):
    """The fate of one selected server; every server in a report has exactly one."""

    STOPPED = "stopped"  #: accepted and seen SHUTOFF (--wait)
    STARTED = "started"  #: accepted and seen ACTIVE (start --wait)
    ACCEPTED = "accepted"  #: the cloud accepted the request (2xx), or was already doing it
    ALREADY_STOPPED = "already_stopped"  #: nothing to do; no request was needed
    ALREADY_STARTED = "already_started"  #: nothing to do for a start
    SKIPPED = "skipped"  #: in a state where the action is not allowed (locked, paused, ...)
    EXCLUDED = "excluded"  #: matched, but an exclusion/protection tag keeps it out
    NOT_FOUND = "not_found"  #: the cloud does not know this id (404, or not in the listing)
    FAILED = "failed"  #: the cloud refused, or retries ran out
    NOT_ATTEMPTED = "not_attempted"  #: a rail, a deadline or an interruption stopped us first
    PLANNED = "planned"  #: dry run: would have been sent

    @property
    def is_failure(self) -> bool:
        """True for the outcomes that make the run exit 1."""
        return self in (Outcome.FAILED, Outcome.NOT_FOUND)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """A readable error: a code (HTTP fault name, Huawei code, ``timeout``, ...) and a message."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The ``error`` object of the report."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """One server as the compute API describes it (the fields bulkstop needs)."""

    id: str
    project_id: str
    name: str = ""
    status: str = ""
    vm_state: str | None = None
    task_state: str | None = None
    power_state: int | None = None
    locked: bool = False
    #: ``None`` when the record had no ``tags`` key (microversion < 2.26 or a cloud that drops it).
    tags: frozenset[str] | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, record: Mapping[str, Any], *, project_id: str | None = None) -> Server:
        """Build from a Nova ``/servers/detail`` record; tolerant of missing optional fields.

        Raises :class:`ValueError` when the id is not exactly a UUID or the project id is not
        a project id (see :func:`~bulkstop.identifiers.record_server_id`): such a record is
        not a server bulkstop may send anything for.
        """
        server_id = record_server_id(record["id"])
        project = record_project_id(record.get("tenant_id") or project_id)
        tags = record.get("tags")
        metadata = record.get("metadata")
        power = record.get("OS-EXT-STS:power_state")
        # Positional, in field order (see _assemble); a listing builds 10,000 before any stop.
        return _assemble(
            cls,
            server_id,
            project,
            str(record.get("name") or ""),
            str(record.get("status") or ""),
            record.get("OS-EXT-STS:vm_state"),
            record.get("OS-EXT-STS:task_state"),
            power if isinstance(power, int) else None,
            bool(record.get("locked", False)),
            frozenset(map(str, tags)) if isinstance(tags, list) else None,
            {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
        )

    @property
    def is_stopped(self) -> bool:
        """Off already: vm_state ``stopped`` or status ``SHUTOFF``."""
        return self.vm_state == STOPPED_VM_STATE or self.status == "SHUTOFF"


_new: Final = object.__new__
#: The slot setters of Server's fields, in field order.
_SERVER_SLOTS: Final = tuple(getattr(Server, f.name).__set__ for f in fields(Server))


def _assemble(cls: type[Server], *values: Any) -> Server:
    """A :class:`Server` from every field's value in field order, as ``cls(**kw)`` makes it.

    A frozen dataclass's ``__init__`` sets each field through a slow generic path (keyword
    parsing, then ``object.__setattr__`` looked up per field); setting the slots directly is
    about 2x cheaper, for the 10,000 servers a listing builds before the first stop. Server has no
    ``__post_init__``; a test checks that both ways give equal servers.
    """
    server = _new(cls)
    for put, value in zip(_SERVER_SLOTS, values, strict=True):
        put(server, value)
    return server


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What one compute API call came back with, as the seam reports it.

    ``status`` is ``None`` when no HTTP answer arrived (timeout, reset, refused connection);
    ``error`` then says which. ``retry_after`` is the server's ``Retry-After`` in seconds.
    """

    status: int | None
    error: ErrorInfo | None = None
    request_id: str | None = None
    retry_after: float | None = None
    body: Any = None

    @property
    def ok(self) -> bool:
        """Any 2xx."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPage:
    """One page of a server listing, and the marker of the next page if there is one."""

    servers: tuple[Server, ...]
    next_marker: str | None
    #: Records of the page that were not servers bulkstop can act on (an id that is not
    #: exactly a UUID): dropped, never merged with another record, and counted.
    dropped: int = 0

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of ``servers``, in order."""
        return tuple(server.id for server in self.servers)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    """Server-side filters of a listing. Tag filters need microversion 2.26."""

    tags: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    not_tags_any: tuple[str, ...] = ()
    all_tenants: bool = False
    limit: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerResult:
    """One line of the report: what happened to one server."""

    id: str
    project_id: str
    name: str = ""
    outcome: Outcome
    http_status: int | None = None
    attempts: int = 0
    error: ErrorInfo | None = None
    reason: str | None = None
    request_id: str | None = None
    #: Seconds from the first request sent for this server to its final answer (None if none).
    elapsed: float | None = None
    #: The batch job that carried the action out (Huawei's batch API), or None.
    job_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubJob:
    """One server's part of a batch job (Huawei's ``entities.sub_jobs[]``)."""

    #: ``entities.server_id``; ``None`` when the cloud did not say which server.
    server_id: str | None
    #: ``INIT``, ``RUNNING``, ``SUCCESS`` or ``FAIL`` (other values kept as sent).
    status: str
    #: ``{error_code, fail_reason}`` of a failed sub-job.
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A batch job as ``GET /v1/{project_id}/jobs/{job_id}`` describes it."""

    job_id: str
    status: str
    #: The job's own ``{error_code, fail_reason}`` when it failed.
    error: ErrorInfo | None = None
    sub_jobs: tuple[SubJob, ...] = ()

    @property
    def ended(self) -> bool:
        """``SUCCESS`` or ``FAIL``: nothing will change any more."""
        return self.status in JOB_ENDED


#: Job and sub-job statuses after which nothing changes.
JOB_ENDED: Final = frozenset({"SUCCESS", "FAIL"})
