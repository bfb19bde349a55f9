"""Safety rails: what keeps a mass stop from hitting the wrong servers, or too many.

Two kinds, checked at two moments:

* **before anything is sent** (the runner refuses, exit 4): ``max_servers`` and ``max_percent``
  caps, a stale or edited plan;
* **while dispatching** (the engine halts, exit 4, the rest ``not_attempted``): the ``canary``
  batch failing, the ``max_errors`` circuit breaker, the ``deadline``.

Ordering is data on the servers themselves: ``bulkstop:wave=<n>`` tags put servers in waves,
stopped in ascending n, untagged servers last. :func:`batches` turns a plan into the sequence the
engine executes, canary first.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bulkstop.errors import RefusedError
from bulkstop.models import Server
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.timespec import format_time

#: Tag prefix that puts a server in a wave: ``bulkstop:wave=2``.
WAVE_PREFIX: Final = "bulkstop:wave="
#: ``max_errors`` as a percentage applies only once this many requests have finished.
MIN_FINISHED_FOR_PERCENT: Final = 20

_ERROR_BUDGET: Final = re.compile(r"(\d+(?:\.\d+)?)(%?)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorBudget:
    """``--max-errors``: a count (``5``) or a percentage of finished requests (``2%``)."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> ErrorBudget:
        """``N`` or ``P%``; ValueError otherwise."""
        match = _ERROR_BUDGET.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not an error budget: {text!r} (e.g. 10 or 5%)")
        number, percent = match.groups()
        if percent:
            value = float(number)
            if not 0 <= value < 100:
                raise ValueError(f"a percentage must be below 100: {text!r}")
            return cls(percent=value)
        if "." in number:
            raise ValueError(f"an error count is a whole number: {text!r}")
        return cls(count=int(number))

    def crossed(self, *, failures: int, finished: int) -> bool:
        """True once more than the budget has failed."""
        if self.count is not None:
            return failures > self.count
        if self.percent is not None and finished >= MIN_FINISHED_FOR_PERCENT:
            return failures * 100 > self.percent * finished
        return False

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rails:
    """The rails of one run. All off by default."""

    #: Refuse if more servers than this would get a request.
    max_servers: int | None = None
    #: Refuse if the selection is more than this percentage of any project's servers.
    max_percent: float | None = None
    #: Act on this many servers first, wait for them, continue only if all succeeded.
    canary: int = 0
    #: Halt dispatch once more requests than this have failed.
    max_errors: ErrorBudget | None = None
    #: Dispatch nothing after this moment (UTC).
    deadline: datetime | None = None

    def describe(self) -> dict[str, Any]:
        """The ``rails`` object of the report."""
        return {
            "max_servers": self.max_servers,
            "max_percent": self.max_percent,
            "canary": self.canary,
            "max_errors": None if self.max_errors is None else str(self.max_errors),
            "deadline": None if self.deadline is None else format_time(self.deadline),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Servers dispatched together; the next batch starts when this one has finished."""

    entries: tuple[PlanEntry, ...]
    #: The wave number, or None for untagged servers (the final wave).
    wave: int | None = None
    canary: bool = False


def wave_of(server: Server) -> int | None:
    """The server's ``bulkstop:wave=<n>``, or None. ValueError for a malformed or double tag."""
    waves = [t for t in server.tags or () if t.startswith(WAVE_PREFIX)]
    if not waves:
        return None
    if len(waves) > 1:
        raise ValueError(f"server {server.id} has more than one wave tag: {sorted(waves)}")
    number = waves[0][len(WAVE_PREFIX) :]
    if not number.isdigit():
        raise ValueError(f"server {server.id} has a malformed wave tag {waves[0]!r}")
    return int(number)


def batches(entries: Sequence[PlanEntry], *, canary: int = 0) -> list[Batch]:
    """The order of dispatch: waves ascending, untagged last; the canary comes out of the first.

    The canary is taken from the first wave only (so it never runs ahead of the wave order),
    round-robin across projects so that every project is represented.
    """
    waves: dict[int | None, list[PlanEntry]] = {}
    for entry in entries:
        waves.setdefault(wave_of(entry.server), []).append(entry)
    order = sorted(w for w in waves if w is not None) + ([None] if None in waves else [])
    out: list[Batch] = []
    for number in order:
        members = waves[number]
        if canary and not out:
            picked = _round_robin(members, canary)
            chosen = {id(e) for e in picked}
            out.append(Batch(entries=tuple(picked), wave=number, canary=True))
            members = [e for e in members if id(e) not in chosen]
        if members:
            out.append(Batch(entries=tuple(members), wave=number))
    return out


def _round_robin(entries: Sequence[PlanEntry], count: int) -> list[PlanEntry]:
    by_scope: dict[str, list[PlanEntry]] = {}
    for entry in entries:
        # By the server's own project: with --all-projects every server has the same scope.
        by_scope.setdefault(entry.server.project_id or entry.scope, []).append(entry)
    queues = list(by_scope.values())
    picked: list[PlanEntry] = []
    depth = 0
    while len(picked) < count and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(picked) < count:
                picked.append(queue[depth])
        depth += 1
    return picked


def check_caps(
    sends: Sequence[PlanEntry], rails: Rails, *, past: str, totals: Mapping[str, int] | None
) -> None:
    """Refuse (RefusedError, exit 4) before anything is sent when the selection is too big.

    ``totals`` is the number of servers in each project in scope (needed for ``max_percent``).
    """
    if rails.max_servers is not None and len(sends) > rails.max_servers:
        raise RefusedError(
            f"max-servers: {len(sends)} servers would be {past}, more than `max_servers` "
            f"{rails.max_servers}"
        )
    if rails.max_percent is None:
        return
    if totals is None:
        raise ValueError("max_percent needs the project totals")
    chosen = collections.Counter(e.server.project_id or e.scope for e in sends)
    for project, count in sorted(chosen.items()):
        total = totals.get(project, 0)
        if count * 100 > rails.max_percent * max(total, count):
            share = 100 * count / max(total, count)
            raise RefusedError(
                f"max-percent: project {project}: {count} of its {total} servers "
                f"({share:.1f}%) would be {past}, more than `max_percent` {rails.max_percent:g}"
            )
