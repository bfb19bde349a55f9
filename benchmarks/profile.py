"""Profile one ``bulkstop stop`` run against the mock or the minimal Nova, with py-spy.

``python -m benchmarks.profile [--server mock|nova] [--servers N] [--concurrency C] [--out DIR]``
starts the server in its own process, runs ``py-spy record --nonblocking -f speedscope`` around
the bulkstop CLI (as the vsbare scenario runs it) and writes ``DIR/<server>.speedscope.json``
(open it in speedscope.app) and ``DIR/<server>.stacks.txt`` (collapsed stacks, one line per
stack with its sample count, for ``flamegraph.pl``).

speedscope keeps the samples of each thread in order, so the main thread's samples are cut
into the run's phases (:data:`PHASES`: start-up and imports, listing, planning, the span of the
stop requests, the end) by the first sample of each phase's marker; a phase's samples at
:data:`RATE` per second are its CPU time, roughly (py-spy leaves out a thread while it
waits). Inside the span, each sample goes to what runs at its leaf: bulkstop's own code by
stage (:data:`OWN`: the journal, the ledger and results, the gate...), or a library — aiohttp
and the event loop run the same code per request as the bare loop; anyio's share is
bulkstop's task groups, scopes and semaphore.

py-spy is a dev tool, not a dependency: ``pip install py-spy``. ``--nonblocking`` keeps the
process at full speed (sampling with stops makes a fan-out 4x slower and the profile lies).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from .fleets import write_fleet
from .measure import BULKSTOP, LOOP_ENV
from .procs import MockProcess, child_env
from .scenarios import LATENCY, mock_args

SERVERS: Final = {"mock": "bulkstop.mockcloud", "nova": "benchmarks.nova"}
#: Samples per second (py-spy's default is 100; more gives finer shares on a short run).
RATE: Final = 250
#: Rows of each table.
TOP: Final = 12

#: The main thread's phases, in order, each starting at the first sample with its marker (a
#: function name) on the stack.
PHASES: Final = (
    ("start-up: interpreter, imports, configuration, Keystone", ""),
    ("listing (pages fetched, parsed, judged)", "list_page"),
    ("planning, rails, journal header", "Resolver._plan"),
    ("span of the stop requests", "HttpCompute.action"),
    ("end: report, summary, exit", "_publish"),
)
#: bulkstop's own code by what it is for: the first path fragment that matches a leaf's file.
OWN: Final = (
    ("run journal (intent before each request, outcome after)", ("record/journal.py",)),
    ("per-second timeline (report, --plot)", ("record/timeline.py",)),
    ("report rows", ("record/report.py",)),
    ("ledger and result records", ("execute/ledger.py", "models.py")),
    ("gate: slots, retries, verdict", ("execute/gate.py", "cloud/verdict.py")),
    ("rate budget", ("execute/budget.py",)),
    ("halting (rails, Ctrl-C, deadline)", ("execute/halt.py",)),
    ("dispatch workers", ("execute/dispatch.py", "execute/observer.py")),
    ("HTTP wrapper (URL, headers, reply)", ("cloud/",)),
    ("other bulkstop code", ("bulkstop/",)),
)


def profile_run(speedscope: dict[str, Any], top: int = TOP) -> str:
    """The report: phases of the main thread, then the span's samples by who runs at the leaf."""
    frames = speedscope["shared"]["frames"]
    main = max(speedscope["profiles"], key=lambda p: len(p["samples"]))
    names = [frame["name"] for frame in frames]
    files = [frame.get("file", "") for frame in frames]
    phase_of = _phases(main["samples"], names)
    counts = collections.Counter(phase_of)
    lines = [f"main thread: {len(main['samples'])} samples at {RATE}/s", "", "phases:"]
    for n, (phase, _) in enumerate(PHASES):
        lines.append(f"  {counts[n]:6d} samples ~{counts[n] / RATE:6.2f} s of CPU  {phase}")
    span = [s for s, p in zip(main["samples"], phase_of, strict=True) if p == 3 and s]
    if not span:
        return "\n".join(lines)
    own: collections.Counter[str] = collections.Counter()
    libraries: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    for stack in span:
        leaf = files[stack[-1]]
        if "bulkstop/" in leaf:
            own[next(name for name, paths in OWN if any(p in leaf for p in paths))] += 1
            functions[f"{names[stack[-1]]} ({leaf.rsplit('bulkstop/', 1)[-1]})"] += 1
        else:
            libraries[_library(leaf)] += 1
    total = len(span)
    lines += ["", f"span: {total} samples; bulkstop's own code at the leaf, by stage:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common()]
    lines += [f"  {sum(own.values()) / total:6.1%}  in all", "", "libraries at the leaf:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in libraries.most_common(top)]
    lines += ["", "bulkstop functions at the leaf:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in functions.most_common(top)]
    return "\n".join(lines)


def _phases(samples: list[list[int]], names: list[str]) -> list[int]:
    """Each sample's phase (an index into :data:`PHASES`): phases only move forward."""
    out: list[int] = []
    phase = 0
    for stack in samples:
        for following in range(phase + 1, len(PHASES)):
            marker = PHASES[following][1]
            if any(marker in names[i] for i in stack):
                phase = following
        out.append(phase)
    return out


def _library(path: str) -> str:
    """A leaf's library: its top-level package, or the standard library module."""
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[-1].split("/", 1)[0]
    if "/lib/python3" in path:
        return "stdlib " + path.rsplit("/", 1)[-1]
    return path or "(native)"


def collapsed(speedscope: dict[str, Any]) -> str:
    """Every thread's samples as collapsed stacks (``a;b;c count``), for ``flamegraph.pl``."""
    frames = speedscope["shared"]["frames"]
    label = [f"{f['name']} ({f.get('file', '')}:{f.get('line', '')})" for f in frames]
    stacks: collections.Counter[str] = collections.Counter()
    for profile in speedscope["profiles"]:
        for stack in profile["samples"]:
            stacks[";".join([profile["name"], *(label[i] for i in stack)])] += 1
    return "".join(f"{stack} {n}\n" for stack, n in stacks.most_common())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--server", choices=tuple(SERVERS), default="nova")
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy (a dev tool, not a dependency)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    recorded = args.out / f"{args.server}.speedscope.json"
    with tempfile.TemporaryDirectory(prefix="bulkstop-profile-") as tmp:
        workdir = Path(tmp)
        fleet = write_fleet(workdir, servers=args.servers, projects=1)
        pid = fleet.project_ids[0]
        with MockProcess(mock_args(fleet), module=SERVERS[args.server]) as server:
            env = child_env({**server.os_env(pid), LOOP_ENV: args.loop})
            command = [
                *BULKSTOP,
                "stop",
                "--all",
                f"--project={pid}",
                "--rate=0",
                f"--concurrency={args.concurrency}",
                "--yes",
                "--quiet",
                f"--report={workdir / 'report.json'}",
            ]
            record = [spy, "record", "--nonblocking", "-r", str(RATE), "-f", "speedscope", "-o"]
            done = subprocess.run(
                [*record, str(recorded), "--", *command],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
    if done.returncode != 0 or not recorded.exists():
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    speedscope = json.loads(recorded.read_text(encoding="utf-8"))
    stacks = args.out / f"{args.server}.stacks.txt"
    stacks.write_text(collapsed(speedscope), encoding="utf-8")
    print(f"{args.server}, {args.servers} servers, c={args.concurrency}, latency {LATENCY:g} s")
    print(profile_run(speedscope))
    print(f"\nspeedscope: {recorded}\nstacks: {stacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
