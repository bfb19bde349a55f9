"""Child processes of a benchmark and what they cost: the mock cloud, the clients, CPU and RSS.

Everything a benchmark compares runs in its own process, so each side's CPU time and memory are
its own: the mock cloud (:class:`MockProcess`), and one client process per measured run
(:meth:`Spawner.run`: started and reaped with ``wait4`` by a small helper process, for its CPU
time and a peak RSS that is its own). A
:class:`Sampler` thread reads ``/proc`` every few milliseconds so that CPU time can also be cut
to the *execution window* of a run, for the client, for the mock, and for everything else on
the (shared) machine.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from bulkstop.mockcloud.journal import RequestRecord
from bulkstop.testing import ProcessCloud

#: The checkout root: children import ``bulkstop`` and ``benchmarks`` from here.
ROOT: Final = Path(__file__).resolve().parent.parent
#: Kernel clock ticks per second (``/proc`` CPU times are in ticks).
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
#: How often the sampler reads ``/proc``: fine enough to cut a window of a second to ~1 %.
SAMPLE_INTERVAL: Final = 0.01
#: Seconds the mock may take to seed its fleet and print its connection line.
MOCK_STARTUP_TIMEOUT: Final = 60.0
#: Names of what the sampler watches.
CLIENT: Final = "client"
MOCK: Final = "mock"
MACHINE: Final = "machine"
#: The server :class:`MockProcess` runs unless told otherwise: bulkstop's mock cloud.
MOCK_MODULE: Final = "bulkstop.mockcloud"


class BenchmarkError(RuntimeError):
    """A child process failed or a benchmark's result is not sane."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this checkout first on the path, no ``OS_*`` leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # An empty clouds.yaml: openstacksdk's loader must not find the user's own clouds.
    env["OS_CLIENT_CONFIG_FILE"] = os.devnull
    env.update(extra or {})
    return env


def proc_cpu_ticks(pid: int) -> int | None:
    """User + system CPU ticks of a process (all its threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def machine_busy_ticks() -> int:
    """CPU ticks the whole machine spent busy (all cores), from ``/proc/stat``."""
    with open("/proc/stat", "rb") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    idle, iowait = values[3], values[4]
    return sum(values) - idle - iowait


class Sampler:
    """Samples cumulative CPU ticks of named processes (and of the machine) on a thread.

    ``with Sampler({"mock": pid}) as s: ...; s.watch("client", pid)``; afterwards
    :meth:`cpu_seconds` says how much CPU each spent between two wall-clock instants.
    """

    def __init__(self, pids: Mapping[str, int], interval: float = SAMPLE_INTERVAL) -> None:
        self._pids = dict(pids)
        self._interval = interval
        self._samples: list[tuple[float, dict[str, int]]] = []
        self._last: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()
        self._sample()

    def watch(self, name: str, pid: int) -> None:
        """Start sampling another process."""
        with self._lock:
            self._pids[name] = pid

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            pids = dict(self._pids)
        now = time.time()
        ticks = {MACHINE: machine_busy_ticks()}
        for name, pid in pids.items():
            value = proc_cpu_ticks(pid)
            # A reaped (or zombie) process reads as gone or zero: keep its last total.
            ticks[name] = max(value or 0, self._last.get(name, 0))
        self._last = ticks
        self._samples.append((now, ticks))

    def cpu_seconds(self, name: str, start: float, end: float) -> float:
        """CPU seconds ``name`` used from ``start`` to ``end`` (wall clock, ``time.time()``).

        Conservative by at most one sample interval at each end: the last sample at or before
        ``start`` and the first at or after ``end``.
        """
        before = [s for s in self._samples if s[0] <= start] or self._samples[:1]
        after = [s for s in self._samples if s[0] >= end] or self._samples[-1:]
        if not before or not after:
            return 0.0
        return (after[0][1].get(name, 0) - before[-1][1].get(name, 0)) / CLK_TCK


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRun:
    """A finished child process and what it cost."""

    argv: tuple[str, ...]
    returncode: int
    #: ``time.time()`` at spawn and after reaping.
    spawned: float
    reaped: float
    #: User + system CPU seconds of the whole process (interpreter start-up included).
    cpu: float
    #: Peak resident set size, MiB (``ru_maxrss``).
    peak_rss_mb: float
    stdout: str
    stderr: str

    @property
    def wall(self) -> float:
        """Seconds from spawn to exit."""
        return self.reaped - self.spawned


class Spawner:
    """``python -m benchmarks.spawner``: starts and reaps the measured clients (see there why).

    Start it before the orchestrator has read anything big; use as a context manager.
    """

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._names = itertools.count(1)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.spawner"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            cwd=ROOT,
            text=True,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the spawner (it ends when its input closes)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _receive(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise BenchmarkError("the spawner process died")
        document: dict[str, Any] = json.loads(line)
        return document

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        sampler: Sampler | None = None,
        check: bool = True,
    ) -> ChildRun:
        """Run a process to completion and measure it; BenchmarkError on failure or timeout.

        ``check=False`` accepts any exit status (bulkstop exits 1 when a server failed: the
        benchmark reports that rather than crashing on it).
        """
        name = next(self._names)
        out, err = self._workdir / f"child-{name}.out", self._workdir / f"child-{name}.err"
        job = {
            "argv": list(argv),
            "env": dict(env) if env is not None else child_env(),
            "cwd": str(ROOT),
            "stdout": str(out),
            "stderr": str(err),
            "timeout": timeout,
        }
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(job) + "\n")
        self._process.stdin.flush()
        pid = self._receive()["pid"]
        if sampler is not None:
            sampler.watch(CLIENT, pid)
        done = self._receive()
        run = ChildRun(
            argv=tuple(argv),
            returncode=done["status"],
            spawned=done["spawned"],
            reaped=done["reaped"],
            cpu=done["cpu"],
            peak_rss_mb=done["maxrss_kb"] / 1024,
            stdout=out.read_text(errors="replace"),
            stderr=err.read_text(errors="replace"),
        )
        out.unlink()
        err.unlink()
        if run.returncode < 0:
            raise BenchmarkError(
                f"{argv[:4]} killed by signal {-run.returncode} (timeout {timeout:g}s?): "
                f"{run.stderr[-2000:]}"
            )
        if check and run.returncode != 0:
            raise BenchmarkError(f"{argv[:4]} exited {run.returncode}: {run.stderr[-2000:]}")
        return run


class MockProcess(ProcessCloud):
    """``python -m bulkstop.mockcloud ...`` as a child process, started at once
    (:class:`bulkstop.testing.ProcessCloud`: credentials, admin endpoints, teardown).

    Use as a context manager; :attr:`info` is the JSON line it printed (URLs, credentials,
    project ids). ``module`` runs another server that prints the same line and serves the same
    two admin endpoints (reset, requests): :mod:`benchmarks.nova`, the minimal Nova.
    """

    def __init__(self, args: Sequence[str], *, module: str = MOCK_MODULE) -> None:
        super().__init__(
            *args, env=child_env(), cwd=ROOT, timeout=MOCK_STARTUP_TIMEOUT, module=module
        )
        try:
            self.start()
        except RuntimeError as exc:
            raise BenchmarkError(str(exc)) from exc

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return str(self.info["base_url"])

    @property
    def project_ids(self) -> list[str]:
        """The mock's project ids, in order."""
        return list(self.info["project_ids"])

    def journal(self, kind: str | None = None) -> list[RequestRecord]:
        """The requests the mock has seen since the last reset (of one kind, if given)."""
        document = self.admin("/_mock/requests" + (f"?kind={kind}" if kind else ""))
        return [RequestRecord(**record) for record in document["requests"]]

    def peak_rss_mb(self) -> float:
        """The mock's peak resident set size so far, MiB (``VmHWM``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0
