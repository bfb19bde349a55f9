"""What the mock adds in Huawei AK/SK mode: signature checks, the v1 batch API and its jobs.

* :class:`Signatures` checks ``SDK-HMAC-SHA256`` signatures (of requests with an
  ``Authorization`` header; others need a token, as on Huawei Cloud) the way Huawei's API
  gateway does, and answers a refusal with an APIG-style 401 (``APIGW.0301``): a wrong
  signature, a missing ``X-Project-Id``, an ``X-Sdk-Date`` more than :data:`MAX_DATE_SKEW`
  seconds off. Answers carry a ``Date`` header so a client can tell that its clock is off.
* :class:`BatchApi` serves ``POST /{service}/v1/{project_id}/{baremetalservers|cloudservers}/
  action`` (at most :data:`MAX_BATCH` servers, ``Ecs.0118`` above) and
  ``GET /{service}/v1/{project_id}/jobs/{job_id}``. A job is ``INIT`` for the first tenth of
  ``job_duration``, ``RUNNING`` until it ends, then ``SUCCESS`` (every sub-job succeeded) or
  ``FAIL``. Each server's sub-job fails with ``BMS.0039`` when it was already stopped, with a
  seeded ``job_failure_rate`` (``BMS.0212`` "system overloaded"), with ``Ecs.0605`` when
  locked, ``BMS.0036`` while powering off, ``Ecs.0100`` in another state that refuses the
  action, ``BMS.0040`` when it does not exist in the project, and otherwise succeeds; a
  successful server is stopped when its job ends. ``flow_limit_rate`` of batch calls answer a
  202 ``Common.0024`` without a job, like Huawei's flow control.

Bare metal (Huawei mode): a server tagged :data:`BAREMETAL_TAG` (in the fleet, or one of a
seeded ``baremetal_fraction`` marked by :func:`mark_baremetal`) is shown with the BMS
``power_state`` numbering (3 = shutdown, 4 = crashed, unlike Nova's 4 = shutdown, 6 = crashed),
and the native v2.1 API refuses to stop it when already stopped with ``BMS.0039`` in a **400**
(Nova answers 409), see :func:`native_refusal_status`.

The batch API is served under ``/{service}/`` on the mock's one port (the real cloud uses one
host per service): a client's batch endpoint template is ``{base_url}/{service}/v1/{project_id}``.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import itertools
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bulkstop.cloud import aksk

from . import bodies
from .config import MockConfig
from .faults import Injector, throttled
from .identity import Token, User
from .journal import RequestRecord
from .state import Fleet, MockServer, Project

#: The tag (and metadata key) Huawei puts on bare metal servers.
BAREMETAL_TAG: Final = "__type_baremetal"
#: Nova's power_state numbers → the BMS API's (3 = shutdown, 4 = crashed).
_BMS_POWER_STATES: Final = {4: 3, 6: 4}
#: The gateway refuses a signature dated further than this (seconds) from its clock.
MAX_DATE_SKEW: Final = 15 * 60.0
#: The most servers one batch call may name.
MAX_BATCH: Final = 1000
#: The APIG code of a refused signature.
APIG_SIGNATURE: Final = "APIGW.0301"
#: Journal kinds of the batch API.
KIND_BATCH: Final = "batch"
KIND_JOB: Final = "job"
#: Where each service's batch action lives.
ACTION_COLLECTIONS: Final = {"bms": "baremetalservers", "ecs": "cloudservers"}
_REFUSED: Final = "Incorrect IAM authentication information: "
_FLOW_LIMITED: Final = {"error": {"code": "Common.0024", "message": "Flow limit exceeded"}}
_STATUS_ACTIONS: Final = frozenset({"os-stop", "os-start"})


def access_keys(seed: int) -> tuple[str, str]:
    """The (access key, secret key) pair of the mock's member, stable for a seed."""
    digest = hashlib.sha256(f"mock-aksk:{seed}".encode()).hexdigest().upper()
    return f"AKMOCK{digest[:14]}", digest[14:54]


class Signatures:
    """The API gateway's AK/SK check, with the member's one key pair."""

    def __init__(
        self,
        *,
        config: MockConfig,
        fleet: Fleet,
        member: User,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.access_key, self.secret_key = access_keys(config.seed)
        self._fleet = fleet
        self._member = member
        self._wall_clock = wall_clock

    def check(self, request: web.Request, body: bytes) -> Token | str:
        """A token-like grant for the signed project, or why the signature is refused."""
        header = request.headers.get("Authorization", "")
        algorithm, _, rest = header.partition(" ")
        if algorithm != aksk.ALGORITHM:
            return _REFUSED + "unsupported algorithm"
        fields = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
        if fields.get("Access") != self.access_key:
            return _REFUSED + "access key not found"
        project_id = request.headers.get(aksk.HEADER_PROJECT)
        if not project_id:
            return _REFUSED + "X-Project-Id not found"
        signed = fields.get("SignedHeaders", "").split(";")
        if not {"host", "x-sdk-date", "x-project-id"} <= set(signed):
            return _REFUSED + "host, x-sdk-date or x-project-id not signed"
        date = request.headers.get(aksk.HEADER_DATE, "")
        try:
            sent = datetime.strptime(date, aksk.SDK_DATE_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            return _REFUSED + "x-sdk-date is not valid"
        if abs(sent - self._wall_clock()) > MAX_DATE_SKEW:
            return _REFUSED + "verify aksk signature fail (time skew)"
        headers = {name.lower(): value for name, value in request.headers.items()}
        canonical = aksk.canonical_request(
            method=request.method,
            path=request.raw_path.partition("?")[0],
            query=request.raw_path.partition("?")[2],
            headers=headers,
            signed=signed,
            body=body,
        )
        if fields.get("Signature") != aksk.signature_of(self.secret_key, date, canonical):
            return _REFUSED + "verify aksk signature fail"
        project = self._fleet.project(project_id)
        if project is None:
            return _REFUSED + "project id not found"
        return Token(
            id=f"aksk:{self.access_key}",
            user=self._member,
            project=project,
            expires_at="",
            usable_until=float("inf"),
        )

    def refusal(self, reason: str, request_id: str) -> web.Response:
        """The gateway's 401, dated so the client can check its clock."""
        return web.Response(
            status=401,
            body=bodies.dumps(bodies.gateway(APIG_SIGNATURE, reason, request_id)),
            content_type="application/json",
            headers={"Date": email.utils.formatdate(self._wall_clock(), usegmt=True)},
        )


@dataclass(slots=True, kw_only=True)
class _Job:
    id: str
    service: str
    project_id: str
    action: str
    #: (server id, error code or None, message) per server, decided at submission.
    fates: list[tuple[str, str | None, str]]
    started: float


class BatchApi:
    """The v1 batch action and job routes (see the module docstring)."""

    def __init__(
        self,
        *,
        config: MockConfig,
        fleet: Fleet,
        signatures: Signatures,
        tokens: Callable[[str | None], Token | str],
        injector: Injector,
        journal: list[RequestRecord],
    ) -> None:
        self._config = config
        self._injector = injector
        self._tokens = tokens
        self._fleet = fleet
        self._signatures = signatures
        self._journal = journal
        self._clock = config.clock
        self._random = random.Random(config.seed)
        self._jobs: dict[str, _Job] = {}
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        """Add the batch routes to the mock's application."""
        for service, collection in ACTION_COLLECTIONS.items():
            app.router.add_post(
                f"/{service}/v1/{{project_id}}/{collection}/action", self._action_for(service)
            )
            app.router.add_get(f"/{service}/v1/{{project_id}}/jobs/{{job_id}}", self.job)

    def _action_for(self, service: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return await self.action(request, service)

        return handler

    async def action(self, request: web.Request, service: str) -> web.Response:
        """Submit a batch: a job id, or Huawei's refusal."""
        body = await request.read()
        project, refusal = self._authorize(request, body)
        if project is None:
            return self._record(request, KIND_BATCH, refusal)
        try:
            document = json.loads(body)
            ((action, value),) = document.items()
            servers = [str(entry["id"]) for entry in value["servers"]]
        except (ValueError, TypeError, KeyError, AttributeError):
            return self._record(request, KIND_BATCH, _error(400, "Common.0002", "bad request"))
        record = functools.partial(self._record, servers=tuple(servers))
        if action not in _STATUS_ACTIONS:
            return record(request, KIND_BATCH, _error(400, "Common.0002", "bad action"))
        if not servers or len(servers) > MAX_BATCH:
            code = "Ecs.0118" if service == "ecs" else "BMS.0001"
            message = f"the number of servers must be 1 to {MAX_BATCH}"
            return record(request, KIND_BATCH, _error(400, code, message))
        if self._random.random() < self._config.flow_limit_rate:
            answer = _json(
                202, {"error": {"code": "Common.0024", "message": "Flow limit exceeded"}}
            )
            return record(request, KIND_BATCH, answer)
        job = _Job(
            id=f"ff80808{next(self._ids):025x}",
            service=service,
            project_id=project.id,
            action=action,
            fates=[self._fate(project, action, server_id) for server_id in servers],
            started=self._clock(),
        )
        self._jobs[job.id] = job
        return record(request, KIND_BATCH, _json(200, {"job_id": job.id}))

    def _fate(self, project: Project, action: str, server_id: str) -> tuple[str, str | None, str]:
        server = self._fleet.servers.get(server_id)
        if server is None or server.project_id != project.id:
            return server_id, "BMS.0040", "server does not exist"
        if action == "os-stop" and server.vm_state == "stopped":
            return server_id, "BMS.0039", "Server is stopped, not allow to stop"
        message = server.refusal(action, is_admin=False)
        if message is not None:
            if server.locked:
                return server_id, "Ecs.0605", message
            if server.task_state == "powering-off":
                return server_id, "BMS.0036", message
            return server_id, "Ecs.0100", message
        if self._random.random() < self._config.job_failure_rate:
            return server_id, "BMS.0212", "system overloaded"
        server.begin(action, self._config.job_duration)
        return server_id, None, ""

    async def job(self, request: web.Request) -> web.Response:
        """The job's state as of now."""
        project, refusal = self._authorize(request, b"")
        if project is None:
            return self._record(request, KIND_JOB, refusal)
        job = self._jobs.get(request.match_info["job_id"])
        if job is None or job.project_id != project.id:
            return self._record(request, KIND_JOB, _error(400, "Common.0011", "bad job id"))
        return self._record(request, KIND_JOB, _json(200, self._document(job)))

    def _document(self, job: _Job) -> dict[str, Any]:
        elapsed = self._clock() - job.started
        duration = self._config.job_duration
        ended = elapsed >= duration
        running = "INIT" if elapsed < duration / 10 else "RUNNING"
        subs = []
        for server_id, code, message in job.fates:
            status = ("FAIL" if code else "SUCCESS") if ended else running
            sub: dict[str, Any] = {
                "status": status,
                "job_id": f"{job.id}-{server_id[:8]}",
                "job_type": "baremetalSingleOperate",
                "entities": {"server_id": server_id},
            }
            if ended and code:
                sub |= {"error_code": code, "fail_reason": message}
            subs.append(sub)
        failed = any(code for _, code, _ in job.fates)
        status = ("FAIL" if failed else "SUCCESS") if ended else running
        document: dict[str, Any] = {
            "status": status,
            "job_id": job.id,
            "job_type": "baremetalBatchOperate",
            "entities": {"sub_jobs_total": len(subs), "sub_jobs": subs},
        }
        if ended and failed:
            document |= {"error_code": "BMS.0220", "fail_reason": "some servers failed"}
        return document

    def _authorize(self, request: web.Request, body: bytes) -> tuple[Project | None, web.Response]:
        """The project the request may act in, or the answer that refuses it.

        The project's rate limit (``Faults.rate_limit``) counts batch calls and job polls as it
        counts every compute call; a throttle comes first, as from Huawei's gateway.
        """
        request_id = f"req-batch-{next(self._ids):012x}"
        project_id = request.match_info["project_id"]
        faults = self._injector.faults(project_id)
        wait = self._injector.throttle(project_id, faults, self._clock())
        if wait > 0:
            answer = throttled(faults, wait, request_id)
            return None, _json(answer.status, answer.body, answer.headers)
        if "Authorization" in request.headers:
            checked = self._signatures.check(request, body)
        else:
            checked = self._tokens(request.headers.get("X-Auth-Token"))
        if isinstance(checked, str):
            return None, self._signatures.refusal(checked, request_id)
        if checked.project.id != project_id:
            return None, _error(400, "Common.0018", "project id mismatch")
        return checked.project, web.Response(status=204)

    def _record(
        self,
        request: web.Request,
        kind: str,
        response: web.Response,
        servers: tuple[str, ...] = (),
    ) -> web.Response:
        self._journal.append(
            RequestRecord(
                t=self._clock(),
                wall=time.time(),
                method=request.method,
                path=request.path,
                kind=kind,
                status=response.status,
                project_id=request.match_info.get("project_id"),
                query=request.query_string,
                servers=servers,
            )
        )
        return response


def _json(status: int, document: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=bodies.dumps(document), content_type="application/json", headers=headers
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, bodies.huawei(code, message))


def is_baremetal(server: MockServer) -> bool:
    """Whether the server is a bare metal one (tagged :data:`BAREMETAL_TAG`)."""
    return BAREMETAL_TAG in server.tags


def mark_baremetal(servers: Iterable[MockServer], *, fraction: float, seed: int) -> None:
    """Tag a seeded ``fraction`` of ``servers`` as bare metal (tag and metadata key)."""
    draw = random.Random(f"baremetal:{seed}")
    for server in servers:
        if fraction > 0 and draw.random() < fraction:
            server.tags = server.tags | {BAREMETAL_TAG}
            server.metadata = {**server.metadata, BAREMETAL_TAG: "true"}


def baremetal_record(record: dict[str, Any]) -> dict[str, Any]:
    """A Nova record of a bare metal server as the BMS API shows it (its power_state)."""
    power = record.get("OS-EXT-STS:power_state")
    if isinstance(power, int) and power in _BMS_POWER_STATES:
        record["OS-EXT-STS:power_state"] = _BMS_POWER_STATES[power]
    return record


def native_refusal_status(server: MockServer, code: str | None) -> int:
    """The status of a native v2.1 refusal: BMS codes of bare metal come in a 400, else 409."""
    return 400 if code is not None and code.startswith("BMS.") and is_baremetal(server) else 409
