"""Huawei's batch API as a dispatcher: servers sent in chunks, each chunk's fate read from its job.

:class:`BatchDispatcher` is the second implementation of
:class:`~bulkstop.execute.dispatch.Dispatcher` (the first sends one request per server). For
each batch the engine hands it (the canary, then each wave) it:

1. routes every server to a service — ``bms`` or ``ecs``, or ``auto``: a record carrying the
   :data:`~bulkstop.cloud.base.BAREMETAL_TAG` tag or metadata key is bare metal, the rest
   ECS — and cuts each project's servers of each service into chunks of ``batch_size``;
2. per project and service, one chunk at a time: journals an intent for every server of the
   chunk (:meth:`~.ledger.Ledger.admit`), sends ``POST .../action`` through the gate, tells the
   observer the job id as soon as it is known (the journal records it), and polls
   ``GET .../jobs/{job_id}`` — first after ``poll_interval``, then each wait 1.5 times the
   last, up to :data:`~bulkstop.limits.MAX_JOB_POLL_INTERVAL` — until the job is ``SUCCESS``
   or ``FAIL``, or ``wait_timeout`` has passed — with or without ``wait``: only the job
   knows each fate;
3. maps each sub-job to its server's outcome: ``SUCCESS`` → ``stopped``/``started``; ``FAIL`` →
   what :func:`~bulkstop.cloud.verdict.judge_sub_job` makes of its code (BMS.0039 →
   ``already_stopped``, Ecs.0605 → ``skipped``, BMS.0036/Ecs.0100 → the server is read and
   judged, anything else → ``failed`` with ``{code: error_code, message: fail_reason}``); a
   server with no sub-job → ``failed`` with the job's error; a job still running at the
   timeout → ``failed``, "job <id> not finished after Ns".

Chunks of different projects and services run side by side; the next chunk of a project and
service is sent only once the previous job has ended, so the breaker (``max_errors``, fed as
each job ends) and a halt are seen before the next chunk. Every call — POSTs and polls —
goes through the gate and counts against its project's rate budget, like the listing.

A resumed run (``jobs``: what the journal recorded) polls the job of every server it was
sent in and never sends those servers again.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal, get_args

import anyio

from bulkstop.cloud.base import BAREMETAL_TAG, BatchComputeAPI, BatchService
from bulkstop.cloud.verdict import Kind, judge_sub_job
from bulkstop.errors import CloudAccessError, ParameterError
from bulkstop.execute.context import DispatchContext
from bulkstop.execute.dispatch import DispatcherFactory
from bulkstop.execute.gate import CallResult, NotAdmitted
from bulkstop.execute.ledger import result_for
from bulkstop.limits import MAX_BATCH_SIZE, MAX_JOB_POLL_INTERVAL
from bulkstop.models import Action, ErrorInfo, Job, Outcome, Reply, Server, SubJob
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.plan.rails import Batch

#: ``service``: how servers are routed to the batch API's services.
Routing = Literal["auto", "bms", "ecs"]
#: ``batch_size`` by default: as many servers per call as Huawei takes.
DEFAULT_BATCH_SIZE: Final = MAX_BATCH_SIZE
#: The ``api`` values: one request per server, or Huawei's batch API.
APIS: Final = ("native", "batch")
#: The ``service`` values.
ROUTINGS: Final = get_args(Routing)
#: Each poll of a job waits this much longer than the last (from ``poll_interval``, up to
#: :data:`~bulkstop.limits.MAX_JOB_POLL_INTERVAL`).
JOB_POLL_GROWTH: Final = 1.5
#: The stop type bare metal accepts (its batch API marks SOFT "invalid").
BAREMETAL_STOP_TYPE: Final = "HARD"


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSettings:
    """How the batch API is used: routing, chunk size, and the endpoint template.

    ``endpoint`` overrides the region's ``https://{service}.{region}.myhuaweicloud.com/v1/
    {project_id}`` (placeholders ``{project_id}``, ``{service}``, ``{region}``).
    """

    service: Routing = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.service not in ROUTINGS:
            raise ValueError(f"service must be one of {', '.join(ROUTINGS)}: {self.service!r}")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be 1 to {MAX_BATCH_SIZE}: {self.batch_size}")

    def service_of(self, server: Server) -> BatchService:
        """The batch service that acts on ``server``."""
        if self.service != "auto":
            return self.service
        return "bms" if is_baremetal(server) else "ecs"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedJob:
    """The job a server was sent in, as the journal recorded it (for a resumed run)."""

    scope: str
    service: BatchService
    job_id: str


def batch_service(value: object) -> BatchService:
    """``value`` if it names a service of the batch API (``bms``, ``ecs``); else ValueError."""
    if value == "bms" or value == "ecs":
        return value
    raise ValueError(f"not a batch service: {str(value)[:20]!r}")


def is_baremetal(server: Server) -> bool:
    """Huawei marks bare metal with a tag (and a metadata key) on its native record."""
    return BAREMETAL_TAG in (server.tags or ()) or BAREMETAL_TAG in server.metadata


def batch_dispatcher(
    api: BatchComputeAPI,
    settings: BatchSettings,
    *,
    jobs: Mapping[str, RecordedJob] | None = None,
) -> DispatcherFactory:
    """The engine's ``dispatcher`` for the batch API (``jobs``: a resumed run's, by server)."""
    return partial(BatchDispatcher, api=api, settings=settings, jobs=jobs or {})


@dataclass(slots=True)
class _Chunk:
    """Servers sent (or to poll) together, and what is known of their job."""

    scope: str
    service: BatchService
    entries: tuple[PlanEntry, ...]
    job_id: str | None = None
    #: The batch call's answer (None for a job recorded by an earlier part of the run).
    sent: CallResult | None = None
    started: float = 0.0


class BatchDispatcher:
    """Sends each batch in chunks through Huawei's batch API and judges each server by its job.

    Refuses (:class:`~bulkstop.errors.ParameterError`, nothing sent) a SOFT stop when any
    server to send is bare metal.
    """

    def __init__(
        self,
        context: DispatchContext,
        *,
        api: BatchComputeAPI,
        settings: BatchSettings,
        jobs: Mapping[str, RecordedJob],
    ) -> None:
        self.context = context
        self.api = api
        self.settings = settings
        self.jobs = jobs
        options = context.options
        if options.action is Action.STOP and options.stop_type not in (None, BAREMETAL_STOP_TYPE):
            metal = [e for e in context.plan.to_send if settings.service_of(e.server) == "bms"]
            if metal:
                raise ParameterError(
                    "{stop_type} "
                    + f"{options.stop_type}: {len(metal)} selected servers are bare metal "
                    f"(e.g. {metal[0].server.id}), whose batch API accepts only "
                    f"{BAREMETAL_STOP_TYPE}; nothing was sent"
                )

    async def dispatch(self, batch: Batch, *, wait: bool) -> None:
        # ``wait`` changes nothing: every job is polled to its end, the only way to each fate.
        resumed: dict[str, list[PlanEntry]] = {}
        groups: dict[tuple[str, BatchService], list[PlanEntry]] = {}
        for entry in batch.entries:
            job = self.jobs.get(entry.server.id)
            if job is not None and job.scope == entry.scope:
                resumed.setdefault(job.job_id, []).append(entry)
            else:
                key = (entry.scope, self.settings.service_of(entry.server))
                groups.setdefault(key, []).append(entry)
        async with anyio.create_task_group() as tg:
            for job_id, entries in resumed.items():
                job = self.jobs[entries[0].server.id]
                chunk = _Chunk(
                    scope=job.scope, service=job.service, entries=tuple(entries), job_id=job_id
                )
                tg.start_soon(self._poll_recorded, chunk)
            for (scope, service), entries in groups.items():
                tg.start_soon(self._run_group, scope, service, entries)

    async def _run_group(self, scope: str, service: BatchService, entries: list[PlanEntry]) -> None:
        """One project and service: chunk after chunk, each sent once the last job ended."""
        for chunk_entries in _chunks(entries, self.settings.batch_size):
            if not self.context.halting.may_dispatch():
                return
            chunk = _Chunk(scope=scope, service=service, entries=chunk_entries)
            if not await self._send(chunk):
                return
            if chunk.job_id is not None:
                await self._follow(chunk)

    async def _poll_recorded(self, chunk: _Chunk) -> None:
        """A job an earlier part of the run sent: poll it, never send its servers again."""
        ledger = self.context.ledger
        if not all(ledger.admit(e) for e in chunk.entries):
            self._answered(chunk)
            return
        chunk.started = self.context.clock()
        await self._follow(chunk)

    async def _send(self, chunk: _Chunk) -> bool:
        """The chunk's batch call. False when nothing may be sent any more (halted)."""
        ctx = self.context
        ids = [e.server.id for e in chunk.entries]
        request = partial(
            self.api.batch_action,
            chunk.scope,
            chunk.service,
            ctx.options.action,
            ids,
            stop_type=ctx.options.stop_type,
        )
        res: CallResult | None = None
        try:
            # A halt cancels the call while it waits for its turn (``res`` stays None).
            with ctx.halting.waiting() as waiting:
                res = await ctx.gate.call(
                    chunk.scope,
                    request,
                    admit=partial(self._admit, chunk, waiting),
                    until=ctx.halting.deadline_at,
                    on_reply=partial(self._heard, ids),
                )
        except NotAdmitted:
            self._answered(chunk)
            return False
        except CloudAccessError as exc:
            # Credentials refused (a temporary key expired): stop sending; the chunk was not
            # carried out (its call got a 401), so its servers are not attempted.
            ctx.halting.fail(exc)
            self._answered(chunk)
            return False
        if res is None:
            self._answered(chunk)
            return False
        chunk.sent, chunk.started = res, res.started
        job_id = res.reply.body
        if res.verdict.kind is Kind.ACCEPTED and isinstance(job_id, str):
            chunk.job_id = job_id
            ctx.ledger.observer.job_started(chunk.scope, chunk.service, job_id, ids)
            return True
        error = res.reply.error or ErrorInfo(code=f"HTTP {res.reply.status}", message="")
        reason = res.gave_up or f"batch call refused (HTTP {res.reply.status})"
        self._finish_all(chunk, Outcome.FAILED, error=error, reason=reason)
        return True

    def _heard(self, ids: list[str], reply: Reply, unserved: bool) -> None:
        """The gate's ``on_reply`` for a batch call: an answer for each server of the chunk."""
        for server_id in ids:
            self.context.ledger.heard(server_id, reply, unserved)

    def _admit(self, chunk: _Chunk, waiting: anyio.CancelScope) -> bool:
        """Intents for every server of the chunk, just before its call leaves."""
        self.context.halting.on_the_wire(waiting)
        ledger = self.context.ledger
        return all(ledger.admit(e) for e in chunk.entries)

    async def _follow(self, chunk: _Chunk) -> None:
        """Poll the chunk's job until it ends, cannot be read, or ``wait_timeout`` passes."""
        ctx = self.context
        job_id = chunk.job_id
        assert job_id is not None
        timeout = ctx.options.wait_timeout
        give_up_at = chunk.started + timeout
        interval = ctx.options.poll_interval
        while True:
            await ctx.sleep(min(interval, max(give_up_at - ctx.clock(), 0.0)))
            # A long job is polled less and less often: the calls are the quota's.
            interval = min(interval * JOB_POLL_GROWTH, max(MAX_JOB_POLL_INTERVAL, interval))
            try:
                res = await ctx.gate.call(
                    chunk.scope, partial(self.api.get_job, chunk.scope, chunk.service, job_id)
                )
            except CloudAccessError as exc:
                # The servers stay in flight (state unknown); the journal has the job to poll.
                ctx.halting.fail(exc)
                return
            job = res.reply.body
            if res.verdict.kind is Kind.ACCEPTED and isinstance(job, Job) and job.ended:
                await self._judge(chunk, job)
                return
            if res.verdict.kind not in (Kind.ACCEPTED, Kind.TRANSIENT, Kind.THROTTLED):
                error = res.reply.error or ErrorInfo(code=f"HTTP {res.reply.status}", message="")
                reason = f"job {job_id} could not be read"
                self._finish_all(chunk, Outcome.FAILED, error=error, reason=reason)
                return
            if ctx.clock() >= give_up_at:
                self._finish_all(
                    chunk,
                    Outcome.FAILED,
                    error=ErrorInfo(code="job_timeout", message=f"job {job_id} did not end"),
                    reason=f"job {job_id} not finished after {timeout:g}s",
                )
                return

    async def _judge(self, chunk: _Chunk, job: Job) -> None:
        """Each server's outcome from its sub-job (read the server where the code asks to)."""
        subs = {s.server_id: s for s in job.sub_jobs if s.server_id is not None}
        for entry in chunk.entries:
            sub = subs.get(entry.server.id)
            if sub is None:
                error = job.error or ErrorInfo(code=job.status, message="no sub-job")
                reason = f"job {job.job_id} ended {job.status} without this server"
                self._finish(chunk, entry, Outcome.FAILED, error=error, reason=reason)
            else:
                await self._judge_sub_job(chunk, entry, sub)

    async def _judge_sub_job(self, chunk: _Chunk, entry: PlanEntry, sub: SubJob) -> None:
        spec = self.context.options.spec
        error = sub.error or ErrorInfo(code="FAIL", message="")
        verdict = judge_sub_job(sub)
        finish = partial(self._finish, chunk, entry)
        if verdict.kind is Kind.ACCEPTED:
            finish(spec.finished)
        elif verdict.kind is Kind.ALREADY_DONE:
            finish(spec.already, reason=verdict.reason)
        elif verdict.kind is Kind.SKIPPED:
            finish(Outcome.SKIPPED, error=error, reason=verdict.reason)
        elif verdict.kind is Kind.NOT_FOUND:
            finish(Outcome.NOT_FOUND, error=error, reason=verdict.reason)
        elif verdict.kind is Kind.REREAD:
            # "Not in a state to do that": which state, now that the job has ended?
            now = await self.context.reader.current(entry.scope, entry.server.id)
            if now is not None and spec.is_done(now):
                finish(spec.already, reason=f"already {spec.final_status} ({verdict.reason})")
            elif now is not None and spec.in_progress(now):
                finish(Outcome.ACCEPTED, reason=f"already {spec.task_state} ({verdict.reason})")
            else:
                finish(Outcome.FAILED, error=error, reason=verdict.reason)
        else:
            finish(Outcome.FAILED, error=error, reason="failed in its batch job")

    def _finish(
        self,
        chunk: _Chunk,
        entry: PlanEntry,
        outcome: Outcome,
        *,
        error: ErrorInfo | None = None,
        reason: str | None = None,
    ) -> None:
        ctx = self.context
        sent = chunk.sent
        result = result_for(
            entry,
            outcome,
            reason=reason,
            error=error,
            http_status=None if sent is None else sent.reply.status,
            attempts=0 if sent is None else sent.attempts,
            request_id=None if sent is None else sent.reply.request_id,
            elapsed=ctx.clock() - chunk.started,
        )
        ctx.ledger.answered(entry.server.id)
        ctx.ledger.finish(dataclasses.replace(result, job_id=chunk.job_id))

    def _finish_all(self, chunk: _Chunk, outcome: Outcome, **why: ErrorInfo | str) -> None:
        finish: Callable[..., None] = partial(self._finish, chunk)
        for entry in chunk.entries:
            finish(entry, outcome, **why)

    def _answered(self, chunk: _Chunk) -> None:
        """Nothing of the chunk was sent: its servers leave the in-flight set."""
        for entry in chunk.entries:
            self.context.ledger.answered(entry.server.id)


def _chunks(entries: Iterable[PlanEntry], size: int) -> Iterable[tuple[PlanEntry, ...]]:
    iterator = iter(entries)
    while chunk := tuple(itertools.islice(iterator, size)):
        yield chunk
