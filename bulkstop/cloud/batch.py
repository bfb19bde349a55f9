"""The aiohttp implementation of :class:`~bulkstop.cloud.base.BatchComputeAPI` (Huawei v1).

Requests go through :meth:`HttpCompute.request`, so they carry the same credentials (signed with
AK/SK, or a Keystone token) and the same translation of transport errors as every compute call.
URLs come from :func:`bulkstop.cloud.huawei.batch_url`: ``https://{service}.{region}.
myhuaweicloud.com/v1/{project_id}`` or the ``batch_endpoint`` template.

Ids the cloud hands back (job ids) are checked by :func:`validate_job_id` before they reach a
URL; a job id that fails the check makes the reply an ``invalid_response``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import quote

from bulkstop.cloud.base import BatchService
from bulkstop.cloud.errorbody import parse_error_body, shorten
from bulkstop.cloud.http import HttpCompute
from bulkstop.cloud.huawei import batch_url
from bulkstop.identifiers import validate_job_id
from bulkstop.limits import MAX_BATCH_SIZE
from bulkstop.models import Action, ErrorInfo, Job, Reply, SubJob

#: The path of each service's batch action.
ACTION_PATHS: Final = {"bms": "/baremetalservers/action", "ecs": "/cloudservers/action"}


def batch_body(action: Action, server_ids: Sequence[str], stop_type: str | None = None) -> bytes:
    """``{"os-stop": {"type": ..., "servers": [{"id": ...}]}}`` (``os-start`` has no type)."""
    value: dict[str, Any] = {}
    if action is Action.STOP and stop_type:
        value["type"] = stop_type
    value["servers"] = [{"id": server_id} for server_id in server_ids]
    return json.dumps({action.value: value}, separators=(",", ":")).encode()


class HttpBatch:
    """:class:`~bulkstop.cloud.base.BatchComputeAPI` over an :class:`HttpCompute`'s session.

    ``template`` overrides the region's batch endpoint (``{project_id}``, ``{service}`` and
    ``{region}`` placeholders). The compute client owns the session: close that.
    """

    def __init__(
        self, compute: HttpCompute, *, region: str | None, template: str | None = None
    ) -> None:
        self._compute = compute
        self._region = region
        self._template = template

    def base_url(self, project_id: str, service: BatchService) -> str:
        """The batch API root of one project and service."""
        return batch_url(
            self._template, project_id=project_id, region=self._region, service=service
        )

    async def batch_action(
        self,
        project_id: str,
        service: BatchService,
        action: Action,
        server_ids: Sequence[str],
        *,
        stop_type: str | None = None,
    ) -> Reply:
        """One batch call; a 2xx's body is the job id (``None`` with ``error`` when it has none)."""
        if not 1 <= len(server_ids) <= MAX_BATCH_SIZE:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_SIZE} servers, not {len(server_ids)}")
        url = self.base_url(project_id, service) + ACTION_PATHS[service]
        reply = await self._compute.request(
            project_id,
            "POST",
            url,
            data=batch_body(action, server_ids, stop_type),
            parse=_job_id_or_error,
        )
        return _unwrap(reply)

    async def get_job(self, project_id: str, service: BatchService, job_id: str) -> Reply:
        """``GET /jobs/{job_id}``; on success ``body`` is a :class:`~bulkstop.models.Job`."""
        url = f"{self.base_url(project_id, service)}/jobs/{quote(validate_job_id(job_id), safe='')}"
        return await self._compute.request(project_id, "GET", url, parse=parse_job)


def _job_id_or_error(document: Any) -> str | ErrorInfo:
    """The job id of a 2xx batch answer, or the error its body carries instead."""
    job_id = document.get("job_id") if isinstance(document, dict) else None
    if job_id is None:
        raw = json.dumps(document).encode()
        return parse_error_body(None, "application/json", raw).error
    try:
        return validate_job_id(job_id)
    except ValueError as exc:
        return ErrorInfo(code="invalid_response", message=str(exc))


def _unwrap(reply: Reply) -> Reply:
    """A 2xx that brought an error instead of a job id: the error, and no body."""
    if isinstance(reply.body, ErrorInfo):
        return Reply(status=reply.status, request_id=reply.request_id, error=reply.body)
    return reply


def parse_job(document: Any) -> Job:
    """The :class:`Job` of a job document; raises on a document of another shape."""
    entities = document.get("entities") or {}
    subs = (entities.get("sub_jobs") if isinstance(entities, dict) else None) or []
    if not isinstance(subs, list):
        raise TypeError("'entities.sub_jobs' is not a list")
    return Job(
        job_id=validate_job_id(document["job_id"]),
        status=str(document["status"]),
        error=_job_error(document),
        sub_jobs=tuple(_sub_job(sub) for sub in subs),
    )


def _sub_job(document: Any) -> SubJob:
    entities = document.get("entities") or {}
    server_id = entities.get("server_id") if isinstance(entities, dict) else None
    error = _job_error(document)
    if error is not None and not error.message and isinstance(entities, dict):
        error = ErrorInfo(code=error.code, message=str(entities.get("errorcode_message") or ""))
    return SubJob(
        server_id=server_id if isinstance(server_id, str) else None,
        status=str(document["status"]),
        error=error,
    )


def _job_error(document: dict[str, Any]) -> ErrorInfo | None:
    """``{error_code, fail_reason}`` of a failed job or sub-job; ``None`` unless it failed."""
    if document.get("status") != "FAIL":
        return None
    code = document.get("error_code") or document.get("code") or "FAIL"
    reason = document.get("fail_reason") or document.get("message") or ""
    return ErrorInfo(code=str(code), message=shorten(str(reason)))
