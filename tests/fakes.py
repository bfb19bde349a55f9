"""An in-memory ComputeAPI and a fake clock, for fast unit tests of the engine.

The fake keeps Nova's rules for stop/start (preconditions, 409s, 404s) and lets a test script
extra answers per server (``script[server_id] = [Reply(...), ...]``, consumed one per request
before the normal rules apply). Integration tests use the real mock cloud instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from bulkstop.execute.dispatch import DispatcherFactory, NativeDispatcher
from bulkstop.execute.engine import Engine, Observer, RunOptions
from bulkstop.models import (
    STOPPABLE_VM_STATES,
    Action,
    ErrorInfo,
    ListQuery,
    Reply,
    Server,
    ServerPage,
)


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        # Let other tasks run, as a real sleep would.
        import anyio

        await anyio.lowlevel.checkpoint()


class SharedClock:
    """A fake clock for tasks that sleep at the same time: each sleep wakes at its own moment.

    :class:`FakeClock` moves time by every sleep of every task, so two tasks sleeping at once
    add their sleeps up (a 300 s wait of one jumps the other 300 s ahead). Here a sleep only
    waits: time stands still while any task can run, and once every task is blocked,
    :meth:`run` (started beside the code under test, cancelled after it) moves the clock to the
    earliest wake-up and wakes the sleepers due then. asyncio only.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._due: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()
        self._cancelled: set[int] = set()
        self._asleep = anyio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        woken, order = anyio.Event(), next(self._order)
        heapq.heappush(self._due, (self.now + seconds, order, woken))
        self._asleep.set()
        try:
            await woken.wait()
        except BaseException:
            self._cancelled.add(order)  # a cancelled sleep must not move time
            raise

    async def run(self) -> None:
        """Move time from one wake-up to the next whenever every other task is blocked."""
        while True:
            await _all_blocked()
            while self._due and self._due[0][1] in self._cancelled:
                self._cancelled.discard(heapq.heappop(self._due)[1])
            if not self._due:
                self._asleep = anyio.Event()
                await self._asleep.wait()
                continue
            self.now = max(self.now, self._due[0][0])
            while self._due and self._due[0][0] <= self.now:
                _, order, woken = heapq.heappop(self._due)
                self._cancelled.discard(order)
                woken.set()


async def _all_blocked() -> None:
    """Return once every other task waits on something (``anyio.wait_all_tasks_blocked``
    without its 0.1 s naps, which would make a long fake wait slow)."""
    me = asyncio.current_task()

    def runnable(task: asyncio.Task[object]) -> bool:
        waiter = task._fut_waiter  # type: ignore[attr-defined]
        return task is not me and (waiter is None or waiter.done())

    # No event says "every task is blocked": looking at the tasks is the only way to know.
    while any(runnable(task) for task in asyncio.all_tasks()):  # noqa: ASYNC110
        await asyncio.sleep(0)


@dataclass
class Call:
    kind: str
    project_id: str
    server_id: str | None = None
    action: Action | None = None
    marker: str | None = None


@dataclass
class FakeCompute:
    """Servers by id; every call is recorded in ``calls``."""

    servers: dict[str, Server] = field(default_factory=dict)
    page_size: int = 3
    script: dict[str, list[Reply]] = field(default_factory=dict)
    list_script: list[Reply] = field(default_factory=list)
    drop_tags: bool = False
    ignore_tag_filters: bool = False
    calls: list[Call] = field(default_factory=list)
    renewals: list[str] = field(default_factory=list)

    @classmethod
    def with_servers(cls, servers: Iterable[Server], **kwargs: object) -> FakeCompute:
        return cls(servers={s.id: s for s in servers}, **kwargs)  # type: ignore[arg-type]

    def actions(self, action: Action = Action.STOP) -> list[str]:
        return [c.server_id for c in self.calls if c.kind == "action" and c.action is action]  # type: ignore[misc]

    async def list_page(self, project_id: str, query: ListQuery, marker: str | None) -> Reply:
        self.calls.append(Call(kind="list", project_id=project_id, marker=marker))
        if self.list_script:
            return self.list_script.pop(0)
        matching = [
            s
            for s in self.servers.values()
            if (query.all_tenants or s.project_id == project_id)
            and (self.ignore_tag_filters or _tags_match(s, query))
        ]
        start = 0
        if marker is not None:
            start = next(i for i, s in enumerate(matching) if s.id == marker) + 1
        page = matching[start : start + self.page_size]
        full = len(page) == self.page_size
        shown = tuple(dataclasses.replace(s, tags=None) if self.drop_tags else s for s in page)
        return Reply(
            status=200,
            body=ServerPage(servers=shown, next_marker=page[-1].id if full else None),
        )

    async def get_server(self, project_id: str, server_id: str) -> Reply:
        self.calls.append(Call(kind="get", project_id=project_id, server_id=server_id))
        if scripted := self.script.get(f"get:{server_id}"):
            return scripted.pop(0)
        server = self.servers.get(server_id)
        if server is None or server.project_id != project_id:
            return _fault(404, "itemNotFound", f"Instance {server_id} could not be found.")
        return Reply(status=200, body=server)

    async def action(
        self, project_id: str, server_id: str, action: Action, *, stop_type: str | None = None
    ) -> Reply:
        self.calls.append(
            Call(kind="action", project_id=project_id, server_id=server_id, action=action)
        )
        if scripted := self.script.get(server_id):
            reply = scripted.pop(0)
            if reply.ok:
                self._apply(server_id, action)
            return reply
        server = self.servers.get(server_id)
        if server is None:
            return _fault(404, "itemNotFound", f"Instance {server_id} could not be found.")
        if action is Action.STOP and (
            server.vm_state not in STOPPABLE_VM_STATES or server.task_state or server.locked
        ):
            return _fault(409, "conflictingRequest", f"Cannot 'stop' instance {server_id}")
        if action is Action.START and (server.vm_state != "stopped" or server.task_state):
            return _fault(409, "conflictingRequest", f"Cannot 'start' instance {server_id}")
        self._apply(server_id, action)
        return Reply(status=202, request_id=f"req-{len(self.calls)}")

    def _apply(self, server_id: str, action: Action) -> None:
        server = self.servers.get(server_id)
        if server is None:
            return
        if action is Action.STOP:
            self.servers[server_id] = dataclasses.replace(
                server, vm_state="stopped", status="SHUTOFF", task_state=None, power_state=4
            )
        else:
            self.servers[server_id] = dataclasses.replace(
                server, vm_state="active", status="ACTIVE", task_state=None, power_state=1
            )

    async def renew_auth(self, project_id: str) -> None:
        self.renewals.append(project_id)

    async def aclose(self) -> None:
        return None


def _tags_match(server: Server, query: ListQuery) -> bool:
    tags = server.tags or frozenset()
    if query.tags and not tags.issuperset(query.tags):
        return False
    return not query.tags_any or not tags.isdisjoint(query.tags_any)


def _fault(status: int, code: str, message: str) -> Reply:
    return Reply(status=status, error=ErrorInfo(code=code, message=message))


def make_server(
    n: int,
    *,
    project_id: str = "p1",
    tags: Iterable[str] = ("nightly-stop",),
    vm_state: str = "active",
    task_state: str | None = None,
    locked: bool = False,
) -> Server:
    return Server(
        id=f"00000000-0000-4000-8000-{n:012d}",
        project_id=project_id,
        name=f"srv-{n}",
        status={"active": "ACTIVE", "stopped": "SHUTOFF", "error": "ERROR"}.get(
            vm_state, vm_state.upper()
        ),
        vm_state=vm_state,
        task_state=task_state,
        power_state=4 if vm_state == "stopped" else 1,
        locked=locked,
        tags=frozenset(tags),
    )


#: Options of :func:`fake_engine` unless a test says otherwise: no pacing, a few workers, 1 s polls.
FAKE_ENGINE_OPTIONS: dict[str, object] = {"rate": 0, "concurrency": 4, "poll_interval": 1.0}


def fake_engine(
    fake: FakeCompute,
    clock: FakeClock | SharedClock,
    *,
    scopes: tuple[str, ...] = ("p1",),
    observer: Observer | None = None,
    dispatcher: DispatcherFactory = NativeDispatcher,
    **options: object,
) -> Engine:
    """An engine on the in-memory fake and a fake clock, seeded, with ``options`` for the run."""
    settings = {**FAKE_ENGINE_OPTIONS, **options}
    return Engine(
        compute=fake,
        scopes=scopes,
        options=RunOptions(**settings),  # type: ignore[arg-type]
        observer=observer,
        rng=random.Random(0),
        clock=clock,
        sleep=clock.sleep,
        dispatcher=dispatcher,
    )
