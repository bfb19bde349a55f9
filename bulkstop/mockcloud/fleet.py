"""The mock's servers: a seeded, realistic fleet, or an exact one loaded from JSON.

Seeded fleet (every draw from one ``random.Random(seed)``, so a seed is a fleet):

* servers are spread round-robin over the projects, named ``{role}-{number:04d}``;
* tags: one of ``env=prod|dev|test``, one of ``role=web|db|batch``, ``nightly-stop`` on ~30%,
  ``bulkstop:protect`` on ~2%;
* states: ~85% active, ~6% stopped (SHUTOFF), ~3% error, ~2% paused, ~2% locked active,
  ~1% suspended, ~1% shelved;
* flavors by role: web ``m1.small``, db ``m1.large``, batch ``m1.medium``;
* only when asked (``MockConfig.never_scheduled``), a share of the servers are ERROR servers
  that were never scheduled (no host: Nova answers their stop "is not ready"), drawn from a
  stream of their own so the rest of the fleet is the same as without.

Fleet file: a JSON list of servers, or ``{"projects": [{"id", "name"}...], "servers": [...]}``.
A server needs ``id`` and ``project`` (or ``project_id``/``tenant_id``): a project id (32 hex)
or name. Optional: ``name``, ``tags``, ``vm_state`` (default ``active``), ``task_state``,
``power_state`` (default follows vm_state), ``locked``, ``metadata``, ``host`` (``null`` = never
scheduled), ``flavor`` (an id of :data:`~bulkstop.mockcloud.records.FLAVORS`), ``created``.
``GET /_mock/servers`` answers in this format, so a fleet round-trips.
"""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, TypeVar

from bulkstop.errors import InputError

from .config import Clock, FleetSource, MockConfig
from .records import DEFAULT_FLAVOR
from .state import MockServer, Project, iso_time

#: (value, cumulative probability) tables; a draw picks the first row above it.
ENVS: Final = (("env=prod", 0.40), ("env=dev", 0.75), ("env=test", 1.0))
ROLES: Final = (("web", 0.50), ("db", 0.70), ("batch", 1.0))
#: (vm_state, locked) mix.
STATES: Final = (
    (("active", False), 0.85),
    (("stopped", False), 0.91),
    (("error", False), 0.94),
    (("paused", False), 0.96),
    (("active", True), 0.98),
    (("suspended", False), 0.99),
    (("shelved", False), 1.0),
)
NIGHTLY_STOP_SHARE: Final = 0.30
PROTECT_SHARE: Final = 0.02
NIGHTLY_STOP_TAG: Final = "nightly-stop"
PROTECT_TAG: Final = "bulkstop:protect"
#: Creation time of the newest generated server; older ones are a minute apart each.
NEWEST_CREATED: Final = 1_704_067_200.0  # 2024-01-01T00:00:00Z
COMPUTE_HOSTS: Final = 16
#: The flavor of each role (ids of :data:`~bulkstop.mockcloud.records.FLAVORS`).
ROLE_FLAVORS: Final = MappingProxyType({"web": "2", "db": "4", "batch": "3"})
_PROJECT_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_T = TypeVar("_T")


def _pick(table: Sequence[tuple[_T, float]], draw: float) -> _T:
    for value, upto in table:
        if draw < upto:
            return value
    return table[-1][0]


def user_id(name: str) -> str:
    """The stable Keystone-style id of a user name."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mockcloud:user:{name}").hex


def generate(
    *,
    servers: int,
    projects: int,
    seed: int,
    clock: Clock,
    owner: str = "",
    never_scheduled: float = 0.0,
) -> tuple[list[Project], list[MockServer]]:
    """A seeded fleet of ``servers`` servers over ``projects`` projects; a ``never_scheduled``
    share of them are ERROR servers without a host."""
    rng = random.Random(seed)
    # Its own stream: asking for never-scheduled servers changes nothing else in the fleet.
    unscheduled = random.Random(f"{seed}:never-scheduled")
    project_list = [
        Project(id=f"{rng.getrandbits(128):032x}", name=f"project-{i}") for i in range(projects)
    ]
    owner_id = user_id(owner)
    fleet: list[MockServer] = []
    for n in range(servers):
        server_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        env = _pick(ENVS, rng.random())
        role = _pick(ROLES, rng.random())
        tags = [env, f"role={role}"]
        if rng.random() < NIGHTLY_STOP_SHARE:
            tags.append(NIGHTLY_STOP_TAG)
        if rng.random() < PROTECT_SHARE:
            tags.append(PROTECT_TAG)
        vm_state, locked = _pick(STATES, rng.random())
        host: str | None = f"compute-{n % COMPUTE_HOSTS}"
        if never_scheduled and unscheduled.random() < never_scheduled:
            vm_state, locked, host = "error", False, None
        fleet.append(
            MockServer(
                id=server_id,
                name=f"{role}-{n:04d}",
                project_id=project_list[n % projects].id,
                clock=clock,
                vm_state=vm_state,
                locked=locked,
                tags=tags,
                metadata={"team": f"team-{n % 7}"},
                user_id=owner_id,
                host=host,
                created=iso_time(NEWEST_CREATED - 60.0 * n),
                number=n,
                flavor_id=ROLE_FLAVORS[role],
            )
        )
    return project_list, fleet


def load(
    source: FleetSource, *, clock: Clock, owner: str = ""
) -> tuple[list[Project], list[MockServer]]:
    """An exact fleet from a JSON file or parsed JSON; raises InputError when malformed."""
    where = None
    if isinstance(source, os.PathLike):
        where = os.fspath(source)
        try:
            with open(where, encoding="utf-8") as handle:
                document: Any = json.load(handle)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read fleet: {exc}", source=where) from exc
    else:
        document = source
    try:
        return _parse(document, clock=clock, owner=owner)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed fleet: {exc}", source=where) from exc


def _parse(document: Any, *, clock: Clock, owner: str) -> tuple[list[Project], list[MockServer]]:
    if isinstance(document, Mapping):
        project_docs = document.get("projects", [])
        server_docs = document["servers"]
    else:
        project_docs, server_docs = [], document
    if not isinstance(server_docs, Sequence) or isinstance(server_docs, str):
        raise TypeError("servers must be a list")
    projects = [Project(id=str(p["id"]), name=str(p.get("name", p["id"]))) for p in project_docs]
    by_key = {key: p for p in projects for key in (p.id, p.name)}
    owner_id = user_id(owner)
    servers = []
    for n, doc in enumerate(server_docs):
        if not isinstance(doc, Mapping):
            raise TypeError(f"server #{n} is not an object")
        ref = str(doc.get("project") or doc.get("project_id") or doc["tenant_id"])
        project = by_key.get(ref)
        if project is None:
            project = _new_project(ref, len(projects))
            projects.append(project)
            by_key[project.id] = by_key[project.name] = project
        servers.append(
            MockServer(
                id=str(doc["id"]),
                name=str(doc.get("name", f"server-{n:04d}")),
                project_id=project.id,
                clock=clock,
                vm_state=str(doc.get("vm_state", "active")),
                task_state=doc.get("task_state"),
                power_state=doc.get("power_state"),
                locked=bool(doc.get("locked", False)),
                tags=[str(t) for t in doc.get("tags", [])],
                metadata={str(k): str(v) for k, v in doc.get("metadata", {}).items()},
                user_id=owner_id,
                host=doc.get("host", f"compute-{n % COMPUTE_HOSTS}"),
                created=str(doc.get("created", iso_time(NEWEST_CREATED - 60.0 * n))),
                number=n,
                flavor_id=str(doc.get("flavor", DEFAULT_FLAVOR)),
            )
        )
    return projects, servers


def _new_project(ref: str, index: int) -> Project:
    """A project first met as a server's ``project``: an id if it looks like one, else a name."""
    if _PROJECT_ID.match(ref):
        return Project(id=ref, name=f"project-{index}")
    return Project(id=uuid.uuid5(uuid.NAMESPACE_URL, f"mockcloud:project:{ref}").hex, name=ref)


def build(config: MockConfig) -> tuple[list[Project], list[MockServer]]:
    """The fleet a config describes: loaded if ``config.fleet`` is set, else seeded."""
    if config.fleet is not None:
        return load(config.fleet, clock=config.clock, owner=config.username)
    return generate(
        servers=config.servers,
        projects=config.projects,
        seed=config.seed,
        clock=config.clock,
        owner=config.username,
        never_scheduled=config.never_scheduled,
    )
