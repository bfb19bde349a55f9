"""AK/SK signing and the batch API, through real loopback sockets against the mock in AK/SK mode.

The mock checks every signature as Huawei's API gateway does (see
:mod:`bulkstop.mockcloud.huawei`), so each accepted request here is a request signed right.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from bulkstop.cloud import aksk
from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.batch import HttpBatch
from bulkstop.cloud.http import HttpCompute, open_compute
from bulkstop.cloud.huawei import AkSkAccess, AkSkConfig
from bulkstop.errors import AuthError
from bulkstop.mockcloud import FakeClock, Faults, MockCloud, MockConfig
from bulkstop.mockcloud.huawei import BAREMETAL_TAG, KIND_BATCH, KIND_JOB
from bulkstop.models import Action, Job, ListQuery, Server, ServerPage

TIMEOUT = 5.0


@pytest.fixture
def clock() -> FakeClock:
    """The mock's clock, moved by hand (job progress, transitions)."""
    return FakeClock()


@pytest.fixture
async def mock(clock: FakeClock) -> AsyncIterator[MockCloud]:
    config = MockConfig(
        servers=40,
        projects=2,
        seed=3,
        huawei=True,
        aksk=True,
        clock=clock,
        transition_delay=0.0,
        job_duration=10.0,
    )
    async with MockCloud(config) as cloud:
        yield cloud


UseEnv = Callable[[dict[str, str]], None]


def endpoint(mock: MockCloud) -> str:
    return mock.base_url + "/v2.1/{project_id}"


async def connect(mock: MockCloud, **settings: object) -> tuple[HttpCompute, list[str]]:
    auth = AuthSettings(endpoint=endpoint(mock), **settings)  # type: ignore[arg-type]
    return await open_compute(auth, request_timeout=TIMEOUT, pool_size=4)


def signed_by(mock: MockCloud, secret_key: str | None = None, **shift: float) -> HttpCompute:
    """A client with the mock's keys (or a wrong secret), its clock shifted by ``seconds``."""
    env = mock.aksk_env()
    config = AkSkConfig(
        credentials=aksk.AkSkCredentials(
            access_key=env["OS_ACCESS_KEY"], secret_key=secret_key or env["OS_SECRET_KEY"]
        ),
        project_id=env["OS_PROJECT_ID"],
        region=None,
        source="test",
        endpoint=endpoint(mock),
    )
    offset = shift.get("seconds", 0.0)
    access = AkSkAccess(config, wall_clock=lambda: time.time() + offset)
    return HttpCompute(access, request_timeout=TIMEOUT, signer=access)


def write_aksk_cloud(path: Path, name: str, env: dict[str, str]) -> None:
    """A clouds.yaml with one ``auth_type: aksk`` entry holding the mock's keys."""
    path.write_text(
        f"clouds:\n  {name}:\n    auth_type: aksk\n    auth:\n"
        f"      access_key: {env['OS_ACCESS_KEY']}\n"
        f"      secret_key: {env['OS_SECRET_KEY']}\n"
        f"      project_id: {env['OS_PROJECT_ID']}\n"
        f"    region_name: {env['OS_REGION_NAME']}\n"
    )


class TestKeystoneOnHuawei:
    """IAM tokens: the catalog's /v2 compute URL is upgraded to v2.1, never used as is."""

    async def test_v2_catalog_url_is_upgraded(self, mock: MockCloud, use_env: UseEnv) -> None:
        use_env(mock.os_env())
        compute, scope = await open_compute(AuthSettings(), request_timeout=TIMEOUT, pool_size=2)
        try:
            reply = await compute.list_page(scope[0], ListQuery(limit=2), None)
            assert reply.status == 200, reply.error
        finally:
            await compute.aclose()
        compute_paths = [r.path for r in mock.requests if r.kind in ("list", "other")]
        assert "/" in compute_paths  # version discovery
        assert f"/v2.1/{scope[0]}/servers/detail" in compute_paths
        assert not any(path.startswith("/v2/") for path in compute_paths)


class TestSignedCompute:
    """Every compute call is signed, per project, with the query exactly as sent."""

    async def test_env_keys_list_get_and_stop(self, mock: MockCloud, use_env: UseEnv) -> None:
        use_env(mock.aksk_env())
        compute, scope = await connect(mock)
        try:
            assert scope == [mock.project_ids[0]]
            page = await compute.list_page(scope[0], ListQuery(limit=5), None)
            assert page.status == 200, page.error
            assert isinstance(page.body, ServerPage)
            server = page.body.servers[0]
            shown = await compute.get_server(scope[0], server.id)
            assert shown.status == 200, shown.error
            stopped = await compute.action(scope[0], server.id, Action.STOP)
            assert stopped.status in (204, 409), stopped.error
        finally:
            await compute.aclose()

    async def test_tag_query_with_commas_and_spaces_is_signed_as_sent(
        self, mock: MockCloud, use_env: UseEnv
    ) -> None:
        use_env(mock.aksk_env())
        compute, scope = await connect(mock)
        try:
            query = ListQuery(tags=("a b", "c~d"), not_tags=("x,y",), limit=3)
            reply = await compute.list_page(scope[0], query, "some marker")
            assert reply.error is None or reply.error.code != "APIGW.0301", reply.error
            assert reply.status != 401
        finally:
            await compute.aclose()

    async def test_each_project_signs_its_own_project_id(
        self, mock: MockCloud, use_env: UseEnv
    ) -> None:
        use_env(mock.aksk_env())
        compute, scope = await connect(mock, projects=tuple(mock.project_ids))
        try:
            assert scope == mock.project_ids
            for project_id in scope:
                reply = await compute.list_page(project_id, ListQuery(), None)
                assert reply.status == 200, reply.error
                assert isinstance(reply.body, ServerPage)
                assert {s.id for s in reply.body.servers} == set(mock.server_ids(project_id))
        finally:
            await compute.aclose()

    async def test_clouds_yaml_entry(self, mock: MockCloud, isolated_openstack_env: Path) -> None:
        env = mock.aksk_env(mock.project_ids[1])
        write_aksk_cloud(isolated_openstack_env, "hw", env)
        compute, scope = await connect(mock, os_cloud="hw")
        try:
            assert scope == [mock.project_ids[1]]
            reply = await compute.list_page(scope[0], ListQuery(limit=1), None)
            assert reply.status == 200, reply.error
        finally:
            await compute.aclose()


class TestRefusals:
    """The gateway's 401s become one-line AuthErrors that say why, and never show the secret."""

    async def test_wrong_secret(self, mock: MockCloud) -> None:
        wrong = "0" * 40
        compute = signed_by(mock, secret_key=wrong)
        project_id = mock.project_ids[0]
        try:
            reply = await compute.list_page(project_id, ListQuery(), None)
            assert reply.status == 401
            assert reply.error is not None
            assert reply.error.code == "APIGW.0301"
            with pytest.raises(AuthError, match=r"APIGW\.0301") as caught:
                await compute.renew_auth(project_id)
            assert "clock" not in str(caught.value)
            assert wrong not in str(caught.value)
            assert mock.aksk_env()["OS_SECRET_KEY"] not in str(caught.value)
        finally:
            await compute.aclose()

    async def test_clock_off_by_an_hour_is_named(self, mock: MockCloud) -> None:
        compute = signed_by(mock, seconds=3600.0)
        project_id = mock.project_ids[0]
        try:
            reply = await compute.list_page(project_id, ListQuery(), None)
            assert reply.status == 401
            with pytest.raises(AuthError, match=r"local clock is off by 3[56]\d\d s"):
                await compute.renew_auth(project_id)
        finally:
            await compute.aclose()

    async def test_ten_minutes_off_is_still_accepted(self, mock: MockCloud) -> None:
        compute = signed_by(mock, seconds=600.0)
        try:
            reply = await compute.list_page(mock.project_ids[0], ListQuery(), None)
            assert reply.status == 200, reply.error
        finally:
            await compute.aclose()

    async def test_missing_project_header_or_bad_token_is_refused(self, mock: MockCloud) -> None:
        env = mock.aksk_env()
        credentials = aksk.AkSkCredentials(
            access_key=env["OS_ACCESS_KEY"], secret_key=env["OS_SECRET_KEY"]
        )
        url = f"{mock.base_url}/v2.1/{env['OS_PROJECT_ID']}/servers/detail"
        signed = aksk.sign(
            credentials,
            method="GET",
            url=url,
            project_id=env["OS_PROJECT_ID"],
            now=datetime.now(UTC),
        )
        without = {k: v for k, v in signed.headers.items() if k != aksk.HEADER_PROJECT}
        async with aiohttp.ClientSession() as session:
            async with session.get(URL(url, encoded=True), headers=without) as response:
                assert response.status == 401
                assert (await response.json())["error_code"] == "APIGW.0301"
            token = {"X-Auth-Token": "x" * 32}
            async with session.get(URL(url, encoded=True), headers=token) as response:
                assert response.status == 401
            async with session.get(URL(url, encoded=True), headers=signed.headers) as response:
                assert response.status == 200


class TestBatch:
    """The v1 batch API and its jobs, signed, against the mock's job model."""

    async def test_stop_job_moves_init_running_success(
        self, mock: MockCloud, clock: FakeClock
    ) -> None:
        compute = signed_by(mock)
        batch = HttpBatch(compute, region=None, template=mock.batch_url_template)
        project_id = mock.project_ids[0]
        ids = [
            sid for sid in mock.server_ids(project_id) if mock.servers[sid].vm_state == "active"
        ][:5]
        try:
            reply = await batch.batch_action(project_id, "bms", Action.STOP, ids, stop_type="HARD")
            assert reply.status == 200, reply.error
            job_id = reply.body
            assert isinstance(job_id, str)
            seen = []
            for advance in (0.0, 5.0, 10.0):
                clock.advance(advance)
                polled = await batch.get_job(project_id, "bms", job_id)
                assert polled.status == 200, polled.error
                assert isinstance(polled.body, Job)
                seen.append(polled.body.status)
            assert seen == ["INIT", "RUNNING", "SUCCESS"]
            assert {sub.server_id for sub in polled.body.sub_jobs} == set(ids)
            assert all(mock.servers[sid].vm_state == "stopped" for sid in ids)
            kinds = [r.kind for r in mock.requests if r.kind in (KIND_BATCH, KIND_JOB)]
            assert kinds == [KIND_BATCH, KIND_JOB, KIND_JOB, KIND_JOB]
        finally:
            await compute.aclose()

    async def test_already_stopped_server_fails_with_bms_0039(
        self, mock: MockCloud, clock: FakeClock
    ) -> None:
        compute = signed_by(mock)
        batch = HttpBatch(compute, region=None, template=mock.batch_url_template)
        project_id = mock.project_ids[0]
        by_state = {mock.servers[sid].vm_state: sid for sid in mock.server_ids(project_id)}
        ids = [by_state["stopped"], by_state["active"]]
        try:
            reply = await batch.batch_action(project_id, "ecs", Action.STOP, ids)
            clock.advance(10.0)
            polled = await batch.get_job(project_id, "ecs", reply.body)
            job = polled.body
            assert isinstance(job, Job)
            assert job.status == "FAIL"
            fates = {sub.server_id: sub for sub in job.sub_jobs}
            assert fates[ids[0]].status == "FAIL"
            assert fates[ids[0]].error is not None
            assert fates[ids[0]].error.code == "BMS.0039"
            assert fates[ids[1]].status == "SUCCESS"
        finally:
            await compute.aclose()

    async def test_flow_limit_is_a_2xx_without_a_job(
        self, make_mock_cloud: Callable[..., object]
    ) -> None:
        cloud = await make_mock_cloud(  # type: ignore[misc]
            MockConfig(servers=4, projects=1, huawei=True, aksk=True, flow_limit_rate=1.0)
        )
        compute = signed_by(cloud)
        batch = HttpBatch(compute, region=None, template=cloud.batch_url_template)
        project_id = cloud.project_ids[0]
        try:
            reply = await batch.batch_action(
                project_id, "ecs", Action.STOP, cloud.server_ids(project_id)
            )
            assert reply.status == 202
            assert reply.body is None
            assert reply.error is not None
            assert reply.error.code == "Common.0024"
        finally:
            await compute.aclose()

    async def test_seeded_partial_failures(self, make_mock_cloud: Callable[..., object]) -> None:
        cloud = await make_mock_cloud(  # type: ignore[misc]
            MockConfig(
                servers=200,
                projects=1,
                huawei=True,
                aksk=True,
                job_failure_rate=0.3,
                job_duration=0.0,
                seed=5,
            )
        )
        compute = signed_by(cloud)
        batch = HttpBatch(compute, region=None, template=cloud.batch_url_template)
        project_id = cloud.project_ids[0]
        ids = [
            sid
            for sid in cloud.server_ids(project_id)
            if cloud.servers[sid].refusal("os-stop", is_admin=False) is None
        ]
        try:
            reply = await batch.batch_action(project_id, "bms", Action.STOP, ids)
            polled = await batch.get_job(project_id, "bms", reply.body)
            job = polled.body
            assert isinstance(job, Job)
            failed = [s for s in job.sub_jobs if s.status == "FAIL"]
            assert job.status == "FAIL"
            assert 0.15 * len(ids) < len(failed) < 0.45 * len(ids)
            assert {s.error.code for s in failed if s.error} == {"BMS.0212"}
        finally:
            await compute.aclose()

    async def test_more_than_1000_is_ecs_0118(self, mock: MockCloud) -> None:
        env = mock.aksk_env()
        project_id = env["OS_PROJECT_ID"]
        body = (
            b'{"os-stop":{"servers":['
            + b",".join(b'{"id":"%032x"}' % n for n in range(1001))
            + b"]}}"
        )
        url = mock.batch_url_template.format(service="ecs", project_id=project_id)
        url += "/cloudservers/action"
        credentials = aksk.AkSkCredentials(
            access_key=env["OS_ACCESS_KEY"], secret_key=env["OS_SECRET_KEY"]
        )
        signed = aksk.sign(
            credentials,
            method="POST",
            url=url,
            project_id=project_id,
            body=body,
            content_type="application/json",
            now=datetime.now(UTC),
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(URL(url, encoded=True), data=body, headers=signed.headers) as response,
        ):
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "Ecs.0118"

    async def test_unknown_job_id_is_common_0011(self, mock: MockCloud) -> None:
        compute = signed_by(mock)
        batch = HttpBatch(compute, region=None, template=mock.batch_url_template)
        try:
            reply = await batch.get_job(mock.project_ids[0], "bms", "ff808081" + "0" * 24)
            assert reply.status == 400
            assert reply.error is not None
            assert reply.error.code == "Common.0011"
        finally:
            await compute.aclose()


class TestBareMetal:
    """Bare metal records and refusals as Huawei's BMS API shows them."""

    async def test_power_state_and_bms_0039_in_a_400(
        self, make_mock_cloud: Callable[..., object]
    ) -> None:
        cloud = await make_mock_cloud(  # type: ignore[misc]
            MockConfig(
                servers=60,
                projects=1,
                huawei=True,
                aksk=True,
                baremetal_fraction=1.0,
                faults=Faults(flavour="huawei"),
            )
        )
        compute = signed_by(cloud)
        project_id = cloud.project_ids[0]
        stopped = next(
            sid for sid in cloud.server_ids(project_id) if cloud.servers[sid].vm_state == "stopped"
        )
        try:
            shown = await compute.get_server(project_id, stopped)
            assert isinstance(shown.body, Server)
            assert BAREMETAL_TAG in (shown.body.tags or ())
            assert shown.body.metadata[BAREMETAL_TAG] == "true"
            assert shown.body.power_state == 3  # BMS numbering; Nova's shutdown is 4
            refused = await compute.action(project_id, stopped, Action.STOP)
            assert refused.status == 400
            assert refused.error is not None
            assert refused.error.code == "BMS.0039"
        finally:
            await compute.aclose()


class TestThrottling:
    """The project's quota counts batch calls and job polls; APIG.0308 has no Retry-After."""

    async def test_batch_calls_share_the_quota(
        self, make_mock_cloud: Callable[..., object]
    ) -> None:
        faults = Faults(
            rate_limit=1.0, burst=2, throttle="apig", retry_after="none", flavour="huawei"
        )
        cloud = await make_mock_cloud(  # type: ignore[misc]
            MockConfig(servers=4, projects=1, huawei=True, aksk=True, faults=faults)
        )
        compute = signed_by(cloud)
        batch = HttpBatch(compute, region=None, template=cloud.batch_url_template)
        project_id = cloud.project_ids[0]
        try:
            listed = await compute.list_page(project_id, ListQuery(), None)
            assert listed.status == 200
            first = await batch.batch_action(
                project_id, "ecs", Action.STOP, cloud.server_ids(project_id)
            )
            assert first.status == 200
            polled = await batch.get_job(project_id, "ecs", first.body)
            assert polled.status == 429
            assert polled.error is not None
            assert polled.error.code == "APIG.0308"
            assert polled.retry_after is None
        finally:
            await compute.aclose()
