"""The peers people use today: openstacksdk's ``compute.stop_server``, in a loop or a pool.

``python -m benchmarks.sdk JOB.json`` — ``concurrency`` 1 is a plain sequential loop, which
is what ``openstack server stop ID...`` does; more is a ``ThreadPoolExecutor`` of that many
threads sharing one connection per project, the usual way to speed a script up.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openstack

from .job import PeerJob, PeerResult


def connect(job: PeerJob, project_id: str) -> Any:
    """An openstacksdk connection to the mock, scoped to one project."""
    return openstack.connection.Connection(
        auth_url=job.auth_url,
        username=job.username,
        password=job.password,
        project_id=project_id,
        user_domain_name=job.user_domain,
        project_domain_name=job.user_domain,
        region_name=job.region,
    )


def stop_all(job: PeerJob) -> PeerResult:
    """Stop every server of the job (until the time limit); returns counts and window."""
    connections = {pid: connect(job, pid) for pid in job.targets}
    for connection in connections.values():
        connection.authorize()  # Keystone before the clock starts, as for the other clients
    statuses: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    first_send = time.time()
    deadline = None if job.time_limit is None else time.monotonic() + job.time_limit

    def stop(target: tuple[str, str]) -> None:
        if deadline is not None and time.monotonic() > deadline:
            return
        project_id, server_id = target
        try:
            connections[project_id].compute.stop_server(server_id)
            outcome = "2xx"
        except openstack.exceptions.SDKException as exc:
            outcome = type(exc).__name__
        with lock:
            statuses[outcome] += 1

    if job.concurrency == 1:
        for target in job.ordered():
            stop(target)
    else:
        with ThreadPoolExecutor(job.concurrency) as pool:
            for _ in pool.map(stop, job.ordered()):
                pass
    finished = time.time()
    for connection in connections.values():
        connection.close()
    return PeerResult(
        first_send=first_send,
        finished=finished,
        ok=statuses["2xx"],
        failed=sum(statuses.values()) - statuses["2xx"],
        statuses=dict(statuses),
    )


def main(argv: list[str]) -> None:
    """Entry point: ``python -m benchmarks.sdk JOB.json``."""
    # urllib3 warns for every connection a 32-thread pool opens beyond its pool of 10.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    job = PeerJob.read(argv[0])
    sys.stdout.write(stop_all(job).dumps() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
