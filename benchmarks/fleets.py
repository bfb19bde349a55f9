"""Benchmark fleets: every server active and stoppable, so every selected server is one stop.

The mock serves them with ``--fleet FILE``; the benchmark keeps the ids, so the bare-aiohttp
floor and the openstacksdk peers post to exactly the servers bulkstop stops.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchFleet:
    """A fleet file and the server ids in it, per project, in listing order."""

    path: Path
    by_project: dict[str, tuple[str, ...]]

    @property
    def project_ids(self) -> tuple[str, ...]:
        """Project ids, in order."""
        return tuple(self.by_project)

    @property
    def size(self) -> int:
        """Servers in the fleet."""
        return sum(len(ids) for ids in self.by_project.values())


def write_fleet(directory: Path, *, servers: int, projects: int, seed: int = 0) -> BenchFleet:
    """Write ``servers`` active servers spread round-robin over ``projects`` projects."""
    rng = random.Random(seed)
    project_ids = [f"{rng.getrandbits(128):032x}" for _ in range(projects)]
    by_project: dict[str, list[str]] = {pid: [] for pid in project_ids}
    records = []
    for n in range(servers):
        server_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        project_id = project_ids[n % projects]
        by_project[project_id].append(server_id)
        records.append({"id": server_id, "project": project_id, "name": f"bench-{n:06d}"})
    path = directory / f"fleet-{servers}x{projects}-{seed}.json"
    document = {
        "projects": [{"id": pid, "name": f"project-{i}"} for i, pid in enumerate(project_ids)],
        "servers": records,
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return BenchFleet(path=path, by_project={p: tuple(ids) for p, ids in by_project.items()})
