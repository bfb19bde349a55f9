"""What to act on: the selector, and the criteria every returned record is re-checked against.

A :class:`Selector` is pure data built by the CLI (or any caller of the Python API). The cloud's
server-side filters are only an optimisation: every record that comes back is re-checked here,
because a cloud below microversion 2.26 silently ignores tag filters and returns every server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from bulkstop.errors import UsageError
from bulkstop.models import ListQuery, Server
from bulkstop.select.idfile import IdEntry
from bulkstop.timespec import format_time, parse_moment

#: Servers carrying this tag are never acted on, whatever the selector says.
PROTECT_TAG: Final = "bulkstop:protect"
#: ``bulkstop:exempt-until=<ISO date or date-time>`` keeps a server out until then.
EXEMPT_PREFIX: Final = "bulkstop:exempt-until="


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """Which servers a run is about. Criteria combine with AND.

    ``ids`` is ``None`` when no ID file was given; an empty tuple would select nothing.
    ``exclude_tags`` (``--exclude-tag``) and ``protect_tags`` (``--protect-tag``) both keep
    matched servers out; :data:`PROTECT_TAG` and unexpired :data:`EXEMPT_PREFIX` tags always do.
    Protection applies to every way of selecting, ID files and plans included.
    """

    tags: tuple[str, ...] = ()
    any_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    protect_tags: tuple[str, ...] = ()
    #: Act on locked servers too (Nova lets admins stop them); otherwise they are skipped.
    include_locked: bool = False
    ids: tuple[IdEntry, ...] | None = None
    #: Where ``ids`` came from (a path or ``<stdin>``), for error messages.
    ids_source: str | None = None
    select_all: bool = False
    all_projects: bool = False
    #: :attr:`guard_tags`, computed once (exclusion checks every matched server against it).
    _guard_tags: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.tags or self.any_tags or self.ids is not None or self.select_all):
            raise UsageError(
                "nothing selected: give `tags`, `any_tags` or `ids`, "
                "or `select_all` to act on every server in scope"
            )
        if self.select_all and (self.tags or self.any_tags or self.ids is not None):
            raise UsageError("`select_all` cannot be combined with `tags`, `any_tags` or `ids`")
        guard = frozenset(self.exclude_tags) | frozenset(self.protect_tags) | {PROTECT_TAG}
        object.__setattr__(self, "_guard_tags", guard)

    @property
    def guard_tags(self) -> frozenset[str]:
        """Tags that keep a matched server out: exclusions, protections and :data:`PROTECT_TAG`."""
        return self._guard_tags

    def list_query(self) -> ListQuery:
        """The server-side filters to send when listing (exclusions are checked client-side so
        that excluded servers still appear in the report)."""
        return ListQuery(tags=self.tags, tags_any=self.any_tags, all_tenants=self.all_projects)

    def matches(self, server: Server) -> bool:
        """Re-check the tag criteria on a returned record (ID membership is checked by the caller).

        A record without a ``tags`` key matches only a selector without tag criteria.
        """
        if not (self.tags or self.any_tags):
            return True
        if server.tags is None:
            return False
        if not server.tags.issuperset(self.tags):
            return False
        return not self.any_tags or not server.tags.isdisjoint(self.any_tags)

    def exclusion(self, server: Server, *, now: datetime) -> str | None:
        """Why a matched server must be left alone by tag at time ``now``, or ``None``."""
        tags = server.tags
        if not tags:
            return None
        if not tags.isdisjoint(self._guard_tags):
            return f"tag {min(tags & self._guard_tags)}"
        exemptions = [tag for tag in tags if tag.startswith(EXEMPT_PREFIX)]
        return _exemption(min(exemptions), now=now) if exemptions else None

    def describe(self) -> dict[str, Any]:
        """The ``selector`` object of the report."""
        return {
            "tags": list(self.tags),
            "any_tags": list(self.any_tags),
            "exclude_tags": sorted(self.exclude_tags),
            "protect_tags": sorted(self.guard_tags - frozenset(self.exclude_tags)),
            "include_locked": self.include_locked,
            "ids": None if self.ids is None else len(self.ids),
            "all": self.select_all,
            "all_projects": self.all_projects,
        }


def _exemption(tag: str, *, now: datetime) -> str | None:
    """The reason an exemption tag keeps a server out now, or None once it has expired.

    A tag that cannot be read keeps the server out: when in doubt, do not stop.
    """
    value = tag[len(EXEMPT_PREFIX) :]
    try:
        until = parse_moment(value, end_of_day=True)
    except ValueError:
        return f"unreadable exemption tag {tag!r}"
    return f"exempt until {format_time(until)}" if now < until else None
