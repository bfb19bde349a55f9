"""The five benchmark scenarios. Each states its mock's settings and returns a JSON-ready dict.

Every comparison is a ratio of runs made back to back on the same mock (reset in between),
alternating the order from one repeat to the next, because the machine is small and shared:
a number from one moment is not comparable with one from another.

1. :func:`throughput` — stops/s against concurrency, beside the Little's-law ceiling and the
   bare-aiohttp floor.
2. :func:`rate_fidelity` — ``--rate R`` per project as the mock sees it.
3. :func:`throttling` — a mock that throttles below the client's rate (429 + Retry-After).
4. :func:`scale` — 100,000 servers over 20 projects: expansion, total time, memory.
5. :func:`peers` — openstacksdk sequential, openstacksdk with 32 threads, bulkstop.
6. :func:`vs_bare` — bulkstop against the bare aiohttp loop on the mock *and* on the minimal
   Nova of :mod:`benchmarks.nova`: stops/s over the span, wall time, time outside the span, CPU.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from bulkstop.mockcloud.journal import KIND_ACTION, KIND_LIST, peak

from .fleets import BenchFleet, write_fleet
from .measure import (
    Launch,
    Measured,
    RunResult,
    bulkstop_launch,
    compute_calls,
    measure,
    median_of,
    peer_launch,
)
from .procs import MockProcess, Spawner

#: Mock latency of every scenario, seconds (a fast cloud API; real ones answer in 50-300 ms).
LATENCY: Final = 0.020
#: Projects of the throughput fleets.
THROUGHPUT_PROJECTS: Final = 4
#: Concurrency levels of the throughput scenario.
LEVELS: Final = (32, 64, 128, 256, 512, 1024)
QUICK_LEVELS: Final = (64,)
#: Throughput fleets are sized to run about this long at the Little's-law ceiling...
THROUGHPUT_SECONDS: Final = 1.5
#: ...within these bounds.
THROUGHPUT_MIN_SERVERS: Final = 3_000
THROUGHPUT_MAX_SERVERS: Final = 12_000
QUICK_SERVERS: Final = 400

#: Rate fidelity: (projects, --rate, servers per project).
RATE_CASES: Final = ((4, 50.0, 150), (2, 500.0, 1_500))
QUICK_RATE_CASES: Final = ((2, 20.0, 20),)
RATE_CONCURRENCY: Final = 64
#: Achieved rate must be at least this share of --rate (and no 1 s window above --rate).
RATE_FLOOR: Final = 0.95

#: Throttling storm: projects, servers per project, the mock's limit and bucket size, the
#: client's --rate (twice the limit).
STORM: Final = {"projects": 4, "servers": 100, "limit": 20.0, "burst": 20, "rate": 40.0}
QUICK_STORM: Final = {"projects": 2, "servers": 30, "limit": 20.0, "burst": 5, "rate": 40.0}
STORM_CONCURRENCY: Final = 64

#: Scale: servers, projects, concurrency.
SCALE: Final = {"servers": 100_000, "projects": 20, "concurrency": 256}
QUICK_SCALE: Final = {"servers": 2_000, "projects": 4, "concurrency": 64}
SCALE_RSS_TARGET_MB: Final = 300.0

#: Peers: fleet size (one project), servers for the sequential loop and its time cap, threads.
PEERS: Final = {"servers": 4_000, "sequential": 200, "sequential_limit": 20.0}
QUICK_PEERS: Final = {"servers": 300, "sequential": 20, "sequential_limit": 5.0}
PEER_THREADS: Final = 32
PEER_CONCURRENCY: Final = (32, 256)

#: vs bare loop: one project, servers, concurrency, and at least this many interleaved pairs.
VS_BARE: Final = {"servers": 10_000, "concurrency": 256, "pairs": 5}
QUICK_VS_BARE: Final = {"servers": 300, "concurrency": 32, "pairs": 1}
#: The servers it runs against: (name, module run as ``python -m``).
VS_BARE_SERVERS: Final = (("mock", "bulkstop.mockcloud"), ("minimal nova", "benchmarks.nova"))

#: Targets of the issue.
TARGET_CONCURRENCY: Final = 256
TARGET_STOPS_PER_S: Final = 2_000.0
TARGET_FLOOR_SHARE: Final = 0.80
TARGET_VS_SEQUENTIAL: Final = 40.0
TARGET_VS_POOL: Final = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How the scenarios run."""

    quick: bool
    repeats: int
    #: Re-runs allowed per measurement when a neighbour disturbs it (see measure.measure).
    retries: int
    levels: tuple[int, ...]
    workdir: Path
    spawner: Spawner
    log: Callable[[str], None]
    #: Event loop of bulkstop and of the bare loop beside it: "asyncio" or "uvloop".
    loop: str = "asyncio"

    def measure(self, mock: MockProcess, launch: Launch) -> Measured:
        """One measured run of ``launch`` against ``mock``."""
        return measure(mock, launch, spawner=self.spawner, retries=self.retries)


def check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    """A sanity check of a scenario (the pipeline works), not a speed target."""
    return {"name": name, "ok": bool(ok), "detail": detail}


def mock_args(fleet: BenchFleet, *extra: str) -> list[str]:
    """Command-line options of a mock serving ``fleet`` at :data:`LATENCY`."""
    return ["--fleet", str(fleet.path), f"--latency={LATENCY:g}", *extra]


def fleet_size(concurrency: int, quick: bool) -> int:
    """Servers for a throughput level: about :data:`THROUGHPUT_SECONDS` at the ceiling."""
    if quick:
        return QUICK_SERVERS
    servers = math.ceil(concurrency / LATENCY * THROUGHPUT_SECONDS / 1000) * 1000
    return min(max(servers, THROUGHPUT_MIN_SERVERS), THROUGHPUT_MAX_SERVERS)


def all_accepted(name: str, result: RunResult, expected: int) -> dict[str, Any]:
    """Check: every server got exactly one accepted stop and the client saw no failure."""
    ok = (
        result.stops == result.servers_stopped == result.client_ok == expected
        and not result.client_failed
    )
    return check(
        f"{name}: all {expected} accepted",
        ok,
        f"mock 2xx {result.stops} to {result.servers_stopped} servers, "
        f"client ok {result.client_ok}, client failed {result.client_failed}",
    )


def bottleneck(result: dict[str, Any], ceiling: float) -> str:
    """Where a run's time went, from median utilisations (cores) within the window."""
    client, mock = result["client_util"], result["mock_util"]
    if result["stops_per_s"] >= 0.85 * ceiling:
        return "latency (at the ceiling)"
    if client >= 0.85 and client >= mock:
        return f"client CPU ({client:.2f} core)"
    if mock >= 0.85:
        return f"mock CPU ({mock:.2f} core)"
    busy = client + mock + result["others_util"]
    if busy >= 1.7:
        return f"both cores busy ({busy:.2f} incl. others)"
    return f"mixed (client {client:.2f}, mock {mock:.2f} core)"


def paired(
    settings: Settings, mock: MockProcess, launches: Sequence[Callable[[], Launch]]
) -> list[list[Measured]]:
    """Each launch ``settings.repeats`` times, interleaved, alternating the order; runs per
    launch."""
    runs: list[list[Measured]] = [[] for _ in launches]
    for repeat in range(settings.repeats):
        order = list(range(len(launches)))
        if repeat % 2:
            order.reverse()
        for index in order:
            runs[index].append(settings.measure(mock, launches[index]()))
    return runs


def median_ratio(numerators: Sequence[Measured], denominators: Sequence[Measured]) -> float:
    """Median over repeats of the per-repeat ratio of stops/s."""
    ratios = [
        a.result.stops_per_s / b.result.stops_per_s
        for a, b in zip(numerators, denominators, strict=True)
        if b.result.stops_per_s
    ]
    return round(statistics.median(ratios), 3) if ratios else 0.0


# -- 1. throughput ----------------------------------------------------------------------------


def throughput(settings: Settings) -> dict[str, Any]:
    """Stops/s vs concurrency at 20 ms latency, no rate limit, beside ceiling and floor."""
    levels = []
    checks = []
    for concurrency in settings.levels:
        servers = fleet_size(concurrency, settings.quick)
        fleet = write_fleet(settings.workdir, servers=servers, projects=THROUGHPUT_PROJECTS)
        ceiling = concurrency / LATENCY
        settings.log(f"throughput: concurrency {concurrency}, {servers} servers")
        with MockProcess(mock_args(fleet)) as mock:
            targets = {pid: list(ids) for pid, ids in fleet.by_project.items()}
            engine, floor = paired(
                settings,
                mock,
                [
                    partial(
                        bulkstop_launch,
                        mock,
                        settings.workdir,
                        projects=fleet.project_ids,
                        concurrency=concurrency,
                        rate=0,
                        loop=settings.loop,
                    ),
                    partial(
                        peer_launch,
                        mock,
                        settings.workdir,
                        module="benchmarks.bare",
                        targets=targets,
                        concurrency=concurrency,
                        label="bare-aiohttp",
                        loop=settings.loop,
                    ),
                ],
            )
        for run in engine + floor:
            checks.append(all_accepted(f"c={concurrency} {run.result.label}", run.result, servers))
        bulkstop = median_of([m.result for m in engine])
        bare = median_of([m.result for m in floor])
        levels.append(
            {
                "concurrency": concurrency,
                "servers": servers,
                "ceiling_stops_per_s": ceiling,
                "bulkstop": bulkstop,
                "bare": bare,
                "bulkstop_vs_bare": median_ratio(engine, floor),
                "bulkstop_vs_ceiling": round(bulkstop["stops_per_s"] / ceiling, 3),
                "bare_vs_ceiling": round(bare["stops_per_s"] / ceiling, 3),
                "bottleneck_bulkstop": bottleneck(bulkstop, ceiling),
                "bottleneck_bare": bottleneck(bare, ceiling),
                "runs": [m.result.as_dict() for m in engine + floor],
            }
        )
    return {
        "mock": {
            "latency_s": LATENCY,
            "rate_limit": None,
            "projects": THROUGHPUT_PROJECTS,
            "fleet": "all servers active",
        },
        "client": "bulkstop stop --all --rate 0 --concurrency C (CLI, own process)",
        "floor": "benchmarks.bare: one aiohttp session, C workers, same requests",
        "levels": levels,
        "checks": checks,
    }


# -- 2. rate fidelity -------------------------------------------------------------------------


def rate_fidelity(settings: Settings) -> dict[str, Any]:
    """P projects x ``--rate R``: achieved rate and the busiest 1 s window, per project."""
    cases = []
    checks = []
    for projects, rate, per_project in QUICK_RATE_CASES if settings.quick else RATE_CASES:
        fleet = write_fleet(settings.workdir, servers=projects * per_project, projects=projects)
        settings.log(f"rate fidelity: {projects} projects x --rate {rate:g}")
        with MockProcess(mock_args(fleet)) as mock:
            run = settings.measure(
                mock,
                bulkstop_launch(
                    mock,
                    settings.workdir,
                    projects=fleet.project_ids,
                    concurrency=RATE_CONCURRENCY,
                    rate=rate,
                    loop=settings.loop,
                ),
            )
        checks.append(all_accepted(f"rate {rate:g}", run.result, fleet.size))
        rows: list[dict[str, Any]] = []
        for pid in fleet.project_ids:
            calls = compute_calls(run.journal, pid)
            stops = [r.t for r in calls if r.kind == KIND_ACTION]
            span = stops[-1] - stops[0] if len(stops) > 1 else 0.0
            achieved = (len(stops) - 1) / span if span else 0.0
            busiest = peak(calls, window=1.0)
            rows.append(
                {
                    "project_id": pid,
                    "calls": len(calls),
                    "achieved_per_s": round(achieved, 2),
                    "achieved_share": round(achieved / rate, 4),
                    "max_in_1s": busiest,
                }
            )
            checks.append(
                check(
                    f"rate {rate:g}: project {pid[:8]} never above R",
                    busiest <= rate,
                    f"max {busiest} calls in a 1 s window",
                )
            )
        cases.append(
            {
                "projects": projects,
                "rate": rate,
                "servers_per_project": per_project,
                "concurrency": RATE_CONCURRENCY,
                "min_achieved_share": min(r["achieved_share"] for r in rows),
                "max_in_1s": max(r["max_in_1s"] for r in rows),
                "met": all(
                    r["achieved_share"] >= RATE_FLOOR and r["max_in_1s"] <= rate for r in rows
                ),
                "per_project": rows,
                "run": run.result.as_dict(),
            }
        )
    return {
        "mock": {"latency_s": LATENCY, "rate_limit": None},
        "client": "bulkstop stop --all --rate R --concurrency 64",
        "definition": "achieved = (stops - 1) / (last - first stop arrival) of the project; "
        "max_in_1s = most compute calls (listing included) in any window [t, t+1s)",
        "cases": cases,
        "runs": [case["run"] for case in cases],
        "checks": checks,
    }


# -- 3. throttling storm ----------------------------------------------------------------------


def throttling(settings: Settings) -> dict[str, Any]:
    """A mock limiting each project below the client's rate, answering 429 + Retry-After."""
    storm = QUICK_STORM if settings.quick else STORM
    projects, per_project = int(storm["projects"]), int(storm["servers"])
    limit, rate, burst = storm["limit"], storm["rate"], int(storm["burst"])
    fleet = write_fleet(settings.workdir, servers=projects * per_project, projects=projects)
    settings.log(f"throttling: mock limit {limit:g}/s, client --rate {rate:g}")
    throttle = (f"--rate-limit={limit:g}", f"--burst={burst}", "--throttle=429")
    with MockProcess(mock_args(fleet, *throttle)) as mock:
        run = settings.measure(
            mock,
            bulkstop_launch(
                mock,
                settings.workdir,
                projects=fleet.project_ids,
                concurrency=STORM_CONCURRENCY,
                rate=rate,
                loop=settings.loop,
            ),
        )
    first = min(r.wall for r in run.journal if r.kind in (KIND_LIST, KIND_ACTION))
    completion = run.view.finished - first
    # The bucket starts full (burst) and refills at `limit`: the k-th admitted call of a
    # project cannot arrive before (k - burst) / limit, and its answer takes LATENCY more.
    admitted = max(
        sum(r.status not in (429, 413) for r in compute_calls(run.journal, pid))
        for pid in fleet.project_ids
    )
    ideal = max(admitted - burst, 0) / limit + LATENCY
    result = run.result
    return {
        "mock": {
            "latency_s": LATENCY,
            "rate_limit": limit,
            "burst": burst,
            "throttle": "429 overLimit",
            "retry_after": "delta-seconds (ceil of the wait, at least 1)",
        },
        "client": f"bulkstop stop --all --rate {rate:g} --concurrency {STORM_CONCURRENCY}",
        "projects": projects,
        "servers_per_project": per_project,
        "completion_s": round(completion, 3),
        "ideal_s": round(ideal, 3),
        "completion_vs_ideal": round(completion / ideal, 3) if ideal else None,
        "throttled": result.throttled,
        "failures": result.client_failed,
        "runs": [result.as_dict()],
        "checks": [
            all_accepted("throttling", result, fleet.size),
            check("throttling: the mock did throttle", result.throttled > 0, f"{result.throttled}"),
        ],
    }


# -- 4. scale ---------------------------------------------------------------------------------


def scale(settings: Settings) -> dict[str, Any]:
    """100,000 servers over 20 projects: expansion (dry run), then the real run."""
    spec = QUICK_SCALE if settings.quick else SCALE
    servers, projects, concurrency = spec["servers"], spec["projects"], spec["concurrency"]
    fleet = write_fleet(settings.workdir, servers=servers, projects=projects)
    settings.log(f"scale: {servers} servers over {projects} projects")
    with MockProcess(mock_args(fleet)) as mock:
        launch = partial(
            bulkstop_launch,
            mock,
            settings.workdir,
            projects=fleet.project_ids,
            concurrency=concurrency,
            rate=0,
            loop=settings.loop,
        )
        dry = settings.measure(mock, launch(dry_run=True, label="bulkstop --dry-run"))
        real = settings.measure(mock, launch())
        mock_rss = mock.peak_rss_mb()
    assert dry.view.started is not None and real.view.started is not None
    expansion_dry = dry.view.finished - dry.view.started
    first_stop = min(r.wall for r in real.journal if r.kind == KIND_ACTION)
    expansion_real = first_stop - real.view.started
    list_calls = sum(r.kind == KIND_LIST for r in real.journal)
    rss = real.result.client_peak_rss_mb
    return {
        "mock": {"latency_s": LATENCY, "rate_limit": None, "max_limit": 1000},
        "client": f"bulkstop stop --all --rate 0 --concurrency {concurrency}",
        "servers": servers,
        "projects": projects,
        "list_calls": list_calls,
        "expansion_dry_run_s": round(expansion_dry, 3),
        "expansion_in_run_s": round(expansion_real, 3),
        "dry_run_process_s": round(dry.result.process_wall, 3),
        "dry_run_peak_rss_mb": round(dry.result.client_peak_rss_mb, 1),
        "total_process_s": round(real.result.process_wall, 3),
        "execution_window_s": round(real.result.window, 3),
        "stops_per_s": round(real.result.stops_per_s, 1),
        "peak_rss_mb": round(rss, 1),
        "mock_peak_rss_mb": round(mock_rss, 1),
        "runs": [dry.result.as_dict(), real.result.as_dict()],
        "checks": [
            check(
                "scale: dry run planned every server",
                dry.view.ok == servers and dry.result.stops == 0,
                f"planned {dry.view.ok}, stops sent {dry.result.stops}",
            ),
            all_accepted("scale", real.result, servers),
        ],
    }


# -- 5. peers ---------------------------------------------------------------------------------


def peers(settings: Settings) -> dict[str, Any]:
    """openstacksdk (sequential, 32 threads) and bulkstop on the same mock and servers."""
    spec = QUICK_PEERS if settings.quick else PEERS
    servers = int(spec["servers"])
    fleet = write_fleet(settings.workdir, servers=servers, projects=1)
    pid = fleet.project_ids[0]
    everything = {pid: list(fleet.by_project[pid])}
    settings.log(f"peers: {servers} servers, one project")
    with MockProcess(mock_args(fleet)) as mock:
        sequential = settings.measure(
            mock,
            peer_launch(
                mock,
                settings.workdir,
                module="benchmarks.sdk",
                targets={pid: everything[pid][: int(spec["sequential"])]},
                concurrency=1,
                time_limit=spec["sequential_limit"],
                label="openstacksdk sequential",
            ),
        )
        launches: list[Callable[[], Launch]] = [
            partial(
                peer_launch,
                mock,
                settings.workdir,
                module="benchmarks.sdk",
                targets=everything,
                concurrency=PEER_THREADS,
                label=f"openstacksdk {PEER_THREADS} threads",
            ),
            *(
                partial(
                    bulkstop_launch,
                    mock,
                    settings.workdir,
                    projects=[pid],
                    concurrency=c,
                    rate=0,
                    label=f"bulkstop c={c}",
                    loop=settings.loop,
                )
                for c in PEER_CONCURRENCY
            ),
        ]
        runs = paired(settings, mock, launches)
    pool, *engines = runs
    seq_rate = sequential.result.stops_per_s
    rows = [median_of([sequential.result]), *(median_of([m.result for m in r]) for r in runs)]
    checks = [
        check(
            "peers: sequential openstacksdk stopped servers",
            sequential.result.stops > 0 and sequential.result.client_failed == 0,
            f"{sequential.result.stops} stops",
        ),
        *(all_accepted(m.result.label, m.result, servers) for r in runs for m in r),
    ]
    ratios = {}
    for concurrency, engine in zip(PEER_CONCURRENCY, engines, strict=True):
        rate = statistics.median(m.result.stops_per_s for m in engine)
        ratios[f"bulkstop c={concurrency} vs sequential"] = round(rate / seq_rate, 1)
        ratios[f"bulkstop c={concurrency} vs {PEER_THREADS} threads"] = median_ratio(engine, pool)
    return {
        "mock": {"latency_s": LATENCY, "rate_limit": None, "projects": 1},
        "servers": servers,
        "sequential_servers": min(servers, int(spec["sequential"])),
        "sequential_time_limit_s": spec["sequential_limit"],
        "clients": rows,
        "ratios": ratios,
        "runs": [m.result.as_dict() for r in [[sequential], *runs] for m in r],
        "checks": checks,
    }


# -- 6. vs bare loop --------------------------------------------------------------------------


def vs_bare(settings: Settings) -> dict[str, Any]:
    """bulkstop (the CLI) against the bare aiohttp loop, on our mock and on the minimal Nova.

    Each pair runs back to back on the same server (reset in between), the order alternating;
    every ratio is the median of the per-pair ratios.
    """
    spec = QUICK_VS_BARE if settings.quick else VS_BARE
    servers, concurrency = spec["servers"], spec["concurrency"]
    pairs = max(settings.repeats, spec["pairs"])
    fleet = write_fleet(settings.workdir, servers=servers, projects=1)
    pid = fleet.project_ids[0]
    per_server = []
    checks = []
    for name, module in VS_BARE_SERVERS:
        settings.log(f"vs bare loop: {name}, {servers} servers, c={concurrency}, {pairs} pairs")
        with MockProcess(mock_args(fleet), module=module) as server:
            engine, floor = paired(
                dataclasses.replace(settings, repeats=pairs),
                server,
                [
                    partial(
                        bulkstop_launch,
                        server,
                        settings.workdir,
                        projects=[pid],
                        concurrency=concurrency,
                        rate=0,
                        loop=settings.loop,
                    ),
                    partial(
                        peer_launch,
                        server,
                        settings.workdir,
                        module="benchmarks.bare",
                        targets={pid: list(fleet.by_project[pid])},
                        concurrency=concurrency,
                        label="bare-aiohttp",
                        loop=settings.loop,
                    ),
                ],
            )
        checks += [
            all_accepted(f"vs bare, {name}: {m.result.label}", m.result, servers)
            for m in engine + floor
        ]
        per_server.append(
            {
                "server": name,
                "module": module,
                "bulkstop": median_of([m.result for m in engine]),
                "bare": median_of([m.result for m in floor]),
                "ratios": {
                    key: _pair_ratio(engine, floor, key, invert=invert)
                    for key, invert in VS_BARE_RATIOS
                },
                "runs": [m.result.as_dict() for m in engine + floor],
            }
        )
    return {
        "mock": {"latency_s": LATENCY, "rate_limit": None, "projects": 1},
        "servers": servers,
        "concurrency": concurrency,
        "pairs": pairs,
        "loop": settings.loop,
        "client": f"bulkstop stop --all --rate 0 --concurrency {concurrency} (CLI, own process)",
        "floor": "benchmarks.bare: one token, one aiohttp session, C workers, same requests",
        "definition": "span = first to last os-stop arrival at the server; before = spawn to "
        "first arrival; after = last arrival to exit; ratios are bulkstop/bare for rates and "
        "bare/bulkstop for times and CPU (above 1 = bulkstop better), medians of per-pair ratios",
        "per_server": per_server,
        "runs": [run for entry in per_server for run in entry["runs"]],
        "checks": checks,
    }


#: The figures vs_bare compares pair by pair; True: smaller is better (ratio bare/bulkstop).
VS_BARE_RATIOS: Final = (
    ("span_stops_per_s", False),
    ("process_wall_s", True),
    ("client_cpu_per_stop_span_us", True),
    ("client_cpu_per_stop_us", True),
)


def _pair_ratio(
    numerators: Sequence[Measured], denominators: Sequence[Measured], key: str, *, invert: bool
) -> float | None:
    """Median over pairs of ``key`` bulkstop/bare (bare/bulkstop when ``invert``)."""
    ratios = []
    for a, b in zip(numerators, denominators, strict=True):
        x, y = a.result.as_dict()[key], b.result.as_dict()[key]
        if invert:
            x, y = y, x
        if x is not None and y:
            ratios.append(x / y)
    return round(statistics.median(ratios), 3) if ratios else None


def huawei(settings: Settings) -> dict[str, Any]:
    """Native vs batch API on Huawei bare metal (:mod:`benchmarks.huawei`)."""
    from .huawei import huawei as scenario  # it imports this module: import when run

    return scenario(settings)


SCENARIOS: Final[dict[str, Callable[[Settings], dict[str, Any]]]] = {
    "throughput": throughput,
    "rate": rate_fidelity,
    "throttling": throttling,
    "scale": scale,
    "peers": peers,
    "vsbare": vs_bare,
    "huawei": huawei,
}
