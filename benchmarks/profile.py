"""Profile one ``bulkstop stop`` run against the mock or the minimal Nova, with py-spy.

``python -m benchmarks.profile [--server mock|nova] [--servers N] [--concurrency C] [--out DIR]``
starts the server in its own process, runs ``py-spy record --nonblocking -f raw`` around the
bulkstop CLI (as the vsbare scenario runs it) and writes ``DIR/<server>.stacks.txt`` (collapsed
stacks, one line per stack with its sample count: feed it to ``flamegraph.pl`` or speedscope).
It also prints the shares of samples by category (imports, Keystone, listing, journal, report,
HTTP, engine, event loop: see :data:`CATEGORIES`) and by leaf function (where the CPU is
spent). py-spy cannot tell the span of the stop requests from the rest of the run: with 10,000
servers the span is about half the samples; the start-up shows as import frames.

py-spy is a dev tool, not a dependency: ``pip install py-spy``. ``--nonblocking`` keeps the
process at full speed (sampling with stops makes a fan-out 4x slower and the profile lies).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .fleets import write_fleet
from .measure import BULKSTOP, LOOP_ENV
from .procs import MockProcess, child_env
from .scenarios import LATENCY, mock_args

SERVERS: Final = {"mock": "bulkstop.mockcloud", "nova": "benchmarks.nova"}
#: Samples per second (py-spy's default is 100; more gives finer shares on a short run).
RATE: Final = 250
#: Rows of each summary.
TOP: Final = 25


#: Where a sample's time goes: the first category whose marker is on its stack (in this order).
CATEGORIES: Final = (
    ("a thread waiting (py-spy counts a timed wait as active)", ("Condition.wait (",)),
    ("imports", ("_find_and_load",)),
    ("configuration and Keystone (worker thread)", ("Keystone.", "KeystoneTokens.")),
    ("run journal", ("record/journal.py",)),
    ("report", ("record/report.py",)),
    ("listing and selection", ("select/", "list_page", "HttpCompute._server_page")),
    ("HTTP request and response (aiohttp)", ("HttpCompute.",)),
    ("engine bookkeeping (execute/)", ("execute/",)),
    ("progress and console", ("cli/progress.py",)),
    ("other bulkstop code (runner, cli)", ("bulkstop/",)),
    ("event loop, transports, anyio (no bulkstop frame)", ("",)),
)


#: The frame every coroutine of a command runs under.
RUN_ASYNC: Final = "run_async (bulkstop/cli/console.py"


def summarize(stacks: Path, top: int = TOP) -> str:
    """Shares of samples by category (:data:`CATEGORIES`) and by leaf function."""
    categories: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        leaves[_function(stack.rsplit(";", 1)[-1])] += samples
        # Everything on the event loop has run_async (and anyio.run) below it: match above it.
        inner = stack.rpartition(RUN_ASYNC)[2]
        for name, markers in CATEGORIES:
            if any(marker in inner for marker in markers):
                categories[name] += samples
                break
    lines = [f"{total} samples (all threads)", "", "by category (first match on the stack):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in categories.most_common()]
    lines += ["", "by leaf function:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in leaves.most_common(top)]
    return "\n".join(lines)


def _function(frame: str) -> str:
    """``func (path/to/file.py:12)`` as ``func (file.py)``: a function, whatever its line."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{name} ({path.rsplit('site-packages/', 1)[-1]})"


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
    stacks = args.out / f"{args.server}.stacks.txt"
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
            record = [spy, "record", "--nonblocking", "-r", str(RATE), "-f", "raw", "-o"]
            done = subprocess.run(
                [*record, str(stacks), "--", *command],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
    if done.returncode != 0 or not stacks.exists():
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    print(f"{args.server}, {args.servers} servers, c={args.concurrency}, latency {LATENCY:g} s")
    print(summarize(stacks))
    print(f"\nstacks: {stacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
