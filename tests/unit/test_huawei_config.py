"""Where AK/SK keys and Huawei endpoints come from (bulkstop.cloud.huawei), and batch parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.cloud.auth import AuthSettings
from bulkstop.cloud.batch import batch_body, parse_job, validate_job_id
from bulkstop.cloud.huawei import AkSkAccess, AkSkConfig, batch_url, expand, load_aksk
from bulkstop.errors import AuthError, ConfigError
from bulkstop.models import Action, ErrorInfo

PID = "0123456789abcdef0123456789abcdef"


class TestPrecedence:
    """clouds.yaml entry named > OS_ACCESS_KEY > HUAWEICLOUD_SDK_AK > Keystone."""

    def test_nothing_means_keystone(self) -> None:
        assert load_aksk(AuthSettings(), {"OS_AUTH_URL": "https://iam.example/v3"}) is None

    def test_os_variables(self) -> None:
        env = {
            "OS_ACCESS_KEY": "AK1",
            "OS_SECRET_KEY": "SK1",
            "OS_SECURITY_TOKEN": "TOK",
            "OS_PROJECT_ID": PID,
            "OS_REGION_NAME": "ap-southeast-1",
            "HUAWEICLOUD_SDK_AK": "AK2",
            "HUAWEICLOUD_SDK_SK": "SK2",
        }
        config = load_aksk(AuthSettings(), env)
        assert config is not None
        assert config.credentials.access_key == "AK1"
        assert config.credentials.security_token == "TOK"
        assert (config.project_id, config.region, config.source) == (
            PID,
            "ap-southeast-1",
            "OS_ACCESS_KEY",
        )

    def test_huawei_sdk_variables_and_region_override(self) -> None:
        env = {
            "HUAWEICLOUD_SDK_AK": "AK2",
            "HUAWEICLOUD_SDK_SK": "SK2",
            "HUAWEICLOUD_SDK_PROJECT_ID": PID,
            "OS_REGION_NAME": "eu-west-0",
        }
        config = load_aksk(AuthSettings(region_name="af-south-1"), env)
        assert config is not None
        assert (config.credentials.access_key, config.source) == ("AK2", "HUAWEICLOUD_SDK_AK")
        assert config.region == "af-south-1"

    def test_named_cloud_wins_over_environment(self, isolated_openstack_env: Path) -> None:
        isolated_openstack_env.write_text(
            "clouds:\n  hw:\n    auth_type: aksk\n    auth:\n      access_key: AK3\n"
            "      secret_key: SK3\n      security_token: T3\n"
            f"      project_id: {PID}\n    region_name: la-south-2\n"
        )
        config = load_aksk(AuthSettings(os_cloud="hw"), {"OS_ACCESS_KEY": "AK1"})
        assert config is not None
        assert config.credentials.access_key == "AK3"
        assert config.credentials.security_token == "T3"
        assert config.region == "la-south-2"
        assert config.source == "clouds.yaml entry 'hw'"

    def test_named_keystone_cloud_is_not_aksk(self, isolated_openstack_env: Path) -> None:
        isolated_openstack_env.write_text(
            "clouds:\n  ks:\n    auth:\n      auth_url: https://iam.example/v3\n"
            "      username: u\n      password: p\n"
        )
        assert load_aksk(AuthSettings(os_cloud="ks"), {"OS_ACCESS_KEY": "AK1"}) is None

    @pytest.mark.parametrize(
        "env",
        [
            {"OS_ACCESS_KEY": "AK1"},
            {"OS_ACCESS_KEY": "AK1", "OS_SECRET_KEY": "SK", "OS_PROJECT_ID": "a/b"},
        ],
    )
    def test_incomplete_or_bad_values_are_config_errors(self, env: dict[str, str]) -> None:
        with pytest.raises(ConfigError):
            load_aksk(AuthSettings(), env)


class TestEndpoints:
    """Regional URLs and overrides with placeholders."""

    def test_region_defaults(self) -> None:
        native = expand(
            "https://ecs.{region}.myhuaweicloud.com/v2.1/{project_id}",
            project_id=PID,
            region="ap-southeast-1",
        )
        assert native == f"https://ecs.ap-southeast-1.myhuaweicloud.com/v2.1/{PID}"
        bms = batch_url(None, project_id=PID, region="ap-southeast-1", service="bms")
        assert bms == f"https://bms.ap-southeast-1.myhuaweicloud.com/v1/{PID}"

    def test_override_template_and_missing_region(self) -> None:
        url = batch_url(
            "https://gw.example/{service}/v1/{project_id}/",
            project_id=PID,
            region=None,
            service="ecs",
        )
        assert url == f"https://gw.example/ecs/v1/{PID}"
        with pytest.raises(ConfigError, match="no region"):
            batch_url(None, project_id=PID, region=None, service="ecs")
        with pytest.raises(ValueError, match="service"):
            batch_url(None, project_id=PID, region="r", service="obs")


class TestAccess:
    """Per-project endpoints, no renewal, and a refusal that names its cause."""

    def config(self) -> AkSkConfig:
        env = {"OS_ACCESS_KEY": "AK", "OS_SECRET_KEY": "SECRET-XYZ", "OS_REGION_NAME": "r1"}
        config = load_aksk(AuthSettings(), env)
        assert config is not None
        return config

    async def test_each_project_gets_its_own_url_and_header(self) -> None:
        access = AkSkAccess(self.config(), wall_clock=lambda: 1_700_000_000.0)
        one = await access.current(PID)
        assert one.compute_url == f"https://ecs.r1.myhuaweicloud.com/v2.1/{PID}"
        headers = access.sign("p2", "GET", "https://ecs.r1.myhuaweicloud.com/v2.1/p2/x", None)
        assert headers["X-Project-Id"] == "p2"
        assert headers["X-Sdk-Date"] == "20231114T221320Z"
        assert "content-type" not in headers["Authorization"]
        assert "SECRET-XYZ" not in repr(access.config) + str(headers)

    async def test_renew_explains_the_refusal_and_the_clock(self) -> None:
        access = AkSkAccess(self.config(), wall_clock=lambda: 1_700_000_000.0)
        access.refused(
            PID,
            ErrorInfo(code="APIGW.0301", message="verify aksk signature fail"),
            "Tue, 14 Nov 2023 20:13:20 GMT",  # two hours behind us
        )
        with pytest.raises(AuthError) as caught:
            await access.renew(PID)
        message = str(caught.value)
        assert "APIGW.0301: verify aksk signature fail" in message
        assert "local clock is off by 7200 s" in message
        assert "SECRET-XYZ" not in message

    async def test_close_date_does_not_blame_the_clock(self) -> None:
        access = AkSkAccess(self.config(), wall_clock=lambda: 1_700_000_000.0)
        access.refused(PID, None, "Tue, 14 Nov 2023 22:10:20 GMT")
        with pytest.raises(AuthError, match=r"HTTP 401$"):
            await access.renew(PID)

    def test_all_projects_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="all projects"):
            AkSkAccess(self.config()).scope(AuthSettings(all_projects=True))


class TestBatchWire:
    """Batch bodies, job documents and job ids."""

    def test_stop_and_start_bodies(self) -> None:
        assert batch_body(Action.STOP, ["a", "b"], "HARD") == (
            b'{"os-stop":{"type":"HARD","servers":[{"id":"a"},{"id":"b"}]}}'
        )
        assert batch_body(Action.START, ["a"], "HARD") == b'{"os-start":{"servers":[{"id":"a"}]}}'

    def test_job_document(self) -> None:
        document: dict[str, Any] = {
            "status": "FAIL",
            "job_id": "ff80808288d41e1b018a2b3c4d5e6f70",
            "error_code": "BMS.0220",
            "fail_reason": "some failed",
            "entities": {
                "sub_jobs_total": 2,
                "sub_jobs": [
                    {"status": "SUCCESS", "entities": {"server_id": "s1"}},
                    {
                        "status": "FAIL",
                        "error_code": "BMS.0039",
                        "entities": {"server_id": "s2", "errorcode_message": "is stopped"},
                    },
                ],
            },
        }
        job = parse_job(document)
        assert job.ended
        assert job.error == ErrorInfo(code="BMS.0220", message="some failed")
        assert [(s.server_id, s.status) for s in job.sub_jobs] == [
            ("s1", "SUCCESS"),
            ("s2", "FAIL"),
        ]
        assert job.sub_jobs[1].error == ErrorInfo(code="BMS.0039", message="is stopped")

    def test_running_job_without_entities(self) -> None:
        job = parse_job({"status": "RUNNING", "job_id": "abc-123"})
        assert not job.ended
        assert job.sub_jobs == ()

    @given(st.text(max_size=80))
    def test_job_ids_that_reach_a_url_are_plain(self, value: str) -> None:
        try:
            checked = validate_job_id(value)
        except ValueError:
            return
        assert checked == value
        assert all(c.isascii() and (c.isalnum() or c == "-") for c in checked)

    @pytest.mark.parametrize("bad", ["", "../jobs", "a/b", "a?b", "x" * 65, 7, None])
    def test_bad_job_ids(self, bad: object) -> None:
        with pytest.raises(ValueError, match="not a job id"):
            validate_job_id(bad)
