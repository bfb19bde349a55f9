"""What the peer clients (bare aiohttp, openstacksdk) are asked to do, and what they answer.

The orchestrator writes a :class:`PeerJob` as JSON to a file and runs ``python -m
benchmarks.bare JOB`` or ``python -m benchmarks.sdk JOB``; the child prints one
:class:`PeerResult` as JSON on stdout.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerJob:
    """Stop these servers on this mock, with this much concurrency."""

    auth_url: str
    base_url: str
    username: str
    password: str
    user_domain: str
    region: str
    #: Server ids per project id.
    targets: dict[str, list[str]]
    #: Requests in flight (bare aiohttp) or threads (openstacksdk; 1 = a plain loop).
    concurrency: int
    #: Stop sending new requests this many seconds after the first one (None: no limit).
    time_limit: float | None = None
    #: Event loop of an asyncio client (bare aiohttp): "asyncio" or "uvloop", as bulkstop's.
    loop: str = "asyncio"

    def ordered(self) -> Iterator[tuple[str, str]]:
        """(project id, server id), round-robin over the projects, as a run across projects."""
        lists = list(self.targets.items())
        longest = max((len(ids) for _, ids in lists), default=0)
        for i in range(longest):
            for project_id, ids in lists:
                if i < len(ids):
                    yield project_id, ids[i]

    def write(self, path: Path) -> Path:
        """Save as JSON; returns ``path``."""
        path.write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str) -> PeerJob:
        """Load a job written by :meth:`write`."""
        document: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**document)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerResult:
    """What a peer client did: ``time.time()`` of its first request and of its end."""

    first_send: float
    finished: float
    #: Requests answered 2xx.
    ok: int
    #: Requests that failed (non-2xx answer, exception).
    failed: int
    #: Answers by HTTP status (or exception class name).
    statuses: dict[str, int] = field(default_factory=dict)

    def dumps(self) -> str:
        """One JSON line."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, text: str) -> PeerResult:
        """Parse the line :meth:`dumps` wrote (the last line of ``text``)."""
        document: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
        return cls(**document)
