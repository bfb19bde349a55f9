"""The floor: a bare aiohttp loop posting ``os-stop`` to the mock, nothing else.

``python -m benchmarks.bare JOB.json`` — one token per project obtained once, one
:class:`aiohttp.ClientSession` whose connector allows ``concurrency`` connections, and
``concurrency`` workers taking the next server from a shared iterator. The requests are the
ones bulkstop sends (same URL, headers and body); no retries, no pacing, no report. What
bulkstop spends beyond this is the engine's overhead. Runs on the event loop the job names
(asyncio's default, or uvloop), the one bulkstop is measured on beside it.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import sys
import time
from typing import Final

import aiohttp

from .job import PeerJob, PeerResult

#: Exactly what bulkstop's compute client sends with an action.
HEADERS: Final = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "X-OpenStack-Nova-API-Version": "2.26",
    "OpenStack-API-Version": "compute 2.26",
}
BODY: Final = b'{"os-stop":{}}'


async def token(session: aiohttp.ClientSession, job: PeerJob, project_id: str) -> str:
    """A Keystone token scoped to ``project_id`` (password auth)."""
    user = {"name": job.username, "domain": {"name": job.user_domain}, "password": job.password}
    auth = {
        "identity": {"methods": ["password"], "password": {"user": user}},
        "scope": {"project": {"id": project_id}},
    }
    async with session.post(job.auth_url + "/auth/tokens", json={"auth": auth}) as response:
        if response.status != 201:
            raise RuntimeError(f"Keystone answered {response.status}: {await response.text()}")
        return response.headers["X-Subject-Token"]


async def stop_all(job: PeerJob) -> PeerResult:
    """Post every stop of the job; returns the counts and the time window."""
    connector = aiohttp.TCPConnector(limit=job.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {
            pid: {**HEADERS, "X-Auth-Token": await token(session, job, pid)} for pid in job.targets
        }
        requests = iter(
            [
                (f"{job.base_url}/v2.1/{pid}/servers/{sid}/action", headers[pid])
                for pid, sid in job.ordered()
            ]
        )
        statuses: collections.Counter[str] = collections.Counter()

        async def worker() -> None:
            for url, request_headers in requests:
                try:
                    async with session.post(url, data=BODY, headers=request_headers) as response:
                        await response.read()
                        statuses[str(response.status)] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    statuses[type(exc).__name__] += 1

        first_send = time.time()
        async with asyncio.TaskGroup() as workers:
            for _ in range(job.concurrency):
                workers.create_task(worker())
        finished = time.time()
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    return PeerResult(
        first_send=first_send,
        finished=finished,
        ok=ok,
        failed=sum(statuses.values()) - ok,
        statuses=dict(statuses),
    )


def main(argv: list[str]) -> None:
    """Entry point: ``python -m benchmarks.bare JOB.json``."""
    job = PeerJob.read(argv[0])
    factory = importlib.import_module("uvloop").new_event_loop if job.loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(stop_all(job))
    sys.stdout.write(result.dumps() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
