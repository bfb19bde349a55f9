"""Nova's query parameters of ``GET /servers[/detail]``: which apply, for whom, and how.

Nova (``nova/api/openstack/compute/servers.py`` and its query schema) treats a parameter in
one of four ways, and so does the mock:

* **applied**: every filter Nova knows, as Nova matches it: exact (``uuid``, ``vm_state``,
  ``task_state``, ``host``, ``user_id``, ``image``, ``flavor``), a regular expression searched
  in the value (``name``, ``node``, ``key_name``, ``availability_zone``, ...), one matched at the
  start of a fixed IP (``ip``, ``ip6``), a time bound on ``updated`` (``changes-since``,
  ``changes-before``), a boolean (``locked``), the tag filters, ``status``; ``sort_key`` and
  ``sort_dir`` (default: newest first);
* **ignored for members**: a filter outside the members' list is dropped for a token without
  the admin role (``host``, ``node``, and before 2.83 ``vm_state``, ``task_state``,
  ``power_state``, ``user_id``, ``key_name``, ...); ``all_tenants`` is a 403 instead;
* **ignored below its microversion**: the tag filters below 2.26, ``changes-before`` below
  2.66, ``locked`` below 2.73, and any parameter Nova does not know below 2.75;
* **refused** (400): from 2.75 an unknown parameter or sort key; at any version a malformed
  ``changes-since``/``changes-before``/``locked``, a bad sort direction, a parameter naming a
  joined table (``metadata``, ...); sorting by ``host``/``node`` is a 403 for members.

Why one module of ~470 lines: it is a table of Nova's query parameters and their rules, kept
in one file so it can be read against Nova's query schema side by side.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from multidict import MultiMapping

from .records import (
    AVAILABILITY_ZONE,
    FLAVORS,
    IMAGE_ID,
    TAGS_VERSION,
    Version,
    fixed_ip,
    hostname,
)
from .state import KNOWN_STATUSES, MockServer


class QueryError(Exception):
    """A query Nova refuses: ``status`` (400 or 403) and Nova's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


IP6_VERSION: Final[Version] = (2, 5)
CHANGES_BEFORE_VERSION: Final[Version] = (2, 66)
LOCKED_FILTER_VERSION: Final[Version] = (2, 73)
STRICT_QUERY_VERSION: Final[Version] = (2, 75)
MEMBER_FILTERS_VERSION: Final[Version] = (2, 83)
#: From this microversion an unknown ``status`` filter is a 400 rather than an empty list.
STRICT_STATUS_VERSION: Final[Version] = (2, 38)
TAG_FILTERS: Final = ("tags", "tags-any", "not-tags", "not-tags-any")
#: Taken out before filtering (pagination, sorting, scope).
PAGING: Final = frozenset({"limit", "marker", "sort_key", "sort_dir"})
SCOPE: Final = frozenset({"all_tenants", "project_id", "tenant_id"})
#: Nova refuses these ("Invalid filter field").
JOINED_TABLES: Final = frozenset(
    {
        "block_device_mapping",
        "services",
        "metadata",
        "system_metadata",
        "info_cache",
        "security_groups",
        "pci_devices",
    }
)
#: Filters a member may use (Nova's ``_get_server_search_options``), from a microversion on.
MEMBER_FILTERS: Final[tuple[tuple[Version, frozenset[str]], ...]] = (
    ((2, 1), frozenset({"reservation_id", "name", "status", "image", "flavor", "ip"})),
    ((2, 1), frozenset({"changes-since"})),
    (IP6_VERSION, frozenset({"ip6"})),
    (TAGS_VERSION, frozenset(TAG_FILTERS)),
    (CHANGES_BEFORE_VERSION, frozenset({"changes-before"})),
    (LOCKED_FILTER_VERSION, frozenset({"locked"})),
    (
        MEMBER_FILTERS_VERSION,
        frozenset(
            {
                "availability_zone",
                "config_drive",
                "key_name",
                "created_at",
                "launched_at",
                "terminated_at",
                "power_state",
                "task_state",
                "vm_state",
                "progress",
                "user_id",
            }
        ),
    ),
)
_TRUE: Final = frozenset({"1", "t", "true", "on", "y", "yes"})
_FALSE: Final = frozenset({"0", "f", "false", "off", "n", "no"})

Attr = Callable[[MockServer], Any]


def _launched(s: MockServer) -> str | None:
    return s.created.replace("Z", ".000000") if s.host else None


#: What an attribute-like filter or sort key reads of a server.
ATTRS: Final[dict[str, Attr]] = {
    "uuid": lambda s: s.id,
    "display_name": lambda s: s.name,
    "name": lambda s: s.name,
    "vm_state": lambda s: s.vm_state,
    "task_state": lambda s: s.task_state,
    "power_state": lambda s: s.power_state,
    "host": lambda s: s.host,
    "node": lambda s: s.host,
    "hostname": lambda s: hostname(s.name),
    "user_id": lambda s: s.user_id,
    "project_id": lambda s: s.project_id,
    "locked": lambda s: s.locked,
    "locked_by": lambda s: "admin" if s.locked else None,
    "created_at": lambda s: s.created,
    "updated_at": lambda s: s.updated,
    "launched_at": _launched,
    "terminated_at": lambda s: None,
    "image_ref": lambda s: IMAGE_ID,
    "image": lambda s: IMAGE_ID,
    "instance_type_id": lambda s: int(s.flavor_id) if s.flavor_id.isdigit() else 0,
    "flavor": lambda s: s.flavor_id,
    "availability_zone": lambda s: AVAILABILITY_ZONE,
    "key_name": lambda s: None,
    "config_drive": lambda s: "",
    "progress": lambda s: 0,
    "access_ip_v4": lambda s: "",
    "access_ip_v6": lambda s: "",
    "auto_disk_config": lambda s: False,
    "display_description": lambda s: None,
    "description": lambda s: None,
    "kernel_id": lambda s: "",
    "ramdisk_id": lambda s: "",
    "launch_index": lambda s: 0,
    "reservation_id": lambda s: f"r-{s.id[:8]}",
    "root_device_name": lambda s: "/dev/vda" if s.host else None,
}
#: Filters matched exactly (one of the values given); the others are regular expressions.
EXACT: Final = frozenset({"uuid", "vm_state", "task_state", "host", "user_id", "image_ref"})
#: Sort keys of Nova's schema, and those it ignores (below 2.75; a 400 from then on).
SORT_KEYS: Final = frozenset(
    {
        "access_ip_v4",
        "access_ip_v6",
        "auto_disk_config",
        "availability_zone",
        "config_drive",
        "created_at",
        "display_description",
        "display_name",
        "host",
        "hostname",
        "image_ref",
        "instance_type_id",
        "kernel_id",
        "key_name",
        "launch_index",
        "launched_at",
        "locked_by",
        "node",
        "power_state",
        "progress",
        "project_id",
        "ramdisk_id",
        "root_device_name",
        "task_state",
        "terminated_at",
        "updated_at",
        "user_id",
        "uuid",
        "vm_state",
    }
)
IGNORED_SORT_KEYS: Final = frozenset(
    {
        "architecture",
        "cell_name",
        "cleaned",
        "default_ephemeral_device",
        "default_swap_device",
        "deleted",
        "deleted_at",
        "disable_terminate",
        "ephemeral_gb",
        "ephemeral_key_uuid",
        "id",
        "key_data",
        "launched_on",
        "locked",
        "memory_mb",
        "os_type",
        "reservation_id",
        "root_gb",
        "shutdown_terminate",
        "user_data",
        "vcpus",
        "vm_mode",
    }
)
ADMIN_SORT_KEYS: Final = frozenset({"host", "node"})
#: Nova's default order, and the tie-breakers it appends to any other.
DEFAULT_SORT: Final = (("created_at", "desc"), ("uuid", "desc"))
#: The filters of Nova's 2.1 query schema (``query_params_v21``).
BASE_FILTERS: Final = frozenset(
    {
        "user_id",
        "launch_index",
        "image_ref",
        "image",
        "kernel_id",
        "ramdisk_id",
        "hostname",
        "key_name",
        "power_state",
        "vm_state",
        "task_state",
        "host",
        "node",
        "flavor",
        "reservation_id",
        "launched_at",
        "terminated_at",
        "availability_zone",
        "name",
        "display_name",
        "description",
        "display_description",
        "locked_by",
        "uuid",
        "root_device_name",
        "config_drive",
        "access_ip_v4",
        "access_ip_v6",
        "auto_disk_config",
        "progress",
        "soft_deleted",
        "deleted",
        "status",
        "changes-since",
        "ip",
        "ip6",
        "created_at",
    }
)


@functools.lru_cache(maxsize=128)
def _known(version: Version) -> frozenset[str]:
    known = set(BASE_FILTERS | PAGING | SCOPE | JOINED_TABLES)
    if version >= TAGS_VERSION:
        known.update(TAG_FILTERS)
    if version >= CHANGES_BEFORE_VERSION:
        known.add("changes-before")
    if version >= LOCKED_FILTER_VERSION:
        known.add("locked")
    return frozenset(known)


@functools.lru_cache(maxsize=128)
def _member_filters(version: Version) -> frozenset[str]:
    return frozenset().union(*(names for since, names in MEMBER_FILTERS if version >= since))


@functools.lru_cache(maxsize=256)
def _pattern(name: str, value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise QueryError(400, f"Invalid regular expression for {name}: {exc}") from exc


def _time(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(
            400,
            f"Invalid input for query parameters {name}. Value: {value}. "
            f"'{value}' is not a 'date-time'",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _updated(server: MockServer) -> datetime:
    return datetime.fromisoformat(server.updated)


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise QueryError(
        400,
        f"Unrecognized value '{value}', acceptable values are: '0', '1', 'f', 'false', 'n', "
        "'no', 'off', 'on', 't', 'true', 'y', 'yes'",
    )


def _split(values: Iterable[str]) -> frozenset[str]:
    return frozenset(t for value in values for t in value.split(",") if t)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """What a listing request asks: a filter (None = all) and an order (None = fleet order)."""

    match: Callable[[MockServer], bool] | None
    sort: tuple[tuple[str, str], ...] | None

    def order(self, servers: Sequence[MockServer]) -> list[MockServer]:
        """``servers`` (in fleet order) in the requested order."""
        ordered = list(servers)
        # Stable sorts from the last key to the first: a multi-key sort with mixed directions.
        for key, direction in reversed(self.sort or ()):
            ordered.sort(key=_sort_value(ATTRS[key]), reverse=direction == "desc")
        return ordered


def _sort_value(attr: Attr) -> Callable[[MockServer], tuple[bool, Any]]:
    def value(server: MockServer) -> tuple[bool, Any]:
        found = attr(server)
        return found is not None, found  # NULL sorts first, as in SQL

    return value


def listing(query: MultiMapping[str], version: Version, *, admin: bool) -> Listing:
    """The filter and order of ``query`` as Nova applies it; :class:`QueryError` if refused."""
    known = _known(version)
    given = set(query)
    for name in sorted(given):
        if name.startswith("_") or name in JOINED_TABLES:
            raise QueryError(400, f"Invalid filter field: {name}.")
        if name not in known and version >= STRICT_QUERY_VERSION:
            raise QueryError(
                400,
                "Invalid input for query parameters. Additional properties are not allowed "
                f"('{name}' was unexpected)",
            )
    filters = given & known - PAGING - SCOPE
    if not admin:
        filters &= _member_filters(version)
    tests = [_test(name, query.getall(name), version) for name in sorted(filters)]
    active = [t for t in tests if t is not None]
    match: Callable[[MockServer], bool] | None
    if not active:
        match = None
    elif len(active) == 1:
        match = active[0]
    else:
        match = lambda s: all(test(s) for test in active)  # noqa: E731
    _check_times(query, filters)
    return Listing(match=match, sort=_sort(query, version, admin=admin))


def _check_times(query: MultiMapping[str], filters: set[str]) -> None:
    if {"changes-since", "changes-before"} <= filters:
        since = _time("changes-since", query["changes-since"])
        before = _time("changes-before", query["changes-before"])
        if since > before:
            raise QueryError(
                400, "The value of changes-since must be less than or equal to changes-before."
            )


def _test(name: str, values: list[str], version: Version) -> Callable[[MockServer], bool] | None:
    """The test of one filter, or None when it lets everything through."""
    value = values[-1]
    if name in TAG_FILTERS:
        tags = _split(values)
        if not tags:
            return None
        if name == "tags":
            return lambda s: tags <= s.tags
        if name == "tags-any":
            return lambda s: not tags.isdisjoint(s.tags)
        if name == "not-tags":
            return lambda s: not tags <= s.tags
        return lambda s: tags.isdisjoint(s.tags)
    if name == "status":
        statuses = frozenset(v.upper() for v in values)
        if not statuses <= KNOWN_STATUSES:
            if version >= STRICT_STATUS_VERSION:
                raise QueryError(400, "Invalid status value")
            return lambda s: False
        return lambda s: s.status in statuses
    if name in ("changes-since", "changes-before"):
        bound = _time(name, value)
        if name == "changes-since":
            return lambda s: _updated(s) >= bound
        return lambda s: _updated(s) <= bound
    if name == "locked":
        wanted = _boolean(name, value)
        return lambda s: s.locked is wanted
    if name in ("deleted", "soft_deleted"):
        # The mock has no deleted servers: asking for them finds none.
        return (lambda s: False) if _boolean(name, value) else None
    if name in ("ip", "ip6"):
        ip = _pattern(name, value)
        # The mock's servers have IPv4 addresses only; Nova matches from the start.
        if name == "ip6":
            return lambda s: False
        return lambda s: s.host is not None and ip.match(fixed_ip(s.number)) is not None
    if name in ("image", "image_ref"):
        image = value.rstrip("/").rpartition("/")[2]
        return lambda s: image == IMAGE_ID
    if name == "flavor":
        if value not in FLAVORS:
            return lambda s: False  # Nova: an unknown flavor lists nothing
        return lambda s: s.flavor_id == value
    attr = ATTRS["name" if name == "display_name" else name]
    if name in EXACT:
        wanted_values = frozenset(values)
        return lambda s: str(attr(s)) in wanted_values
    pattern = _pattern(name, value)
    return lambda s: (found := attr(s)) is not None and pattern.search(str(found)) is not None


def _sort(
    query: MultiMapping[str], version: Version, *, admin: bool
) -> tuple[tuple[str, str], ...] | None:
    keys = [k for value in query.getall("sort_key", ()) for k in value.split(",") if k]
    dirs = [d for value in query.getall("sort_dir", ()) for d in value.split(",") if d]
    if not keys and not dirs:
        return None
    allowed = SORT_KEYS | ({"locked"} if version >= LOCKED_FILTER_VERSION else set())
    kept_keys: list[str] = []
    kept_dirs: list[str] = []
    for index, key in enumerate(keys):
        if key in allowed:
            kept_keys.append(key)
            if index < len(dirs):
                kept_dirs.append(dirs[index])
        elif key in IGNORED_SORT_KEYS and version < STRICT_QUERY_VERSION:
            continue
        else:
            raise QueryError(400, f"Invalid input for query parameters sort_key. Value: {key}.")
        if key in ADMIN_SORT_KEYS and not admin:
            raise QueryError(403, f"Only administrators can sort servers by {key}")
    kept_dirs += dirs[len(keys) :]
    if len(kept_dirs) > max(len(kept_keys), 1):
        raise QueryError(400, "Sort direction size exceeds sort key size")
    for direction in kept_dirs:
        if direction not in ("asc", "desc"):
            raise QueryError(400, "Unknown sort direction, must be 'desc' or 'asc'")
    if not kept_keys:
        kept_keys = ["created_at"]
    first = kept_dirs[0] if kept_dirs else "desc"
    kept_dirs += [first] * (len(kept_keys) - len(kept_dirs))
    order = list(zip(kept_keys, kept_dirs, strict=True))
    order += [(key, first) for key, _ in DEFAULT_SORT if key not in kept_keys]
    return tuple(order)
