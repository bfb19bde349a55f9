"""``python -m bulkstop.mockcloud`` as a real process: one JSON line, serves, stops on signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from processes import child_env

from bulkstop.testing import mock_cloud_process

STARTUP_TIMEOUT: Final = 20.0


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulkstop.mockcloud", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


@pytest.fixture
def mock_process() -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    process = start("--servers", "50", "--projects", "2", "--seed", "3")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        yield process, json.loads(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STARTUP_TIMEOUT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_prints_one_json_line_serves_and_stops_cleanly(
    mock_process: tuple[subprocess.Popen[str], dict[str, Any]], signum: signal.Signals
) -> None:
    process, info = mock_process
    assert info["base_url"].startswith("http://127.0.0.1:")
    assert info["auth_url"] == info["base_url"] + "/identity/v3"
    assert info["compute_url_template"] == info["base_url"] + "/v2.1/{project_id}"
    assert len(info["project_ids"]) == 2
    assert info["servers"] == 50
    assert {"username", "password", "user_domain"} <= set(info)
    async with aiohttp.ClientSession() as session:
        async with session.get(info["base_url"] + "/_mock/servers") as response:
            assert response.status == 200
            assert len((await response.json())["servers"]) == 50
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": info["username"],
                        "domain": {"name": info["user_domain"]},
                        "password": info["password"],
                    }
                },
            }
        }
        async with session.post(info["auth_url"] + "/auth/tokens", json={"auth": auth}) as response:
            assert response.status == 201
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT)
    assert process.returncode == 0, stderr
    assert stdout == ""  # exactly one line in all, already read
    assert "Traceback" not in stderr


def test_same_seed_same_fleet() -> None:
    infos = []
    for _ in range(2):
        process = start("--servers", "5", "--seed", "11", "--projects", "1")
        try:
            assert process.stdout is not None
            infos.append(json.loads(process.stdout.readline()))
        finally:
            process.terminate()
            process.communicate(timeout=STARTUP_TIMEOUT)
        assert process.returncode == 0
    assert infos[0]["project_ids"] == infos[1]["project_ids"]


def test_bad_fleet_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text("[{}]")
    process = start("--fleet", str(path))
    _, stderr = process.communicate(timeout=STARTUP_TIMEOUT)
    assert process.returncode == 2
    assert "malformed fleet" in stderr


def test_mock_cloud_process_serves_never_scheduled_servers_only_when_asked(
    tmp_path: Path,
) -> None:
    """bulkstop.testing's subprocess form: credentials, fleet and journal over HTTP."""
    args = ("--servers", "40", "--projects", "1", "--seed", "4")
    with (
        mock_cloud_process(*args, env=child_env()) as plain,
        mock_cloud_process(*args, "--never-scheduled", "0.25", env=child_env()) as asked,
    ):
        before, after = plain.servers(), asked.servers()
        assert all(s["host"] is not None for s in before)
        unscheduled = [s for s in after if s["host"] is None]
        assert unscheduled and all(s["vm_state"] == "error" for s in unscheduled)
        # Everything else is the same fleet.
        kept = {s["id"] for s in after} - {s["id"] for s in unscheduled}
        assert [s for s in before if s["id"] in kept] == [s for s in after if s["id"] in kept]
        env = asked.os_env()
        assert env["OS_AUTH_URL"] == asked.info["auth_url"]
        assert env["OS_PROJECT_ID"] == asked.info["project_ids"][0]
        asked.write_clouds_yaml(tmp_path / "clouds.yaml")
        assert asked.info["auth_url"] in (tmp_path / "clouds.yaml").read_text()
        assert asked.requests() == []  # the admin calls are not in it
