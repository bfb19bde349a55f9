"""Resolution: a selector becomes a :class:`Plan`, with reads only.

:class:`Reader` reads servers through the gate (one GET each, or the paged listing);
:class:`Resolver` turns a :class:`~bulkstop.select.selector.Selector` into a plan: it lists or
reads each project in scope, refuses records without tags (the tag guard), re-checks every
record against the selector, classifies each server (:func:`~bulkstop.plan.eligibility.classify`)
and notes which listing page each server came from, so that ``wait`` can poll the cheaper way.
Every failure to read is run-wide and raised before any action is sent.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Final

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from bulkstop.cloud.base import ComputeAPI
from bulkstop.cloud.verdict import Kind, read_failure
from bulkstop.errors import EndpointError, InputError, RefusedError, UnsafeCloudError
from bulkstop.execute.gate import Gate
from bulkstop.execute.taskgroup import first_run_error
from bulkstop.limits import MAX_LIST_PAGES
from bulkstop.models import ListQuery, Outcome, Server, ServerPage, ServerResult
from bulkstop.plan.eligibility import ActionSpec, PlanEntry, classify
from bulkstop.plan.rails import batches
from bulkstop.select.selector import Selector
from bulkstop.timespec import utc_now

#: Records per listing page we ask for (clouds clamp it to their ``max_limit``).
PAGE_LIMIT: Final = 1000
#: Up to this many servers of a project are resolved one GET each; more are read by listing.
GET_THRESHOLD: Final = 25

#: Event-loop turns the listing gives the request for the next page before it merges and judges
#: this one's servers (CPU work that holds the loop). On a kept-alive connection aiohttp puts a
#: request on the wire in one turn (measured); the rest is margin for the gate and token cache.
AHEAD_TURNS: Final = 8
#: Called by :meth:`Reader.listing` with a page's number and its servers (merged so far).
PageHook = Callable[[int, list[Server]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The resolved selection: every matched server once, with what will happen to it."""

    entries: tuple[PlanEntry, ...]
    #: IDs from an ID file the cloud does not know.
    missing: tuple[ServerResult, ...] = ()
    scopes: tuple[str, ...] = ()
    #: Records the cloud returned while resolving.
    listed: int = 0
    #: Returned records that failed the client-side re-check (the cloud ignored a filter).
    rechecked_out: int = 0
    #: Listed records dropped because their id is not exactly a UUID.
    dropped_records: int = 0
    #: The listing query the servers were resolved with (status polls list with it too).
    query: ListQuery = field(default_factory=lambda: ListQuery(limit=PAGE_LIMIT))
    #: Server id → the 0-based page of its project's listing it came on (absent: read by GET).
    pages: Mapping[str, int] = field(default_factory=dict)

    @property
    def to_send(self) -> tuple[PlanEntry, ...]:
        """The entries that will get a request."""
        return tuple(e for e in self.entries if e.sends)


class Reader:
    """Reads servers through the gate: one GET each, or the project's paged listing."""

    def __init__(self, *, compute: ComputeAPI, gate: Gate) -> None:
        self.compute = compute
        self.gate = gate
        #: Listed records dropped so far for an id that is not a UUID (see ServerPage.dropped).
        self.dropped = 0

    async def get_each(self, scope: str, ids: Collection[str]) -> dict[str, Server]:
        """The records of ``ids`` in ``scope``, one GET each; unknown ids are left out.

        Raises :class:`~bulkstop.errors.CloudAccessError` when a server cannot be read.
        """
        out: dict[str, Server] = {}

        async def get(server_id: str) -> None:
            res = await self.gate.call(scope, partial(self.compute.get_server, scope, server_id))
            if res.verdict.kind is Kind.NOT_FOUND:
                return
            body = res.reply.body
            if res.verdict.kind is not Kind.ACCEPTED or not isinstance(body, Server):
                raise read_failure(scope, res.reply, what=f"read server {server_id}")
            if body.id != server_id:
                raise EndpointError(
                    f"project {scope}: asked for server {server_id}, the cloud answered "
                    f"with server {body.id}"
                )
            out[server_id] = body

        with first_run_error():
            async with anyio.create_task_group() as tg:
                for server_id in sorted(ids):
                    tg.start_soon(get, server_id)
        return out

    async def current(self, scope: str, server_id: str) -> Server | None:
        """The server's record now, or None if it cannot be read (for a judgement, not a plan)."""
        res = await self.gate.call(scope, partial(self.compute.get_server, scope, server_id))
        body = res.reply.body
        if res.verdict.kind is Kind.ACCEPTED and isinstance(body, Server):
            return body
        return None

    async def listing(
        self,
        scope: str,
        query: ListQuery,
        *,
        wanted: Collection[str] | None = None,
        each_page: PageHook | None = None,
    ) -> list[tuple[int, Server]]:
        """The project's listing as ``(page number, record)``, following every next link.

        Each server once, on the first page it came on: two records of one id (upper-case
        copies of a UUID are one id) are one server (see :func:`_merged`). With ``wanted``,
        stops after the page on which the last of them was seen. Raises CloudAccessError when a
        page cannot be read, EndpointError when the paging is broken (:func:`_check_progress`).

        The next page is asked for as soon as this one's ids have passed those checks; this
        page's servers are then merged and given to ``each_page`` (if any) while that
        request is in flight: at most one page ahead, so memory stays bounded by two pages.
        ``each_page`` sees each record merged with the copies of it seen so far; it may raise,
        which cancels the request ahead.
        """
        out: dict[str, tuple[int, Server]] = {}
        missing = None if wanted is None else set(wanted)
        ahead_send, ahead = anyio.create_memory_object_stream[ServerPage](1)
        with ahead_send, ahead, first_run_error():
            async with anyio.create_task_group() as tg:
                page = await self._page(scope, query, None)
                for number in itertools.count():
                    self.dropped += page.dropped
                    ids = page.ids
                    fresh = len(set(ids).difference(out))
                    if missing is not None:
                        missing.difference_update(ids)
                    done = missing is not None and not missing
                    following = None if done else page.next_marker
                    if following is not None:
                        _check_progress(scope, number + 1, fresh)
                        tg.start_soon(self._page_ahead, ahead_send, scope, query, following)
                        for _ in range(AHEAD_TURNS):  # the request ahead goes out first
                            await anyio.lowlevel.checkpoint()
                    _add_page(
                        out, number, page
                    )  # CPU work, with each_page's, while the request is out
                    if each_page is not None:
                        each_page(number, [out[server_id][1] for server_id in ids])
                    if following is None:
                        break
                    page = await ahead.receive()
        return list(out.values())

    async def _page(self, scope: str, query: ListQuery, marker: str | None) -> ServerPage:
        """One page of the listing; CloudAccessError when it cannot be read."""
        call = partial(self.compute.list_page, scope, query, marker)
        res = await self.gate.call(scope, call)
        page = res.reply.body
        if res.verdict.kind is not Kind.ACCEPTED or not isinstance(page, ServerPage):
            raise read_failure(scope, res.reply, what="list servers")
        return page

    async def _page_ahead(
        self,
        to: MemoryObjectSendStream[ServerPage],
        scope: str,
        query: ListQuery,
        marker: str,
    ) -> None:
        await to.send(await self._page(scope, query, marker))


class Resolver:
    """Turns a selector into a plan for the projects in ``scopes``. Sends only reads."""

    def __init__(self, *, reader: Reader, scopes: tuple[str, ...], spec: ActionSpec) -> None:
        self.reader = reader
        self.scopes = scopes
        self.spec = spec

    async def resolve(self, selector: Selector) -> Plan:
        """Expand the selector into a plan. Raises before any action on any problem."""
        if selector.ids is None:
            query = dataclasses.replace(selector.list_query(), limit=PAGE_LIMIT)
        else:
            # Every id of the file must come back, tagged or not: an untagged server is not
            # "not found". The tag criteria are re-checked on the records below.
            query = ListQuery(all_tenants=selector.all_projects, limit=PAGE_LIMIT)
        wanted = self._wanted_by_scope(selector)
        now = utc_now()
        found = {
            scope: _Found(scope=scope, ids=ids, selector=selector, spec=self.spec, now=now)
            for scope, ids in wanted.items()
        }
        dropped_before = self.reader.dropped

        async def fetch(scope: str, ids: set[str] | None) -> None:
            if ids is not None and len(ids) <= GET_THRESHOLD:
                servers = await self.reader.get_each(scope, ids)
                found[scope].add(None, list(servers.values()))
            else:
                # Each page is judged while the next one is on its way.
                await self.reader.listing(scope, query, each_page=found[scope].add)

        with first_run_error():
            async with anyio.create_task_group() as tg:
                for scope, ids in wanted.items():
                    tg.start_soon(fetch, scope, ids)
        plan = self._plan(selector, found, query=query)
        return dataclasses.replace(plan, dropped_records=self.reader.dropped - dropped_before)

    def _plan(self, selector: Selector, found: Mapping[str, _Found], *, query: ListQuery) -> Plan:
        """The plan from the records read and judged, in scope order."""
        entries: dict[str, PlanEntry] = {}
        seen: set[str] = set()
        listed = rechecked_out = 0
        # An ID list's order is the plan's (its first servers are the canary); a listing keeps
        # the cloud's order.
        rank: dict[str, int] = {}
        for n, target in enumerate(selector.ids or ()):
            rank.setdefault(target.id, n)
        pages: dict[str, int] = {}
        for scope in self.scopes:
            if scope not in found:
                continue
            scoped = found[scope]
            verdicts = scoped.verdicts.items()
            for server_id, verdict in (
                sorted(verdicts, key=lambda v: rank[v[0]]) if rank else verdicts
            ):
                listed += 1
                if verdict is _OUTSIDE:
                    continue
                seen.add(server_id)
                if verdict is _RECHECKED_OUT:
                    rechecked_out += 1
                elif server_id not in entries:
                    assert isinstance(verdict, PlanEntry)
                    entries[server_id] = verdict
            for server_id, number in scoped.pages.items():
                pages.setdefault(server_id, number)
        plan_entries = tuple(entries.values())
        try:
            batches([e for e in plan_entries if e.sends])
        except ValueError as exc:
            raise RefusedError(
                f"{exc}: wave order cannot be guaranteed; nothing was sent"
            ) from None
        return Plan(
            entries=plan_entries,
            missing=self._missing(selector, seen),
            scopes=self.scopes,
            listed=listed,
            rechecked_out=rechecked_out,
            query=query,
            pages={sid: n for sid, n in pages.items() if sid in entries},
        )

    def _missing(self, selector: Selector, seen: set[str]) -> tuple[ServerResult, ...]:
        """A ``not_found`` result for every id of the file that no project in scope knows."""
        # With one project in scope, that is where an id without a project was looked for.
        only_scope = self.scopes[0] if len(self.scopes) == 1 and not selector.all_projects else ""
        missing = {
            t.id: ServerResult(
                id=t.id,
                project_id=t.project_id or only_scope,
                name=t.name,
                outcome=Outcome.NOT_FOUND,
                reason="not found in the projects in scope",
            )
            for t in selector.ids or ()
            if t.id not in seen
        }
        return tuple(missing.values())

    def _wanted_by_scope(self, selector: Selector) -> dict[str, set[str] | None]:
        """Which ids to look for in which scope (``None`` = everything the query matches)."""
        if selector.ids is None:
            return dict.fromkeys(self.scopes)
        wanted: dict[str, set[str] | None] = {s: set() for s in self.scopes}
        for target in selector.ids:
            if target.project_id is None or selector.all_projects:
                homes: tuple[str, ...] = self.scopes
            elif target.project_id in wanted:
                homes = (target.project_id,)
            else:
                raise InputError(
                    f"server {target.id} is in project {target.project_id}, which is not in "
                    "scope (add it to `projects` or leave project_id out of the file)",
                    source=selector.ids_source,
                    line=target.line,
                )
            for home in homes:
                ids = wanted[home]
                assert ids is not None
                ids.add(target.id)
        return {s: ids for s, ids in wanted.items() if ids}

    async def census(self, *, all_projects: bool = False) -> dict[str, int]:
        """How many servers each project has (every server, whatever its tags or state).

        For ``max_percent``: the listing is paced and counted like any other.
        """
        query = ListQuery(all_tenants=all_projects, limit=PAGE_LIMIT)
        counts: collections.Counter[str] = collections.Counter()

        async def count(scope: str) -> None:
            unique = {s.id: s for _, s in await self.reader.listing(scope, query)}
            for server in unique.values():
                counts[server.project_id or scope] += 1

        with first_run_error():
            async with anyio.create_task_group() as tg:
                for scope in self.scopes:
                    tg.start_soon(count, scope)
        return dict(counts)


#: A record of another project (an admin's GET reaches other projects; a project is a boundary).
_OUTSIDE: Final = "outside"
#: A record that failed the client-side re-check of the tag criteria.
_RECHECKED_OUT: Final = "rechecked out"


@dataclass(slots=True, kw_only=True)
class _Found:
    """What one project in scope returned, each record judged as it arrives (the tag guard,
    the project boundary, the re-check, classification); a record merged with a later copy of
    itself is judged again, as merged."""

    scope: str
    #: The ids looked for in this project (None: every record the query returns).
    ids: set[str] | None
    selector: Selector
    spec: ActionSpec
    now: datetime
    #: Server id → its plan entry, _OUTSIDE or _RECHECKED_OUT, in the order first returned.
    verdicts: dict[str, PlanEntry | str] = field(default_factory=dict)
    #: Server id → the listing page it first came on.
    pages: dict[str, int] = field(default_factory=dict)

    def add(self, number: int | None, servers: list[Server]) -> None:
        """Judge the records of listing page ``number`` (None: read by GET)."""
        ids, selector, scope = self.ids, self.selector, self.scope
        for server in servers:
            if ids is not None and server.id not in ids:
                continue
            if server.tags is None:
                raise UnsafeCloudError(
                    f"the cloud returned server {server.id} without its tags "
                    "(compute microversion 2.26 not honoured?): bulkstop cannot check "
                    "tag filters or the bulkstop:protect tag, so it refuses to act"
                )
            if number is not None:
                self.pages.setdefault(server.id, number)
            if not selector.all_projects and server.project_id not in ("", scope):
                self.verdicts[server.id] = _OUTSIDE
            elif not selector.matches(server):
                self.verdicts[server.id] = _RECHECKED_OUT
            else:
                self.verdicts[server.id] = classify(
                    server, scope=scope, selector=selector, spec=self.spec, now=self.now
                )


def _add_page(servers: dict[str, tuple[int, Server]], number: int, page: ServerPage) -> None:
    """Add page ``number``'s servers.

    Two records of one id (upper-case copies of a UUID are one id) are one server: the first
    record's fields, with the tags of both and locked if either is, so that protection or
    exclusion on any copy applies to the server.
    """
    for server in page.servers:
        known = servers.get(server.id)
        servers[server.id] = (
            (number, server) if known is None else (known[0], _merged(known[1], server))
        )


def _merged(first: Server, copy: Server) -> Server:
    tags = None if first.tags is None or copy.tags is None else first.tags | copy.tags
    return dataclasses.replace(first, tags=tags, locked=first.locked or copy.locked)


def _check_progress(scope: str, pages: int, fresh: int) -> None:
    """The listing's end rules, before following a ``next`` link: a page that brought no
    server not seen before means the links go round (the no-progress rule), and a listing
    longer than :data:`~bulkstop.limits.MAX_LIST_PAGES` pages is not a real fleet."""
    if not fresh:
        raise EndpointError(
            f"project {scope}: the listing's page {pages} brought no server not seen before "
            "but links to another page: the cloud's paging is broken"
        )
    if pages >= MAX_LIST_PAGES:
        raise EndpointError(
            f"project {scope}: the listing goes on for more than {MAX_LIST_PAGES} pages"
        )
