"""Starts the measured clients from a small process, so that their peak RSS is their own.

Linux reports a child's ``ru_maxrss`` as at least the resident size of the process that forked
it (the forking process's memory is the child's until ``exec``). The orchestrator grows while it
reads journals of 100,000 requests, so it does not start clients itself: this process, started
while the orchestrator is still small and doing nothing else, starts each client, reaps it with
``wait4`` and answers with its exit status, CPU time and peak RSS.

Protocol (JSON lines): the orchestrator writes ``{"argv", "env", "cwd", "stdout", "stderr",
"timeout"}``; the spawner answers ``{"pid"}`` as soon as the child runs, then ``{"status",
"cpu", "maxrss_kb", "spawned", "reaped"}`` once it has exited (status < 0: killed by that
signal, e.g. on timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any


def answer(document: dict[str, Any]) -> None:
    """One JSON line to the orchestrator."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def spawn(job: dict[str, Any]) -> None:
    """Run one child to completion, answering its pid and then its rusage."""
    with open(job["stdout"], "wb") as out, open(job["stderr"], "wb") as err:
        spawned = time.time()
        process = subprocess.Popen(
            job["argv"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=job["env"],
            cwd=job["cwd"],
        )
        answer({"pid": process.pid})
        timer = threading.Timer(job["timeout"], process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
    answer(
        {
            "status": process.returncode,
            "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_kb": usage.ru_maxrss,
            "spawned": spawned,
            "reaped": time.time(),
        }
    )


def main() -> None:
    """Serve jobs until stdin closes."""
    for line in sys.stdin:
        spawn(json.loads(line))


if __name__ == "__main__":
    main()
