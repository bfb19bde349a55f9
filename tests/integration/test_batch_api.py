"""``api="batch"``: Huawei's batch API end to end through the front door, against the mock in
Huawei AK/SK mode over loopback.

Each test checks the mock's request journal: no server outside the selection is ever named in
a batch call, and chunks of a project and service are sent one job after another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest
from fleets import TAG, fleet, pid, server, sid

import bulkstop
from bulkstop.cloud.base import BAREMETAL_TAG
from bulkstop.cloud.http import HttpCompute
from bulkstop.errors import AuthError, ParameterError
from bulkstop.mockcloud import Faults, MockCloud, MockConfig
from bulkstop.mockcloud.huawei import KIND_BATCH, KIND_JOB
from bulkstop.mockcloud.journal import RequestRecord
from bulkstop.models import Outcome
from bulkstop.record.journal import read_journal

MakeMock = Callable[..., Awaitable[MockCloud]]
UseEnv = Callable[[dict[str, str]], None]

#: Short enough for a quick test, long enough to be polled more than once.
JOB_DURATION: Final = 0.3
POLL: Final = 0.05


def metal(name: str, project: str = "p0", **state: Any) -> dict[str, Any]:
    """A bare metal server, as Huawei marks one (tag and metadata key)."""
    return server(
        name, project, tags=(TAG, BAREMETAL_TAG), metadata={BAREMETAL_TAG: "true"}, **state
    )


async def huawei(
    make_mock_cloud: MakeMock, use_env: UseEnv, *servers: dict[str, Any], **options: Any
) -> MockCloud:
    config = MockConfig(
        fleet=fleet(*servers),
        huawei=True,
        aksk=True,
        transition_delay=0.0,
        job_duration=options.pop("job_duration", JOB_DURATION),
        **options,
    )
    mock = await make_mock_cloud(config)
    use_env(mock.aksk_env(pid(mock, "p0")))
    return mock


async def stop(mock: MockCloud, tmp_path: Path, **params: Any) -> bulkstop.RunResult:
    params.setdefault("tags", TAG)
    return await bulkstop.stop(
        cloud=bulkstop.AuthSettings(endpoint=mock.base_url + "/v2.1/{project_id}"),
        api="batch",
        batch_endpoint=mock.batch_url_template,
        poll_interval=POLL,
        report=str(tmp_path / "r.json"),
        **params,
    )


def batches(mock: MockCloud) -> list[RequestRecord]:
    return [r for r in mock.requests if r.kind == KIND_BATCH]


def named(mock: MockCloud) -> Counter[str]:
    """How often each server was named in an accepted batch call (one that got a job)."""
    return Counter(s for r in batches(mock) if r.status == 200 for s in r.servers)


def outcomes(result: bulkstop.RunResult) -> dict[str, Outcome]:
    return {s.id: s.outcome for s in result.report.servers}


class TestBatchRuns:
    """Chunks, routing and sub-job outcomes."""

    async def test_routes_by_service_and_maps_each_sub_job(
        self, make_mock_cloud: MakeMock, use_env: UseEnv, tmp_path: Path
    ) -> None:
        mock = await huawei(
            make_mock_cloud,
            use_env,
            metal("m1"),
            metal("m2"),
            server("e1"),
            server("locked", locked=True),
            server("other", tags=("something-else",)),
            server("outside", "p1"),
        )
        result = await stop(mock, tmp_path, include_locked=True, stop_type="HARD")
        got = outcomes(result)
        assert got == {
            sid("m1"): Outcome.STOPPED,
            sid("m2"): Outcome.STOPPED,
            sid("e1"): Outcome.STOPPED,
            sid("locked"): Outcome.SKIPPED,
        }
        by_path = {r.path.split("/")[1]: set(r.servers) for r in batches(mock)}
        assert by_path == {"bms": {sid("m1"), sid("m2")}, "ecs": {sid("e1"), sid("locked")}}
        assert all(s.job_id for s in result.report.servers)
        locked = next(s for s in result.report.servers if s.id == sid("locked"))
        assert locked.error is not None and locked.error.code == "Ecs.0605"
        assert mock.servers[sid("m1")].vm_state == "stopped"
        assert result.exit_code == 0
        # Far fewer calls than servers: one POST per service plus a few polls each.
        assert any(r.kind == KIND_JOB for r in mock.requests)

    async def test_partial_failures_and_chunks_one_job_at_a_time(
        self, make_mock_cloud: MakeMock, use_env: UseEnv, tmp_path: Path
    ) -> None:
        names = [f"m{n}" for n in range(7)]
        mock = await huawei(
            make_mock_cloud, use_env, *(metal(n) for n in names), job_failure_rate=0.4, seed=2
        )
        result = await stop(mock, tmp_path, batch_size=3)
        got = outcomes(result)
        assert set(got) == {sid(n) for n in names}
        failed = [s for s in result.report.servers if s.outcome is Outcome.FAILED]
        assert failed and len(failed) < len(names), got
        assert all(s.error is not None and s.error.code == "BMS.0212" for s in failed)
        assert all(mock.servers[s.id].vm_state == "active" for s in failed)
        assert {o for o in got.values()} == {Outcome.STOPPED, Outcome.FAILED}
        assert result.exit_code == 1
        posts = batches(mock)
        assert [len(r.servers) for r in posts] == [3, 3, 1]
        # Each chunk waits for the last one's job to end: a job poll between every two POSTs.
        kinds = [r.kind for r in mock.requests if r.kind in (KIND_BATCH, KIND_JOB)]
        for before, after in zip(
            [i for i, k in enumerate(kinds) if k == KIND_BATCH],
            [i for i, k in enumerate(kinds) if k == KIND_BATCH][1:],
            strict=False,
        ):
            assert KIND_JOB in kinds[before:after]
        assert named(mock) == Counter({sid(n): 1 for n in names})

    async def test_soft_stop_of_bare_metal_is_refused_before_anything_is_sent(
        self, make_mock_cloud: MakeMock, use_env: UseEnv, tmp_path: Path
    ) -> None:
        mock = await huawei(make_mock_cloud, use_env, metal("m1"), server("e1"))
        with pytest.raises(ParameterError, match=r"stop_type.*bare metal"):
            await stop(mock, tmp_path, stop_type="SOFT")
        assert batches(mock) == []

    async def test_batch_size_above_1000_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ParameterError, match="batch_size"):
            await bulkstop.stop(tags=TAG, api="batch", batch_size=1001)


class TestThrottles:
    """APIG.0308 429s and Common.0024 202s are waited out, never taken for success."""

    async def test_flow_limit_and_gateway_throttles_are_retried(
        self, make_mock_cloud: MakeMock, use_env: UseEnv, tmp_path: Path
    ) -> None:
        names = [f"e{n}" for n in range(4)]
        mock = await huawei(
            make_mock_cloud,
            use_env,
            *(server(n) for n in names),
            flow_limit_rate=0.3,
            faults=Faults(
                flavour="huawei", throttle="apig", retry_after="none", rate_limit=4, burst=1
            ),
            seed=4,
        )
        result = await stop(mock, tmp_path, batch_size=2, rate=0)
        assert outcomes(result) == {sid(n): Outcome.STOPPED for n in names}
        statuses = Counter(r.status for r in mock.requests)
        assert statuses[202] >= 1, statuses  # Common.0024 came, and was retried
        assert statuses[429] >= 1, statuses  # APIG.0308 came, and was retried
        assert named(mock) == Counter({sid(n): 1 for n in names})


class TestRails:
    """The canary is its own first batch; waves are batched one at a time."""

    async def test_failed_canary_job_stops_the_run(
        self, make_mock_cloud: MakeMock, use_env: UseEnv, tmp_path: Path
    ) -> None:
        names = [f"m{n}" for n in range(5)]
        mock = await huawei(
            make_mock_cloud, use_env, *(metal(n) for n in names), job_failure_rate=1.0
        )
        result = await stop(mock, tmp_path, canary=2)
        assert result.report.halted_by is not None
        assert result.report.halted_by.startswith("canary")
        posts = batches(mock)
        assert len(posts) == 1 and len(posts[0].servers) == 2
        got = Counter(outcomes(result).values())
        assert got == Counter({Outcome.FAILED: 2, Outcome.NOT_ATTEMPTED: 3})
        assert result.exit_code == 4

    async def test_canary_then_waves_in_order(
        self, make_mock_cloud: MakeMock, use_env: UseEnv, tmp_path: Path
    ) -> None:
        wave = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 2}
        mock = await huawei(
            make_mock_cloud,
            use_env,
            *(server(n, tags=(TAG, f"bulkstop:wave={w}")) for n, w in wave.items()),
            server("last"),
        )
        result = await stop(mock, tmp_path, canary=1)
        assert set(outcomes(result).values()) == {Outcome.STOPPED}
        sent = [set(r.servers) for r in batches(mock)]
        assert sent == [
            {sid("a")},
            {sid("b"), sid("c")},
            {sid("d"), sid("e")},
            {sid("last")},
        ]

    async def test_max_errors_counts_sub_job_failures(
        self, make_mock_cloud: MakeMock, use_env: UseEnv, tmp_path: Path
    ) -> None:
        names = [f"m{n}" for n in range(6)]
        mock = await huawei(
            make_mock_cloud, use_env, *(metal(n) for n in names), job_failure_rate=1.0
        )
        result = await stop(mock, tmp_path, batch_size=2, max_errors=1)
        assert result.report.halted_by is not None
        assert result.report.halted_by.startswith("max-errors")
        assert len(batches(mock)) == 1
        got = Counter(outcomes(result).values())
        assert got == Counter({Outcome.FAILED: 2, Outcome.NOT_ATTEMPTED: 4})


class TestExpiredKeys:
    """A 401 in the middle of a run stops sending; the rest are not attempted; resume ends it."""

    async def test_expired_key_stops_sending_and_resume_finishes(
        self,
        make_mock_cloud: MakeMock,
        use_env: UseEnv,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        names = [f"m{n}" for n in range(4)]
        mock = await huawei(make_mock_cloud, use_env, *(metal(n) for n in names))
        signatures = mock.signatures
        posts = 0
        real = HttpCompute.request

        async def expiring(self: HttpCompute, *args: Any, **kwargs: Any) -> Any:
            nonlocal posts
            if args[1] == "POST":
                posts += 1
                if posts == 2:  # the key "expires" before the second chunk's call
                    monkeypatch.setattr(signatures, "secret_key", "0" * 40)
            return await real(self, *args, **kwargs)

        monkeypatch.setattr(HttpCompute, "request", expiring)
        with pytest.raises(AuthError):
            await stop(mock, tmp_path, batch_size=2)
        monkeypatch.undo()
        use_env(mock.aksk_env(pid(mock, "p0")))
        journal = read_journal(str(tmp_path / "r.journal.jsonl"))
        assert len(journal.outcomes) == 2
        assert named(mock) == Counter({sid("m0"): 1, sid("m1"): 1})
        result = await bulkstop.resume(journal.path, poll_interval=POLL)
        assert outcomes(result) == {sid(n): Outcome.STOPPED for n in names}
        assert named(mock) == Counter({sid(n): 1 for n in names})
