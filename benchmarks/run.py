"""``python -m benchmarks``: run the scenarios, print the tables, write the JSON.

Options: ``--quick`` (a smoke run of seconds: tiny fleets, one concurrency level, one repeat),
``--only NAME,...`` (scenarios: throughput, rate, throttling, scale, peers, vsbare, huawei),
``--repeats N``, ``--levels 32,64,...``, ``--loop auto|asyncio|uvloop``, ``--json PATH``. Exit
status 0 when every sanity check passed, 1 when one failed (a failure is a broken pipeline, not
a missed speed target).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from .huawei import table as huawei_table
from .measure import QUIET_CORES
from .procs import ROOT, Spawner
from .scenarios import (
    LEVELS,
    QUICK_LEVELS,
    RATE_FLOOR,
    SCALE_RSS_TARGET_MB,
    SCENARIOS,
    TARGET_CONCURRENCY,
    TARGET_FLOOR_SHARE,
    TARGET_STOPS_PER_S,
    TARGET_VS_POOL,
    TARGET_VS_SEQUENTIAL,
    Settings,
)
from .table import render

RESULTS: Final = ROOT / "benchmarks" / "results"
#: The vs-bare-loop targets of issue 14: (ratio, target name, at least).
VS_BARE_TARGETS: Final = (
    ("span_stops_per_s", "stops/s over the span vs bare loop", 1.0),
    ("client_cpu_per_stop_span_us", "bare CPU/stop in span ÷ bulkstop's", 1.0),
    ("process_wall_s", "bare wall time ÷ bulkstop's", 0.65),
)
DEFAULT_REPEATS: Final = 3
#: Re-runs of a measurement a neighbour disturbed (see benchmarks.measure).
DEFAULT_RETRIES: Final = 2


def checkout() -> dict[str, Any]:
    """Which code was measured: the commit, and how many files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified_files": len(status.splitlines()),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiohttp": metadata.version("aiohttp"),
        "openstacksdk": metadata.version("openstacksdk"),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }


def resolve_loop(choice: str) -> str:
    """``auto``: uvloop when it is installed (what bulkstop itself picks), else asyncio."""
    if choice != "auto":
        return choice
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


# -- targets ----------------------------------------------------------------------------------


def targets(scenarios: dict[str, Any], *, quick: bool) -> list[dict[str, Any]]:
    """The issue's targets, each with what was measured and whether it holds (None: a quick
    run is too small to judge)."""
    out: list[dict[str, Any]] = []

    def add(name: str, required: str, measured: float | str, met: bool) -> None:
        out.append(
            {
                "target": name,
                "required": required,
                "measured": measured,
                "met": None if quick else met,
            }
        )

    levels = {lv["concurrency"]: lv for lv in scenarios.get("throughput", {}).get("levels", [])}
    if TARGET_CONCURRENCY in levels:
        level = levels[TARGET_CONCURRENCY]
        rate = level["bulkstop"]["stops_per_s"]
        add(
            f"stops/s at c={TARGET_CONCURRENCY}, 20 ms",
            f">= {TARGET_STOPS_PER_S:,.0f}",
            rate,
            rate >= TARGET_STOPS_PER_S,
        )
        share = level["bulkstop_vs_bare"]
        add(
            f"share of bare-aiohttp floor at c={TARGET_CONCURRENCY}",
            f">= {TARGET_FLOOR_SHARE:.0%}",
            share,
            share >= TARGET_FLOOR_SHARE,
        )
    ratios = scenarios.get("peers", {}).get("ratios", {})
    key = f"bulkstop c={TARGET_CONCURRENCY} vs sequential"
    if key in ratios:
        add(key, f">= {TARGET_VS_SEQUENTIAL:g}x", ratios[key], ratios[key] >= TARGET_VS_SEQUENTIAL)
        key = f"bulkstop c={TARGET_CONCURRENCY} vs 32 threads"
        add(key, f">= {TARGET_VS_POOL:g}x", ratios[key], ratios[key] >= TARGET_VS_POOL)
    if "scale" in scenarios:
        scale = scenarios["scale"]
        add(
            f"peak RSS, {scale['servers']:,} servers",
            f"< {SCALE_RSS_TARGET_MB:g} MB",
            scale["peak_rss_mb"],
            scale["peak_rss_mb"] < SCALE_RSS_TARGET_MB,
        )
    for case in scenarios.get("rate", {}).get("cases", []):
        add(
            f"rate fidelity {case['projects']} x {case['rate']:g}/s",
            f">= {RATE_FLOOR:.0%} of R, max 1 s window <= R",
            f"{case['min_achieved_share']:.1%}, max {case['max_in_1s']}",
            case["met"],
        )
    if "throttling" in scenarios:
        storm = scenarios["throttling"]
        add("throttling storm failures", "0", storm["failures"], storm["failures"] == 0)
    for entry in scenarios.get("vsbare", {}).get("per_server", []):
        for key, name, floor in VS_BARE_TARGETS:
            value = entry["ratios"][key]
            add(
                f"{name}, {entry['server']}",
                f">= {floor:g}x",
                value if value is not None else "-",
                value is not None and value >= floor,
            )
    return out


# -- tables -----------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "NO"


def tables(results: dict[str, Any]) -> str:
    """The human summary: one table per scenario, then the targets and the checks."""
    parts: list[str] = []
    scenarios = results["scenarios"]
    if "throughput" in scenarios:
        rows = []
        for lv in scenarios["throughput"]["levels"]:
            b, f = lv["bulkstop"], lv["bare"]
            rows.append(
                [
                    lv["concurrency"],
                    _f(lv["servers"]),
                    _f(lv["ceiling_stops_per_s"]),
                    _f(b["stops_per_s"]),
                    _f(f["stops_per_s"]),
                    f"{lv['bulkstop_vs_bare']:.0%}",
                    f"{lv['bulkstop_vs_ceiling']:.0%}",
                    _f(b["client_cpu_per_stop_window_us"]),
                    _f(f["client_cpu_per_stop_window_us"]),
                    _f(b["client_cpu_per_stop_us"]),
                    _f(b["mock_cpu_per_stop_window_us"]),
                    _f(b["client_peak_rss_mb"]),
                    _f(f["client_peak_rss_mb"]),
                    f"{b['client_util']:.2f}/{b['mock_util']:.2f}/{b['others_util']:.2f}",
                    lv["bottleneck_bulkstop"],
                ]
            )
        parts.append(
            "1. Throughput vs concurrency (20 ms mock latency, no rate limit, "
            f"{scenarios['throughput']['mock']['projects']} projects; medians)\n"
            + render(
                [
                    "conc",
                    "servers",
                    "ceiling/s",
                    "bulkstop/s",
                    "bare/s",
                    "vs bare",
                    "vs ceil",
                    "cpu µs/stop",
                    "bare µs",
                    "proc µs",
                    "mock µs",
                    "RSS MB",
                    "bare MB",
                    "cores c/m/oth",
                    "bottleneck (bulkstop)",
                ],
                rows,
            )
        )
    if "rate" in scenarios:
        rows = []
        for case in scenarios["rate"]["cases"]:
            for p in case["per_project"]:
                rows.append(
                    [
                        f"{case['projects']} x {case['rate']:g}/s",
                        p["project_id"][:8],
                        p["calls"],
                        _f(p["achieved_per_s"], 1),
                        f"{p['achieved_share']:.1%}",
                        p["max_in_1s"],
                        "yes" if case["met"] else "NO",
                    ]
                )
        parts.append(
            "2. Rate fidelity (as the mock saw it)\n"
            + render(["case", "project", "calls", "achieved/s", "of R", "max in 1 s", "met"], rows)
        )
    if "throttling" in scenarios:
        s = scenarios["throttling"]
        parts.append(
            f"3. Throttling storm (mock limit {s['mock']['rate_limit']:g}/s per project, "
            f"{s['client']})\n"
            + render(
                ["projects", "servers", "completion s", "ideal s", "vs ideal", "429s", "failures"],
                [
                    [
                        s["projects"],
                        s["projects"] * s["servers_per_project"],
                        _f(s["completion_s"], 2),
                        _f(s["ideal_s"], 2),
                        f"{s['completion_vs_ideal']:.2f}x",
                        s["throttled"],
                        s["failures"],
                    ]
                ],
            )
        )
    if "scale" in scenarios:
        s = scenarios["scale"]
        parts.append(
            f"4. Scale ({s['servers']:,} servers over {s['projects']} projects, {s['client']})\n"
            + render(
                [
                    "list calls",
                    "expansion s (dry run)",
                    "expansion s (in run)",
                    "total s",
                    "exec s",
                    "stops/s",
                    "peak RSS MB",
                    "dry-run RSS MB",
                    "mock RSS MB",
                ],
                [
                    [
                        s["list_calls"],
                        _f(s["expansion_dry_run_s"], 2),
                        _f(s["expansion_in_run_s"], 2),
                        _f(s["total_process_s"], 2),
                        _f(s["execution_window_s"], 2),
                        _f(s["stops_per_s"]),
                        _f(s["peak_rss_mb"]),
                        _f(s["dry_run_peak_rss_mb"]),
                        _f(s["mock_peak_rss_mb"]),
                    ]
                ],
            )
        )
    if "peers" in scenarios:
        s = scenarios["peers"]
        rows = [
            [
                c["label"],
                c["stops"],
                _f(c["window_s"], 2),
                _f(c["stops_per_s"]),
                _f(c["client_cpu_per_stop_window_us"]),
                _f(c["process_wall_s"], 2),
                _f(c["client_peak_rss_mb"]),
                f"{c['client_util']:.2f}/{c['mock_util']:.2f}/{c['others_util']:.2f}",
            ]
            for c in s["clients"]
        ]
        ratio_lines = "\n".join(f"  {k}: {v:g}x" for k, v in s["ratios"].items())
        parts.append(
            f"5. Peers (same mock, {s['servers']:,} servers in one project; the sequential loop "
            f"stops the first {s['sequential_servers']})\n"
            + render(
                [
                    "client",
                    "stops",
                    "exec s",
                    "stops/s",
                    "cpu µs/stop",
                    "process s",
                    "RSS MB",
                    "cores c/m/oth",
                ],
                rows,
            )
            + "\n"
            + ratio_lines
        )
    if "vsbare" in scenarios:
        parts.append(_vs_bare_table(scenarios["vsbare"]))
    if "huawei" in scenarios:
        parts.append(huawei_table(scenarios["huawei"]))
    judged = "" if not results["meta"]["quick"] else " (a quick run is too small to judge them)"
    parts.append(
        f"Targets{judged}\n"
        + render(
            ["target", "required", "measured", "met"],
            [
                [t["target"], t["required"], t["measured"], _verdict(t["met"])]
                for t in results["targets"]
            ],
        )
    )
    checks = [c for s in scenarios.values() for c in s["checks"]]
    failed = [c for c in checks if not c["ok"]]
    lines = [
        f"Measurements re-run because a neighbour kept > {QUIET_CORES:g} core busy: "
        f"{results['meta']['reruns']}",
        f"Sanity checks: {len(checks) - len(failed)}/{len(checks)} passed",
    ]
    lines += [f"  FAILED {c['name']}: {c['detail']}" for c in failed]
    parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _vs_bare_table(s: dict[str, Any]) -> str:
    """Table 6: bulkstop and the bare loop, per server, and the per-pair ratios."""
    rows = []
    ratio_lines = []
    for entry in s["per_server"]:
        for client in ("bulkstop", "bare"):
            c = entry[client]
            rows.append(
                [
                    entry["server"],
                    c["label"],
                    _f(c["span_stops_per_s"]),
                    _f(c["span_s"], 2),
                    _f(c["process_wall_s"], 2),
                    _f(c["before_span_s"], 2),
                    _f(c["after_span_s"], 2),
                    _f(c["client_cpu_per_stop_span_us"]),
                    _f(c["client_cpu_per_stop_us"]),
                    _f(c["client_peak_rss_mb"]),
                    f"{c['client_util']:.2f}/{c['mock_util']:.2f}/{c['others_util']:.2f}",
                ]
            )
        r = entry["ratios"]
        ratio_lines.append(
            f"  {entry['server']}: span stops/s bulkstop÷bare {_x(r['span_stops_per_s'])}; "
            f"wall bare÷bulkstop {_x(r['process_wall_s'])}; CPU/stop in span bare÷bulkstop "
            f"{_x(r['client_cpu_per_stop_span_us'])}, whole process "
            f"{_x(r['client_cpu_per_stop_us'])}"
        )
    return (
        f"6. vs bare loop ({s['servers']:,} servers in one project, c={s['concurrency']}, "
        f"{s['loop']} loop, 20 ms; medians of {s['pairs']} interleaved pairs)\n"
        + render(
            [
                "server",
                "client",
                "span stops/s",
                "span s",
                "wall s",
                "before s",
                "after s",
                "cpu µs/stop span",
                "proc µs/stop",
                "RSS MB",
                "cores c/m/oth",
            ],
            rows,
        )
        + "\n"
        + "\n".join(ratio_lines)
    )


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="bulkstop benchmarks against the mock cloud"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds, tiny fleets")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--repeats", type=int, help=f"runs per figure [{DEFAULT_REPEATS}; 1 quick]")
    parser.add_argument(
        "--retries",
        type=int,
        help=f"re-runs of a measurement a neighbour disturbed [{DEFAULT_RETRIES}; 0 quick]",
    )
    parser.add_argument("--levels", help="throughput concurrency levels, comma-separated")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop of bulkstop and of the bare loop [auto: uvloop when installed]",
    )
    parser.add_argument("--json", type=Path, help="results file [benchmarks/results/latest.json]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    levels = (
        tuple(int(v) for v in args.levels.split(","))
        if args.levels
        else (QUICK_LEVELS if args.quick else LEVELS)
    )
    json_path = args.json or RESULTS / ("quick.json" if args.quick else "latest.json")
    began = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])]),
            "quick": args.quick,
            "machine": machine(),
            "checkout": checkout(),
        },
        "scenarios": {},
    }

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {message}", file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="bulkstop-bench-") as workdir,
        Spawner(Path(workdir)) as spawner,
    ):
        settings = Settings(
            quick=args.quick,
            repeats=args.repeats or (1 if args.quick else DEFAULT_REPEATS),
            retries=args.retries
            if args.retries is not None
            else 0
            if args.quick
            else DEFAULT_RETRIES,
            levels=levels,
            workdir=Path(workdir),
            spawner=spawner,
            log=log,
            loop=resolve_loop(args.loop),
        )
        results["meta"]["repeats"] = settings.repeats
        results["meta"]["loop"] = settings.loop
        for name in names:
            results["scenarios"][name] = SCENARIOS[name](settings)
    results["meta"]["duration_s"] = round(time.monotonic() - began, 1)
    results["meta"]["reruns"] = sum(
        run["reruns"]
        for s in results["scenarios"].values()
        for run in s.get("runs") or [r for level in s["levels"] for r in level["runs"]]
    )
    results["meta"]["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["targets"] = targets(results["scenarios"], quick=args.quick)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(tables(results))
    print(f"\nJSON: {json_path}  ({results['meta']['duration_s']} s)")
    checks = [c for s in results["scenarios"].values() for c in s["checks"]]
    return 0 if all(c["ok"] for c in checks) else 1
