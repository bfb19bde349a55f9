"""``bulkstop stop`` on Huawei Cloud with AK/SK, against the mock in Huawei AK/SK mode."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from fleets import TAG, server, sid

from bulkstop.mockcloud import Faults, MockCloud, MockConfig
from bulkstop.mockcloud.journal import KIND_ACTION

Bulkstop = Callable[..., Result]


@pytest.fixture
def huawei(
    monkeypatch: pytest.MonkeyPatch,
    isolated_openstack_env: Path,
    threaded_mock: Callable[[MockConfig], MockCloud],
) -> MockCloud:
    """A Huawei-mode mock with two servers to stop and one already off; AK/SK in the env."""
    mock = threaded_mock(
        MockConfig(
            fleet=[server("a"), server("b"), server("off", vm_state="stopped")],
            huawei=True,
            aksk=True,
            faults=Faults(flavour="huawei"),
        )
    )
    for name, value in mock.aksk_env().items():
        monkeypatch.setenv(name, value)
    return mock


def endpoint(mock: MockCloud) -> str:
    return mock.base_url + "/v2.1/{project_id}"


def actions(mock: MockCloud) -> Counter[str]:
    return Counter(r.server_id or "" for r in mock.requests if r.kind == KIND_ACTION)


class TestAkSk:
    """Signed end to end; a refused signature is exit 3 before any action, secret unseen."""

    def test_stop_signed_with_environment_keys(self, huawei: MockCloud, bulkstop: Bulkstop) -> None:
        result = bulkstop(
            "stop", "--tag", TAG, "--yes", "--endpoint", endpoint(huawei), "--report", "r.json"
        )
        assert result.exit_code == 0, result.output
        assert actions(huawei) == Counter({sid("a"): 1, sid("b"): 1})
        assert all(r.status != 401 for r in huawei.requests)

    def test_refused_signature_is_exit_3_before_any_action(
        self, huawei: MockCloud, bulkstop: Bulkstop, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        wrong = "WRONGSECRET" + "0" * 29
        monkeypatch.setenv("OS_SECRET_KEY", wrong)
        result = bulkstop(
            "stop", "--tag", TAG, "--yes", "--endpoint", endpoint(huawei), "--report", "r.json"
        )
        assert result.exit_code == 3, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert any("APIGW.0301" in line and "AK/SK" in line for line in lines), result.stderr
        assert "Traceback" not in result.output
        assert wrong not in result.output
        assert wrong not in Path("r.json").read_text() if Path("r.json").exists() else True
        assert actions(huawei) == Counter()

    def test_missing_secret_is_a_configuration_error(
        self, huawei: MockCloud, bulkstop: Bulkstop, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("OS_SECRET_KEY")
        result = bulkstop("stop", "--tag", TAG, "--yes", "--endpoint", endpoint(huawei))
        assert result.exit_code == 3, result.output
        assert "OS_ACCESS_KEY gives no secret key" in result.stderr
        assert actions(huawei) == Counter()
