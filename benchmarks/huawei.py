"""Scenario ``huawei``: stopping bare metal on Huawei Cloud, native v2.1 vs the batch API.

The mock runs in Huawei AK/SK mode with every server bare metal and a quota of
:data:`QUOTA` calls/s per project (APIG.0308 429s above it, no ``Retry-After``); bulkstop runs
with ``--rate`` at the quota. Measured per run, from the mock's request journal:

* **calls**: every compute request the mock saw (listing, stops, batch POSTs, job polls);
* **span**: seconds from the first request to the last one, i.e. until every server's
  outcome was known (native: its stop answered, ``accepted``; batch: its job ended, seen by
  a poll — after 2 s, the library's ``poll_interval``, then each wait 1.5 times the last, up
  to 10 s);
* **done**: servers ``accepted`` (native) or ``stopped`` (batch); the seeded fleet has some
  already stopped, which neither path sends.

The batch time depends on how long Huawei's jobs take, which nobody outside Huawei has
measured for us: :data:`JOB_DURATIONS` are a **guess** (a short job of a few seconds, and a
long one), not a documented figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Final

from .procs import ROOT, MockProcess, child_env
from .scenarios import Settings, check
from .table import render

#: Bare metal servers, in one project.
SERVERS: Final = 2_000
QUICK_SERVERS: Final = 20
#: The mock's (and the client's) calls per second per project.
QUOTA: Final = 20
#: Seconds a batch job takes in the mock: a guess (short, long), see the module docstring.
JOB_DURATIONS: Final = (2.0, 30.0)
QUICK_JOB_DURATIONS: Final = (0.2, 0.5)
#: Seconds one bulkstop run may take (the native run takes about SERVERS / QUOTA).
RUN_TIMEOUT: Final = 900.0
#: The batch path must use at least this many times fewer calls (issue 9).
TARGET_FEWER_CALLS: Final = 100.0


def huawei(settings: Settings) -> dict[str, Any]:
    """Native vs batch on :data:`SERVERS` bare metal servers under a quota of :data:`QUOTA`/s."""
    servers = QUICK_SERVERS if settings.quick else SERVERS
    durations = QUICK_JOB_DURATIONS if settings.quick else JOB_DURATIONS
    runs = [_run(settings, servers, api="native", job_duration=durations[0])]
    runs += [_run(settings, servers, api="batch", job_duration=d) for d in durations]
    native = runs[0]
    fewer = [native["calls"] / r["calls"] if r["calls"] else 0.0 for r in runs[1:]]
    checks = [
        check(
            f"huawei: {r['label']}: every server sent stopped or accepted, none failed",
            r["exit_code"] == 0 and r["done"] == native["done"] and not r["unfinished"],
            f"{r['done']} done, {r['unfinished']} failed or not attempted, exit {r['exit_code']}",
        )
        for r in runs
    ]
    if not settings.quick:
        checks.append(
            check(
                f"huawei: batch uses >= {TARGET_FEWER_CALLS:g}x fewer calls",
                min(fewer) >= TARGET_FEWER_CALLS,
                ", ".join(f"{f:.0f}x" for f in fewer),
            )
        )
    return {
        "servers": servers,
        "quota_per_s": QUOTA,
        "job_durations_s": list(durations),
        "job_duration_source": "a guess: no published figure for Huawei's job durations",
        "clients": runs,
        "fewer_calls": [round(f, 1) for f in fewer],
        "runs": [{"reruns": 0}],
        "checks": checks,
    }


def _run(settings: Settings, servers: int, *, api: str, job_duration: float) -> dict[str, Any]:
    label = "native" if api == "native" else f"batch, job {job_duration:g}s"
    settings.log(f"huawei: {label}, {servers} bare metal servers, quota {QUOTA}/s")
    args = (
        *("--huawei", "--servers", str(servers), "--projects", "1", "--seed", "1"),
        *("--baremetal-fraction", "1", "--job-duration", f"{job_duration:g}"),
        *("--rate-limit", str(QUOTA), "--throttle", "apig", "--retry-after", "none"),
    )
    with MockProcess(args) as mock:
        info = mock.info
        env = child_env(
            {
                "OS_ACCESS_KEY": str(info["access_key"]),
                "OS_SECRET_KEY": str(info["secret_key"]),
                "OS_PROJECT_ID": mock.project_ids[0],
                "OS_REGION_NAME": str(info["region"]),
            }
        )
        command = [
            *(sys.executable, "-m", "bulkstop", "stop", "--all", "--yes", "--quiet"),
            *("--rate", str(QUOTA), "--report", "-", "--journal", str(settings.workdir / "j")),
            *("--endpoint", str(info["compute_url_template"]), "--api", api),
        ]
        if api == "batch":
            command += ["--batch-endpoint", str(info["batch_url_template"])]
            command += ["--stop-type", "HARD"]
        (settings.workdir / "j").unlink(missing_ok=True)
        done = subprocess.run(
            command,
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        journal = [r for r in mock.journal() if r.kind != "admin"]
    report = json.loads(done.stdout) if done.stdout.strip() else {"servers": []}
    finished = {"stopped", "accepted"}
    unfinished = {"failed", "not_attempted", "not_found"}
    span = max(r.wall for r in journal) - min(r.wall for r in journal) if journal else 0.0
    return {
        "label": label,
        "api": api,
        "job_duration_s": job_duration if api == "batch" else None,
        "calls": len(journal),
        "throttled": sum(r.status == 429 for r in journal),
        "span_s": round(span, 2),
        "done": sum(s["outcome"] in finished for s in report["servers"]),
        "unfinished": sum(s["outcome"] in unfinished for s in report["servers"]),
        "exit_code": done.returncode,
    }


def table(s: dict[str, Any]) -> str:
    """The scenario's table for ``python -m benchmarks``."""
    rows = [
        [c["label"], c["calls"], c["throttled"], f"{c['span_s']:.1f}", c["done"]]
        for c in s["clients"]
    ]
    fewer = ", ".join(f"{f:g}x" for f in s["fewer_calls"])
    return (
        f"7. Huawei bare metal ({s['servers']:,} servers, quota {s['quota_per_s']} calls/s, "
        f"job durations {s['job_durations_s']} s: a guess)\n"
        + render(["client", "calls", "429s", "until all known s", "done"], rows)
        + f"\n  batch uses fewer calls than native: {fewer}"
    )
