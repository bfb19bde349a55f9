"""The one narrow seam between the engine and a cloud.

The engine talks to a compute API only through :class:`ComputeAPI`. The real implementation is
:class:`bulkstop.cloud.http.HttpCompute` (aiohttp + Keystone tokens); unit tests use an
in-memory fake; integration tests use the real implementation against :mod:`bulkstop.mockcloud`.

Contract of every call:

* It makes exactly one HTTP request (so the engine can count it against the project's rate
  budget) and never retries by itself: retries, backoff and token renewal are the engine's.
* It never raises for an HTTP status or a broken connection. It returns a
  :class:`~bulkstop.models.Reply` whose ``status`` is ``None`` when no HTTP answer arrived and
  whose ``error`` is parsed from whatever body came back (Nova, Huawei, gateway, HTML, nothing).
* It raises only :class:`~bulkstop.errors.CloudAccessError` subclasses, for problems that concern
  the whole run (no credentials, Keystone refusing us).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, Protocol

from bulkstop.models import Action, ListQuery, Reply

#: The services of Huawei's batch API.
BatchService = Literal["bms", "ecs"]
#: The tag (and metadata key) Huawei puts on bare metal servers' native records.
BAREMETAL_TAG: Final = "__type_baremetal"


class ComputeAPI(Protocol):
    """List, read and act on servers of one or more projects."""

    async def list_page(self, project_id: str, query: ListQuery, marker: str | None) -> Reply:
        """``GET /servers/detail`` (microversion 2.26); on success ``body`` is a ServerPage."""
        ...

    async def get_server(self, project_id: str, server_id: str) -> Reply:
        """``GET /servers/{id}``; on success ``body`` is a :class:`~bulkstop.models.Server`."""
        ...

    async def action(
        self, project_id: str, server_id: str, action: Action, *, stop_type: str | None = None
    ) -> Reply:
        """``POST /servers/{id}/action`` with ``{action: {}}`` (``type`` added for a typed stop)."""
        ...

    async def renew_auth(self, project_id: str) -> None:
        """Get a fresh token for the project (after a 401). Raises AuthError if refused."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class BatchComputeAPI(Protocol):
    """Huawei's batch API: one call acts on up to 1,000 servers and returns a job to poll.

    The same contract as :class:`ComputeAPI`: one HTTP request per call, no retries, HTTP
    statuses as data. Its implementation is :class:`bulkstop.cloud.batch.HttpBatch`.
    """

    async def batch_action(
        self,
        project_id: str,
        service: BatchService,
        action: Action,
        server_ids: Sequence[str],
        *,
        stop_type: str | None = None,
    ) -> Reply:
        """``POST /v1/{project_id}/{baremetalservers|cloudservers}/action``.

        On a 2xx with a ``job_id``, ``body`` is that job id (a ``str``). A 2xx without one (a
        throttle such as ``Common.0024``) has ``body`` ``None`` and ``error`` parsed from it.
        """
        ...

    async def get_job(self, project_id: str, service: BatchService, job_id: str) -> Reply:
        """``GET /v1/{project_id}/jobs/{job_id}``; on success ``body`` is a
        :class:`~bulkstop.models.Job`."""
        ...
