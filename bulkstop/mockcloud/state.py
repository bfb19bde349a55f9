"""Live state of the mock fleet: servers, their transitions, and the listing order.

A stop does not start a timer. It stores *when* the transition completes; every read of the
server settles it lazily against the injectable clock. So 100,000 stopping servers cost
nothing, and a test moves a fake clock instead of sleeping.

Preconditions follow Nova's ``compute/api.py`` decorators, in their order:
``check_instance_lock`` (admins bypass it) → ``check_instance_host`` →
``check_instance_state(vm_state=..., task_state=[None])``.

Why one module of ~440 lines: every transition of a server and its preconditions are in one
place, in Nova's order, so the lazy settling against the clock cannot skip a rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from .config import Clock
from .records import DEFAULT_FLAVOR, TAGS_VERSION, View, server_record

#: Nova's power_state values.
NOSTATE: Final = 0
RUNNING: Final = 1
PAUSED: Final = 3
SHUTDOWN: Final = 4

#: Nova's ``status`` for each ``vm_state`` when no task state overrides it. A server that is
#: powering off still reports ``ACTIVE``.
STATUS_BY_VM_STATE: Final[Mapping[str, str]] = MappingProxyType(
    {
        "active": "ACTIVE",
        "building": "BUILD",
        "stopped": "SHUTOFF",
        "error": "ERROR",
        "paused": "PAUSED",
        "suspended": "SUSPENDED",
        "shelved": "SHELVED",
        "shelved_offloaded": "SHELVED_OFFLOADED",
        "rescued": "RESCUE",
        "resized": "VERIFY_RESIZE",
        "soft-delete": "SOFT_DELETED",
        "deleted": "DELETED",
    }
)
#: Every status Nova can report, for validating the ``status`` filter.
KNOWN_STATUSES: Final = frozenset(STATUS_BY_VM_STATE.values()) | {
    "REBOOT",
    "HARD_REBOOT",
    "PASSWORD",
    "REBUILD",
    "MIGRATING",
    "RESIZE",
    "REVERT_RESIZE",
    "UNKNOWN",
}
#: The power state a server in a vm_state has unless told otherwise.
POWER_BY_VM_STATE: Final[Mapping[str, int]] = MappingProxyType(
    {
        "active": RUNNING,
        "stopped": SHUTDOWN,
        "paused": PAUSED,
        "suspended": SHUTDOWN,
        "shelved": SHUTDOWN,
        "rescued": RUNNING,
        "resized": RUNNING,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRule:
    """What Nova requires of a server for an action, and what the action does to it."""

    verb: str
    vm_states: frozenset[str]
    task_state: str
    final_vm_state: str
    final_power_state: int


ACTIONS: Final[Mapping[str, ActionRule]] = MappingProxyType(
    {
        "os-stop": ActionRule(
            verb="stop",
            vm_states=frozenset({"active", "error"}),
            task_state="powering-off",
            final_vm_state="stopped",
            final_power_state=SHUTDOWN,
        ),
        "os-start": ActionRule(
            verb="start",
            vm_states=frozenset({"stopped"}),
            task_state="powering-on",
            final_vm_state="active",
            final_power_state=RUNNING,
        ),
    }
)

_JSON_SEPARATORS: Final = (",", ":")
#: The view bulkstop's own client asks for (2.26, a member): the default of :meth:`detail`.
DEFAULT_VIEW: Final = View(version=TAGS_VERSION)


def iso_time(unix: float) -> str:
    """Nova's timestamp format: ``2024-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class Project:
    """A Keystone project (32 lowercase hex id, like Keystone's)."""

    id: str
    name: str


class MockServer:
    """One server's mutable state, and its Nova detail record.

    State fields are properties: reading one settles a pending transition first; assigning one
    invalidates the cached record. Assign ``tags``/``metadata`` whole (they are immutable views).
    """

    __slots__ = (
        "_clock",
        "_detail",
        "_due",
        "_locked",
        "_metadata",
        "_power_state",
        "_rule",
        "_summary",
        "_tags",
        "_task_state",
        "_views",
        "_vm_state",
        "created",
        "flavor_id",
        "host",
        "id",
        "name",
        "number",
        "project_id",
        "updated",
        "user_id",
    )

    def __init__(
        self,
        *,
        id: str,
        name: str,
        project_id: str,
        clock: Clock,
        vm_state: str = "active",
        task_state: str | None = None,
        power_state: int | None = None,
        locked: bool = False,
        tags: Iterable[str] = (),
        metadata: Mapping[str, str] | None = None,
        user_id: str = "",
        host: str | None = "compute-0",
        created: str = "2024-01-01T00:00:00Z",
        updated: str | None = None,
        number: int = 0,
        flavor_id: str = DEFAULT_FLAVOR,
    ) -> None:
        self.id = id
        self.name = name
        self.project_id = project_id
        self.user_id = user_id
        #: ``None`` models a server that was never scheduled: Nova answers "is not ready".
        self.host = host
        self.created = created
        #: The flavor (an id of :data:`~bulkstop.mockcloud.records.FLAVORS`).
        self.flavor_id = flavor_id
        self.updated = updated or created
        #: Position in the generated fleet; feeds the instance name and fixed IP.
        self.number = number
        self._clock = clock
        self._vm_state = vm_state
        self._task_state = task_state
        self._power_state = (
            power_state if power_state is not None else POWER_BY_VM_STATE.get(vm_state, NOSTATE)
        )
        self._locked = locked
        self._tags = frozenset(tags)
        self._metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self._due: float | None = None
        self._rule: ActionRule | None = None
        self._detail: str | None = None
        self._views: dict[View, str] | None = None
        self._summary: str | None = None

    def __repr__(self) -> str:
        return (
            f"MockServer(id={self.id!r}, name={self.name!r}, status={self.status!r}, "
            f"task_state={self.task_state!r})"
        )

    # -- state ---------------------------------------------------------------------------

    def _settle(self) -> None:
        due = self._due
        if due is None:
            return
        now = self._clock()
        if now < due:
            return
        rule = self._rule
        assert rule is not None  # set together with _due
        self._vm_state = rule.final_vm_state
        self._power_state = rule.final_power_state
        self._task_state = None
        self._due = self._rule = None
        self.updated = iso_time(time.time() - (now - due))
        self._changed()

    def _changed(self) -> None:
        self._detail = self._summary = self._views = None

    @property
    def vm_state(self) -> str:
        """``OS-EXT-STS:vm_state`` (``active``, ``stopped``, ``error``, ...)."""
        self._settle()
        return self._vm_state

    @property
    def task_state(self) -> str | None:
        """``OS-EXT-STS:task_state`` (``None``, ``powering-off``, ``powering-on``)."""
        self._settle()
        return self._task_state

    @property
    def power_state(self) -> int:
        """``OS-EXT-STS:power_state`` (1 running, 4 shutdown, ...)."""
        self._settle()
        return self._power_state

    @property
    def status(self) -> str:
        """Nova's ``status``, derived from the vm_state."""
        return STATUS_BY_VM_STATE.get(self.vm_state, "UNKNOWN")

    @property
    def transition_due(self) -> float | None:
        """Clock time at which the pending stop/start completes, if one is pending."""
        self._settle()
        return self._due

    @property
    def locked(self) -> bool:
        """Locked servers refuse actions from non-admins."""
        return self._locked

    @locked.setter
    def locked(self, value: bool) -> None:
        self._locked = value
        self._changed()

    @property
    def tags(self) -> frozenset[str]:
        """The server's tags."""
        return self._tags

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self._tags = frozenset(value)
        self._changed()

    @property
    def metadata(self) -> Mapping[str, str]:
        """The server's metadata (read-only view; assign a new mapping to change it)."""
        return self._metadata

    @metadata.setter
    def metadata(self, value: Mapping[str, str]) -> None:
        self._metadata = MappingProxyType(dict(value))
        self._changed()

    def set_state(
        self, vm_state: str, *, task_state: str | None = None, power_state: int | None = None
    ) -> None:
        """Force a state (cancelling any pending transition), as an operator or a test would."""
        self._vm_state = vm_state
        self._task_state = task_state
        self._power_state = (
            power_state if power_state is not None else POWER_BY_VM_STATE.get(vm_state, NOSTATE)
        )
        self._due = self._rule = None
        self.updated = iso_time(time.time())
        self._changed()

    def refusal(self, action: str, *, is_admin: bool) -> str | None:
        """Nova's 409 message if ``action`` is not allowed now, else ``None``.

        Raises KeyError for an action other than ``os-stop``/``os-start``.
        """
        rule = ACTIONS[action]
        self._settle()
        if self._locked and not is_admin:
            return f"Instance {self.id} is locked"
        if not self.host:
            return f"Instance {self.id} is not ready"
        if self._vm_state not in rule.vm_states:
            return (
                f"Cannot '{rule.verb}' instance {self.id} while it is in vm_state {self._vm_state}"
            )
        if self._task_state is not None:
            return (
                f"Cannot '{rule.verb}' instance {self.id} "
                f"while it is in task_state {self._task_state}"
            )
        return None

    def begin(self, action: str, delay: float) -> None:
        """Accept ``action``: set its task state now, complete it ``delay`` seconds later.

        Preconditions are the caller's business (see :meth:`refusal`).
        """
        rule = ACTIONS[action]
        self._settle()
        self._task_state = rule.task_state
        self._rule = rule
        self._due = self._clock() + delay
        self.updated = iso_time(time.time())
        self._changed()

    # -- rendering -------------------------------------------------------------------------

    def detail(self, base_url: str, view: View = DEFAULT_VIEW) -> dict[str, Any]:
        """The Nova record (default: ``GET /servers/detail`` at 2.26, non-admin view)."""
        self._settle()
        return server_record(self, base_url, view)

    def detail_json(self, base_url: str, view: View = DEFAULT_VIEW) -> str:
        """:meth:`detail` as compact JSON, cached per view until the server changes."""
        self._settle()
        if view is DEFAULT_VIEW:  # the view bulkstop lists with: its own slot, no hashing
            if self._detail is None:
                self._detail = self._dumps(base_url, view)
            return self._detail
        views = self._views
        if views is None:
            views = self._views = {}
        text = views.get(view)
        if text is None:
            text = views[view] = self._dumps(base_url, view)
        return text

    def _dumps(self, base_url: str, view: View) -> str:
        return json.dumps(server_record(self, base_url, view), separators=_JSON_SEPARATORS)

    def summary_json(self, base_url: str) -> str:
        """The record of ``GET /servers`` (id, name, links) as compact JSON, cached."""
        if self._summary is None:
            record = {"id": self.id, "links": self.links(base_url), "name": self.name}
            self._summary = json.dumps(record, separators=_JSON_SEPARATORS)
        return self._summary

    def links(self, base_url: str) -> list[dict[str, str]]:
        """Nova's self and bookmark links of this server."""
        return [
            {"href": f"{base_url}/v2.1/{self.project_id}/servers/{self.id}", "rel": "self"},
            {"href": f"{base_url}/{self.project_id}/servers/{self.id}", "rel": "bookmark"},
        ]

    def to_fleet(self) -> dict[str, Any]:
        """This server in the fleet file format (loadable by :func:`fleet.load_fleet`)."""
        self._settle()
        return {
            "id": self.id,
            "name": self.name,
            "project_id": self.project_id,
            "tags": sorted(self._tags),
            "status": self.status,
            "vm_state": self._vm_state,
            "task_state": self._task_state,
            "power_state": self._power_state,
            "locked": self._locked,
            "metadata": dict(self._metadata),
            "host": self.host,
            "flavor": self.flavor_id,
            "created": self.created,
            "updated": self.updated,
        }


class Fleet:
    """All servers, plus the listing order per project and across projects.

    Listing order is fixed (Nova's default, newest first, is how the fleet is generated);
    a marker's position is a dict lookup, so a page costs O(page), not O(fleet).
    """

    def __init__(self, projects: Sequence[Project], servers: Iterable[MockServer]) -> None:
        self.projects: list[Project] = []
        #: Live servers by id (the dict object survives :meth:`replace`).
        self.servers: dict[str, MockServer] = {}
        self._order: dict[str | None, list[str]] = {}
        self._position: dict[str | None, dict[str, int]] = {}
        self.replace(projects, servers)

    def replace(self, projects: Sequence[Project], servers: Iterable[MockServer]) -> None:
        """Swap in a whole new fleet, keeping the same ``servers`` dict object."""
        self.projects = list(projects)
        known = {p.id for p in self.projects}
        self.servers.clear()
        self._order = {p.id: [] for p in self.projects}
        self._order[None] = []
        for server in servers:
            if server.id in self.servers:
                raise ValueError(f"duplicate server id {server.id}")
            if server.project_id not in known:
                raise ValueError(f"server {server.id} is in unknown project {server.project_id}")
            self.servers[server.id] = server
            self._order[server.project_id].append(server.id)
            self._order[None].append(server.id)
        self._position = {
            key: {sid: i for i, sid in enumerate(ids)} for key, ids in self._order.items()
        }

    def order(self, project_id: str | None) -> list[str]:
        """Server ids in listing order: of one project, or of all (``None``)."""
        return self._order.get(project_id, [])

    def position(self, server_id: str, project_id: str | None) -> int | None:
        """Index of ``server_id`` in :meth:`order` of the same scope, or ``None``."""
        return self._position.get(project_id, {}).get(server_id)

    def project(self, key: str) -> Project | None:
        """The project with this id or name."""
        return next((p for p in self.projects if key in (p.id, p.name)), None)
