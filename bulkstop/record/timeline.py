"""The run over time: per-second counters per project, and the moments that shaped the run.

:class:`Timeline` is an engine :class:`~bulkstop.execute.engine.Observer`. It keeps counters, not
a record per call: for each project and each second since the run started, the compute requests
answered, the throttle answers among them (and the longest hold, in seconds of ``Retry-After``,
they put on the project), and the servers that reached each outcome; besides,
a short list of events (the plan, each canary or wave batch, the halt). The runner writes it
into the report's ``timeline`` key (additive to ``bulkstop/report/v1``)::

    "timeline": {"interval": 1, "started_at": "...Z",
                 "projects": {"<project_id>": {"calls": {"<second>": 0}, "throttles": {...},
                                               "holds": {"<second>": 2.0},
                                               "outcomes": {"<outcome>": {"<second>": 0}}}},
                 "events": [{"t": 0.0, "event": "planned", "to_send": 0},
                            {"t": 1.2, "event": "batch", "wave": null, "canary": true, "size": 2},
                            {"t": 9.7, "event": "halt", "reason": "deadline"}]}

Keys are buckets of ``interval`` seconds from ``started_at`` (bucket ``n`` covers
``[n * interval, (n + 1) * interval)``); only buckets with something to count are written. A run
longer than :data:`MAX_BUCKETS` seconds is written in wider buckets, so the report stays small
however long the run; event times ``t`` are always seconds. A resumed run's report holds the
timeline of its last part.
``bulkstop report RUN.json --plot`` draws it (:mod:`bulkstop.record.plot`).
"""

from __future__ import annotations

import collections
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from bulkstop.execute.engine import Observer, Plan
from bulkstop.models import ServerResult
from bulkstop.plan.rails import Batch
from bulkstop.timespec import format_time, utc_now

#: Width of one counter bucket in memory, in seconds.
INTERVAL: Final = 1
#: Buckets per series at most in the report: a longer run is written in wider buckets.
MAX_BUCKETS: Final = 3600
#: Events kept at most (a plan, a few waves, a halt: this is only a guard).
MAX_EVENTS: Final = 1000

_Counts = collections.Counter[int]


class Timeline(Observer):
    """Counts calls, throttles and outcomes per project and second; notes the run's events."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._t0 = clock()
        self._started_at = utc_now()
        self._calls: dict[str, _Counts] = collections.defaultdict(collections.Counter)
        self._throttles: dict[str, _Counts] = collections.defaultdict(collections.Counter)
        self._outcomes: dict[tuple[str, str], _Counts] = collections.defaultdict(
            collections.Counter
        )
        #: The longest hold (Retry-After seconds) announced in each second, per project.
        self._holds: dict[str, dict[int, float]] = collections.defaultdict(dict)
        self._events: list[dict[str, Any]] = []

    def _second(self) -> int:
        return int(self._clock() - self._t0) // INTERVAL

    def answered(self, scope: str, *, throttled: bool, hold: float | None) -> None:
        second = self._second()
        self._calls[scope][second] += 1
        if throttled:
            self._throttles[scope][second] += 1
            if hold:
                holds = self._holds[scope]
                holds[second] = max(holds.get(second, 0.0), hold)

    def finished(self, result: ServerResult) -> None:
        self._outcomes[result.project_id, result.outcome.value][self._second()] += 1

    def planned(self, plan: Plan) -> None:
        self._event("planned", to_send=len(plan.to_send), selected=len(plan.entries))

    def batch_started(self, batch: Batch) -> None:
        self._event("batch", wave=batch.wave, canary=batch.canary, size=len(batch.entries))

    def halted(self, reason: str) -> None:
        self._event("halt", reason=reason)

    def _event(self, name: str, **fields: Any) -> None:
        if len(self._events) < MAX_EVENTS:
            t = round(self._clock() - self._t0, 3)
            self._events.append({"t": t, "event": name, **fields})

    def to_dict(self) -> dict[str, Any]:
        """The report's ``timeline`` object."""
        projects: dict[str, dict[str, Any]] = {}
        last = max(
            (s for d in (*self._calls.values(), *self._outcomes.values()) for s in d), default=0
        )
        width = -(-(last + 1) // MAX_BUCKETS)  # buckets of this many seconds: at most MAX_BUCKETS

        def sparse(counts: Mapping[int, float], merge: Callable[[float, float], float]) -> Any:
            merged: dict[int, float] = {}
            for second, n in counts.items():
                bucket = second // width
                merged[bucket] = merge(merged[bucket], n) if bucket in merged else n
            return {str(b): n for b, n in sorted(merged.items())}

        def project(pid: str) -> dict[str, Any]:
            return projects.setdefault(
                pid, {"calls": {}, "throttles": {}, "holds": {}, "outcomes": {}}
            )

        for pid, counts in self._calls.items():
            project(pid)["calls"] = sparse(counts, operator.add)
        for pid, counts in self._throttles.items():
            project(pid)["throttles"] = sparse(counts, operator.add)
        for pid, holds in self._holds.items():
            project(pid)["holds"] = sparse(holds, max)
        for (pid, outcome), counts in sorted(self._outcomes.items()):
            project(pid)["outcomes"][outcome] = sparse(counts, operator.add)
        return {
            "interval": INTERVAL * width,
            "started_at": format_time(self._started_at),
            "projects": dict(sorted(projects.items())),
            "events": list(self._events),
        }


def series(counts: Mapping[str, int], *, length: int) -> list[int]:
    """A sparse ``{"<bucket>": n}`` as a dense list of ``length`` buckets (for plotting)."""
    dense = [0] * length
    for second, n in counts.items():
        index = int(second)
        if 0 <= index < length:
            dense[index] += int(n)
    return dense
