"""The batch dispatcher against in-memory fakes: jobs that end, fail, vanish or never end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from fakes import FakeClock, FakeCompute, fake_engine, make_server

import bulkstop
from bulkstop import arguments
from bulkstop.errors import ParameterError
from bulkstop.execute.batch import BatchSettings, RecordedJob, batch_dispatcher, is_baremetal
from bulkstop.execute.engine import Engine
from bulkstop.models import Action, ErrorInfo, Job, Outcome, Reply, ServerResult, SubJob
from bulkstop.plan.rails import Rails
from bulkstop.record.journal import Journal, read_journal
from bulkstop.select.selector import Selector
from bulkstop.timespec import utc_now

pytestmark = pytest.mark.anyio

NIGHTLY = Selector(tags=("nightly-stop",))
JOB = "ff8080800000000000000000000000a1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeBatch:
    """Batch calls answered with :data:`JOB`; polls answered from ``polls`` (the last repeats)."""

    polls: list[Reply] = field(default_factory=list)
    posts: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    gets: int = 0
    #: When given, what every batch call is answered instead of the job.
    refusal: Reply | None = None

    async def batch_action(
        self,
        project_id: str,
        service: str,
        action: Action,
        server_ids: Sequence[str],
        *,
        stop_type: str | None = None,
    ) -> Reply:
        self.posts.append((service, tuple(server_ids)))
        return self.refusal or Reply(status=200, body=JOB)

    async def get_job(self, project_id: str, service: str, job_id: str) -> Reply:
        self.gets += 1
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]


def job(status: str, *subs: SubJob, error: ErrorInfo | None = None) -> Reply:
    return Reply(status=200, body=Job(job_id=JOB, status=status, error=error, sub_jobs=subs))


async def run(
    fake: FakeCompute,
    batch: FakeBatch,
    *,
    jobs: dict[str, RecordedJob] | None = None,
    **options: object,
) -> tuple[dict[str, ServerResult], Engine]:
    dispatcher = batch_dispatcher(batch, BatchSettings(service="ecs"), jobs=jobs)
    engine = fake_engine(fake, FakeClock(), dispatcher=dispatcher, **options)
    plan = await engine.resolve(NIGHTLY)
    return {r.id: r for r in await engine.execute(plan)}, engine


class TestJobs:
    """What each end of a job makes of its servers."""

    async def test_a_job_that_never_ends_fails_its_servers_at_the_timeout(self) -> None:
        servers = [make_server(i) for i in range(2)]
        batch = FakeBatch(polls=[job("RUNNING")])
        results, engine = await run(FakeCompute.with_servers(servers), batch, wait_timeout=10.0)
        assert {r.outcome for r in results.values()} == {Outcome.FAILED}
        assert {r.reason for r in results.values()} == {f"job {JOB} not finished after 10s"}
        assert {r.job_id for r in results.values()} == {JOB}
        # Polled after 1, 2.5, 4.75, 8.1 s (each wait 1.5x the last), then at the timeout.
        assert batch.gets == 5
        # Every poll went through the gate: it counts against the project's budget.
        assert engine.gate.sent["p1"] == 1 + 1 + batch.gets  # listing, POST, polls

    async def test_a_server_without_a_sub_job_fails_with_the_jobs_error(self) -> None:
        a, b = make_server(1), make_server(2)
        error = ErrorInfo(code="BMS.0220", message="some servers failed")
        batch = FakeBatch(
            polls=[job("FAIL", SubJob(server_id=a.id, status="SUCCESS"), error=error)]
        )
        results, _ = await run(FakeCompute.with_servers([a, b]), batch)
        assert results[a.id].outcome is Outcome.STOPPED
        assert results[b.id].outcome is Outcome.FAILED
        assert results[b.id].error == error

    async def test_codes_are_judged_by_the_verdict_table(self) -> None:
        done, busy, idle, gone, other = (make_server(i) for i in range(5))
        fake = FakeCompute.with_servers([done, busy, idle, gone, other])
        fail = {
            done.id: "BMS.0039",
            busy.id: "BMS.0036",
            idle.id: "Ecs.0100",
            gone.id: "BMS.0040",
            other.id: "BMS.0212",
        }
        subs = [
            SubJob(server_id=sid, status="FAIL", error=ErrorInfo(code=code, message="m"))
            for sid, code in fail.items()
        ]
        batch = FakeBatch(polls=[job("FAIL", *subs)])
        # Read after the job: one server is powering off by then, the other still active.
        fake.script[f"get:{busy.id}"] = [
            Reply(status=200, body=make_server(1, task_state="powering-off"))
        ]
        results, _ = await run(fake, batch)
        assert {sid: r.outcome for sid, r in results.items()} == {
            done.id: Outcome.ALREADY_STOPPED,
            busy.id: Outcome.ACCEPTED,
            idle.id: Outcome.FAILED,
            gone.id: Outcome.NOT_FOUND,
            other.id: Outcome.FAILED,
        }
        assert results[other.id].error == ErrorInfo(code="BMS.0212", message="m")

    async def test_a_job_that_cannot_be_read_fails_its_servers_at_once(self) -> None:
        servers = [make_server(i) for i in range(2)]
        refused = Reply(status=400, error=ErrorInfo(code="Common.0011", message="bad job id"))
        batch = FakeBatch(polls=[refused])
        results, _ = await run(FakeCompute.with_servers(servers), batch)
        assert {r.reason for r in results.values()} == {f"job {JOB} could not be read"}
        assert batch.gets == 1

    async def test_a_recorded_job_is_polled_and_never_sent_again(self) -> None:
        servers = [make_server(i) for i in range(3)]
        recorded = RecordedJob(scope="p1", service="bms", job_id=JOB)
        jobs = {servers[0].id: recorded, servers[1].id: recorded}
        # The fake answers every poll alike: the new chunk's job shows its server too.
        subs = [SubJob(server_id=s.id, status="SUCCESS") for s in servers]
        batch = FakeBatch(polls=[job("SUCCESS", *subs)])
        results, _ = await run(FakeCompute.with_servers(servers), batch, jobs=jobs)
        assert [ids for _, ids in batch.posts] == [(servers[2].id,)]
        assert {r.outcome for r in results.values()} == {Outcome.STOPPED}


class TestRails:
    """Halts are seen between chunks."""

    async def test_no_new_chunk_after_the_deadline(self) -> None:
        servers = [make_server(i) for i in range(5)]
        subs = [SubJob(server_id=s.id, status="SUCCESS") for s in servers]
        batch = FakeBatch(polls=[job("SUCCESS", *subs)])
        # Each chunk's job is seen ended by its first poll, 1 s after its call.
        engine = fake_engine(
            FakeCompute.with_servers(servers),
            FakeClock(),
            dispatcher=batch_dispatcher(batch, BatchSettings(service="ecs", batch_size=1)),
            rails=Rails(deadline=utc_now() + timedelta(seconds=2.5)),
        )
        results = await engine.execute(await engine.resolve(NIGHTLY))
        assert len(batch.posts) == 3
        assert [r.outcome for r in results] == [Outcome.STOPPED] * 3 + [Outcome.NOT_ATTEMPTED] * 2
        assert engine.halted == "deadline"

    def deadline_run(self, servers: int, refusal: Reply) -> tuple[Engine, FakeBatch]:
        batch = FakeBatch(refusal=refusal)
        engine = fake_engine(
            FakeCompute.with_servers([make_server(i) for i in range(servers)]),
            FakeClock(),
            dispatcher=batch_dispatcher(batch, BatchSettings(service="ecs")),
            rails=Rails(deadline=utc_now() + timedelta(seconds=2.5)),
        )
        return engine, batch

    async def test_a_failed_batch_call_is_not_retried_after_the_deadline(self) -> None:
        # 503s: the gate retries with backoff (1, 2, 4 s...), but not past the deadline.
        engine, batch = self.deadline_run(2, Reply(status=503))
        results = await engine.execute(await engine.resolve(NIGHTLY))
        assert len(batch.posts) < engine.gate.policy.max_attempts
        assert {r.reason for r in results} == {"deadline passed before a retry"}

    async def test_a_chunk_only_ever_throttled_is_not_attempted(self) -> None:
        # Every answer a 429: the cloud carried nothing out, whatever stopped the run.
        engine, _ = self.deadline_run(2, Reply(status=429, retry_after=2.0))
        results = await engine.execute(await engine.resolve(NIGHTLY))
        assert {r.outcome for r in results} == {Outcome.NOT_ATTEMPTED}
        assert {r.attempts for r in results} == {2}


class TestSettings:
    """The parameters, routing and the journal's job records."""

    def test_routing_by_the_bare_metal_marks(self) -> None:
        tagged = make_server(1, tags=("__type_baremetal",))
        assert is_baremetal(tagged)
        assert not is_baremetal(make_server(2))
        assert BatchSettings().service_of(tagged) == "bms"
        assert BatchSettings(service="ecs").service_of(tagged) == "ecs"

    @pytest.mark.parametrize(
        ("params", "named"),
        [
            ({"api": "batch", "batch_size": 1001}, "batch_size"),
            ({"api": "batch", "batch_size": 0}, "batch_size"),
            ({"api": "grpc"}, "api"),
            ({"api": "batch", "service": "rds"}, "service"),
            ({"batch_size": 10}, "batch_size"),
        ],
    )
    def test_bad_batch_parameters_are_refused(self, params: dict[str, object], named: str) -> None:
        with pytest.raises(ParameterError) as caught:
            arguments.batch_settings(params)
        assert named in str(caught.value)

    def test_native_is_the_default(self) -> None:
        assert arguments.batch_settings({}) is None
        settings = arguments.batch_settings({"api": "batch"})
        assert settings == BatchSettings()
        assert arguments.batch_options(settings)["batch_size"] == 1000

    async def test_the_journal_keeps_each_servers_job_until_its_outcome(
        self, tmp_path: Path
    ) -> None:
        from bulkstop.execute.resolve import Plan
        from bulkstop.models import Action as A
        from bulkstop.plan.eligibility import PlanEntry
        from bulkstop.timespec import utc_now

        a, b = make_server(1), make_server(2)
        plan = Plan(entries=(PlanEntry(server=a, scope="p1"), PlanEntry(server=b, scope="p1")))
        path = str(tmp_path / "j.jsonl")
        journal = Journal(path)
        journal.start(
            action=A.STOP,
            started_at=utc_now(),
            selector={},
            options={"api": "batch"},
            command=(),
            report_path=None,
            plan=plan,
        )
        for entry in plan.entries:
            journal.sending(entry)
        journal.job_started("p1", "bms", JOB, [a.id, b.id])
        journal.finished(
            ServerResult(id=a.id, project_id="p1", outcome=Outcome.STOPPED, job_id=JOB)
        )
        journal.close(halted_by=None)
        state = read_journal(path)
        assert state.jobs == {b.id: RecordedJob(scope="p1", service="bms", job_id=JOB)}
        assert state.outcomes[a.id].job_id == JOB
        # Only the batch API can poll those jobs: a resume that would re-send them is refused.
        with pytest.raises(ParameterError, match="batch API can poll"):
            await bulkstop.resume(state, api="native")
