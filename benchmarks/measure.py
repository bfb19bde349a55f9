"""One measured client run against a mock: launch it, reap it, and read the mock's journal.

Every client — the bulkstop CLI, the bare aiohttp floor, the openstacksdk peers — is measured
the same way:

* the mock is reset first (fleet as new, journal empty);
* **execution window** = from the arrival at the mock of the first ``os-stop`` (the journal's
  wall clock) to the client's own end of execution (bulkstop: the report's ``finished_at``;
  the peers: the time after their last answer). Start-up, authentication and listing fall
  before it; bulkstop's report writing and process exit after it;
* **stops** = ``os-stop`` requests the mock answered 2xx (its journal), checked against the
  client's own count; stops/s = stops / window;
* **span** = from the arrival of the first ``os-stop`` to the arrival of the last one (both on
  the server's clock: independent of what a client says of itself); span stops/s = stops /
  span; **before** the span = process spawn to the first stop's arrival (interpreter start-up,
  imports, Keystone, listing, planning); **after** = the last stop's arrival to process exit
  (its answer, the report, interpreter exit);
* CPU seconds inside the window for the client, the mock, and the rest of the machine (other
  people's work on a shared machine shows up there), and the client's inside the span;
  whole-process CPU and peak RSS of the client from ``wait4``;
* a run during which the rest of the machine kept more than :data:`QUIET_CORES` of a core busy
  was disturbed by a neighbour: it is run again (at most ``retries`` times) and the least
  disturbed run is kept; ``reruns`` in the results says how often that happened.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bulkstop.mockcloud.journal import KIND_ACTION, KIND_GET, KIND_LIST, RequestRecord

from .job import PeerJob, PeerResult
from .procs import (
    CLIENT,
    MACHINE,
    MOCK,
    BenchmarkError,
    ChildRun,
    MockProcess,
    Sampler,
    Spawner,
    child_env,
)

#: The environment variable that picks bulkstop's event loop (see bulkstop.cli.console).
LOOP_ENV: Final = "BULKSTOP_LOOP"
#: Seconds any one client run may take before it is killed.
RUN_TIMEOUT: Final = 300.0
#: The bulkstop CLI as users run it.
BULKSTOP: Final = (sys.executable, "-m", "bulkstop")
#: Kinds of journal records that are compute API calls (they count against ``--rate``).
COMPUTE_KINDS: Final = frozenset({KIND_LIST, KIND_GET, KIND_ACTION})
#: Answers that mean "throttled".
THROTTLE_STATUSES: Final = frozenset({429, 413})
#: Cores the rest of the machine may use during a run before the run counts as disturbed.
QUIET_CORES: Final = 0.3
#: Outcomes of a bulkstop report that count as a failure of the run.
FAILED_OUTCOMES: Final = ("failed", "not_found", "not_attempted")

_names = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientView:
    """A run as the client itself reports it."""

    #: ``time.time()`` when execution ended.
    finished: float
    #: Servers the client counts as accepted (planned, in a dry run).
    ok: int
    #: Servers (or requests) the client counts as failed.
    failed: int
    #: ``time.time()`` when the run started as the client reports it (bulkstop: before
    #: resolution, after authentication); None if it does not say.
    started: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Launch:
    """How to start one client run, and how to read what it says."""

    label: str
    argv: tuple[str, ...]
    env: dict[str, str]
    read: Callable[[ChildRun], ClientView]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """One measured run (see the module docstring for the definitions)."""

    label: str
    #: os-stop answered 2xx, per the mock's journal...
    stops: int
    #: ...and how many distinct servers they went to.
    servers_stopped: int
    #: What the client counts as accepted / failed.
    client_ok: int
    client_failed: int
    #: Execution window, seconds; NaN-free: 0 when no stop was sent.
    window: float
    stops_per_s: float
    #: Client process, spawn to exit, seconds.
    process_wall: float
    #: CPU seconds: whole client process; client, mock and others within the window.
    client_cpu: float
    client_cpu_window: float
    mock_cpu_window: float
    others_cpu_window: float
    client_peak_rss_mb: float
    #: Throttled answers (429/413) the mock gave.
    throttled: int
    #: First to last ``os-stop`` arrival at the server, seconds (0 with fewer than two).
    span: float = 0.0
    #: Client CPU seconds within the span.
    client_cpu_span: float = 0.0
    #: Seconds from spawn to the first stop's arrival, and from the last one's to exit.
    before_span: float = 0.0
    after_span: float = 0.0
    #: Runs thrown away before this one because a neighbour disturbed them.
    reruns: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def span_stops_per_s(self) -> float:
        """Stops per second over the span of the stop requests."""
        return self.stops / self.span if self.span else 0.0

    @property
    def client_util(self) -> float:
        """Cores the client used on average within the window."""
        return self.client_cpu_window / self.window if self.window else 0.0

    @property
    def mock_util(self) -> float:
        """Cores the mock used on average within the window."""
        return self.mock_cpu_window / self.window if self.window else 0.0

    @property
    def others_util(self) -> float:
        """Cores everything else on the machine used on average within the window."""
        return self.others_cpu_window / self.window if self.window else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, derived figures included."""
        return {
            "label": self.label,
            "stops": self.stops,
            "servers_stopped": self.servers_stopped,
            "client_ok": self.client_ok,
            "client_failed": self.client_failed,
            "window_s": round(self.window, 4),
            "stops_per_s": round(self.stops_per_s, 1),
            "process_wall_s": round(self.process_wall, 3),
            "client_cpu_s": round(self.client_cpu, 3),
            "client_cpu_per_stop_us": _per_stop_us(self.client_cpu, self.stops),
            "client_cpu_window_s": round(self.client_cpu_window, 3),
            "client_cpu_per_stop_window_us": _per_stop_us(self.client_cpu_window, self.stops),
            "mock_cpu_window_s": round(self.mock_cpu_window, 3),
            "mock_cpu_per_stop_window_us": _per_stop_us(self.mock_cpu_window, self.stops),
            "client_util": round(self.client_util, 3),
            "mock_util": round(self.mock_util, 3),
            "others_util": round(self.others_util, 3),
            "client_peak_rss_mb": round(self.client_peak_rss_mb, 1),
            "throttled": self.throttled,
            "span_s": round(self.span, 4),
            "span_stops_per_s": round(self.span_stops_per_s, 1),
            "client_cpu_per_stop_span_us": _per_stop_us(self.client_cpu_span, self.stops),
            "before_span_s": round(self.before_span, 3),
            "after_span_s": round(self.after_span, 3),
            "reruns": self.reruns,
            **self.details,
        }


def _per_stop_us(cpu: float, stops: int) -> float | None:
    return round(cpu / stops * 1e6, 1) if stops else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """A run's result, with the journal and the client's view for scenario-specific figures."""

    result: RunResult
    journal: list[RequestRecord]
    view: ClientView
    child: ChildRun


def measure(
    mock: MockProcess,
    launch: Launch,
    *,
    spawner: Spawner,
    retries: int = 0,
    timeout: float = RUN_TIMEOUT,
) -> Measured:
    """Measure one run; again (``retries`` times at most) while neighbours disturb it."""
    runs = [_measure_once(mock, launch, spawner=spawner, timeout=timeout)]
    while runs[-1].result.others_util > QUIET_CORES and len(runs) <= retries:
        runs.append(_measure_once(mock, launch, spawner=spawner, timeout=timeout))
    best = min(runs, key=lambda run: run.result.others_util)
    return dataclasses.replace(best, result=dataclasses.replace(best.result, reruns=len(runs) - 1))


def _measure_once(
    mock: MockProcess, launch: Launch, *, spawner: Spawner, timeout: float
) -> Measured:
    """Reset the mock, run the client, and measure the run."""
    mock.reset()
    with Sampler({MOCK: mock.pid}) as sampler:
        child = spawner.run(
            launch.argv, env=launch.env, sampler=sampler, timeout=timeout, check=False
        )
    view = launch.read(child)
    journal = mock.journal()
    stops = [r for r in journal if r.kind == KIND_ACTION and r.action == "os-stop" and r.ok]
    arrivals = [r.wall for r in journal if r.kind == KIND_ACTION]
    first = min(arrivals, default=view.finished)
    last = max(arrivals, default=first)
    window = max(view.finished - first, 0.0)
    client_cpu = sampler.cpu_seconds(CLIENT, first, view.finished)
    mock_cpu = sampler.cpu_seconds(MOCK, first, view.finished)
    machine_cpu = sampler.cpu_seconds(MACHINE, first, view.finished)
    result = RunResult(
        label=launch.label,
        stops=len(stops),
        servers_stopped=len({r.server_id for r in stops}),
        client_ok=view.ok,
        client_failed=view.failed,
        window=window,
        stops_per_s=len(stops) / window if window else 0.0,
        process_wall=child.wall,
        client_cpu=child.cpu,
        client_cpu_window=client_cpu,
        mock_cpu_window=mock_cpu,
        others_cpu_window=max(machine_cpu - client_cpu - mock_cpu, 0.0),
        client_peak_rss_mb=child.peak_rss_mb,
        throttled=sum(r.status in THROTTLE_STATUSES for r in journal),
        span=last - first,
        client_cpu_span=sampler.cpu_seconds(CLIENT, first, last),
        before_span=first - child.spawned if arrivals else 0.0,
        after_span=child.reaped - last if arrivals else 0.0,
        details=view.details,
    )
    return Measured(result=result, journal=journal, view=view, child=child)


# -- the clients ------------------------------------------------------------------------------


def bulkstop_launch(
    mock: MockProcess,
    workdir: Path,
    *,
    projects: Sequence[str],
    concurrency: int,
    rate: float,
    dry_run: bool = False,
    label: str = "bulkstop",
    loop: str = "asyncio",
) -> Launch:
    """``bulkstop stop --all`` over ``projects``, as a user runs it, with a JSON report.

    ``loop`` is the event loop it runs on (``BULKSTOP_LOOP``: asyncio or uvloop).
    """
    report = workdir / f"report-{next(_names)}.json"
    argv = [
        *BULKSTOP,
        "stop",
        "--all",
        *(f"--project={pid}" for pid in projects),
        f"--rate={rate:g}",
        f"--concurrency={concurrency}",
        "--yes",
        "--quiet",
        f"--report={report}",
    ]
    if dry_run:
        argv.append("--dry-run")

    def read(child: ChildRun) -> ClientView:
        if child.returncode not in (0, 1) or not report.exists():
            raise BenchmarkError(f"bulkstop exited {child.returncode}: {child.stderr[-2000:]}")
        document = json.loads(report.read_text(encoding="utf-8"))
        report.unlink()
        # The run journal bulkstop keeps beside its report (see bulkstop.record.journal).
        report.with_name(report.stem + ".journal.jsonl").unlink(missing_ok=True)
        outcomes: dict[str, int] = document["summary"]["outcomes"]
        return ClientView(
            finished=_unix(document["finished_at"]),
            started=_unix(document["started_at"]),
            ok=outcomes.get("planned" if dry_run else "accepted", 0),
            failed=sum(outcomes.get(o, 0) for o in FAILED_OUTCOMES),
            details={"outcomes": outcomes, "exit_status": child.returncode},
        )

    env = child_env({**mock.os_env(projects[0]), LOOP_ENV: loop})
    return Launch(label=label, argv=tuple(argv), env=env, read=read)


def peer_launch(
    mock: MockProcess,
    workdir: Path,
    *,
    module: str,
    targets: dict[str, list[str]],
    concurrency: int,
    label: str,
    time_limit: float | None = None,
    loop: str = "asyncio",
) -> Launch:
    """A peer client (``benchmarks.bare`` or ``benchmarks.sdk``) on the same mock; ``loop``: the
    bare loop's event loop."""
    info = mock.info
    job = PeerJob(
        auth_url=info["auth_url"],
        base_url=info["base_url"],
        username=info["username"],
        password=info["password"],
        user_domain=info["user_domain"],
        region=info["region"],
        targets=targets,
        concurrency=concurrency,
        time_limit=time_limit,
        loop=loop,
    ).write(workdir / f"job-{next(_names)}.json")

    def read(child: ChildRun) -> ClientView:
        if child.returncode != 0:
            raise BenchmarkError(f"{module} exited {child.returncode}: {child.stderr[-2000:]}")
        peer = PeerResult.loads(child.stdout)
        return ClientView(
            finished=peer.finished,
            started=peer.first_send,
            ok=peer.ok,
            failed=peer.failed,
            details={"statuses": peer.statuses},
        )

    return Launch(
        label=label,
        argv=(sys.executable, "-m", module, str(job)),
        env=child_env(),
        read=read,
    )


# -- journal figures --------------------------------------------------------------------------


def compute_calls(journal: Iterable[RequestRecord], project_id: str) -> list[RequestRecord]:
    """The compute API calls of one project (what ``--rate`` counts), in arrival order."""
    calls = [r for r in journal if r.project_id == project_id and r.kind in COMPUTE_KINDS]
    return sorted(calls, key=lambda r: r.t)


def median_of(results: Sequence[RunResult]) -> dict[str, Any]:
    """Per numeric figure, the median over repeats (same shape as :meth:`RunResult.as_dict`)."""
    rows = [r.as_dict() for r in results]
    out: dict[str, Any] = {"label": rows[0]["label"], "repeats": len(rows)}
    for key, value in rows[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [row[key] for row in rows if row[key] is not None]
            out[key] = round(statistics.median(values), 4) if values else None
    return out


def _unix(stamp: str) -> float:
    """A report's ISO time (``...Z``) as ``time.time()`` seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
