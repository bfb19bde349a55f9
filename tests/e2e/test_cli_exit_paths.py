"""Errors stay one line: every documented exit path of ``bulkstop stop``, and no traceback.

Each case drives the command line (in-process) into one documented exit code and fails if
standard error shows a ``Traceback`` or an ``ExceptionGroup``. Exit 130 needs a real signal:
see ``test_cli_hostile.py`` (SIGTERM while listing, Ctrl-C on a FIFO, closed stdin).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from bulkstop.errors import (
    EXIT_CLOUD,
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_RECORD,
    EXIT_REFUSED,
    EXIT_USAGE,
)
from bulkstop.mockcloud import Faults, MockCloud, MockConfig

Bulkstop = Callable[..., Result]
Cloud = Callable[..., MockCloud]
#: (what, exit code, the arguments after ``stop``, how to set up) per documented path.
Setup = Callable[[Cloud, Path, pytest.MonkeyPatch], list[str]]


def _healthy(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    cloud(MockConfig(servers=6, projects=1))
    return ["--all", "--yes"]


def _unknown_id(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    cloud(MockConfig(servers=6, projects=1))
    ids = tmp / "ids.txt"
    ids.write_text(f"{uuid.uuid4()}\n")
    return ["--ids-file", str(ids), "--yes"]


def _bad_id_file(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    ids = tmp / "ids.txt"
    ids.write_text("../etc/passwd\n")
    return ["--ids-file", str(ids), "--yes"]


def _bad_endpoint(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return ["--all", "--yes", "--endpoint", "http://[::1/v2.1"]


def _clouds_yaml(text: str) -> Setup:
    def setup(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        cloud(MockConfig(servers=6, projects=1))
        config = tmp / "clouds-broken.yaml"
        config.write_text(text)
        mp.setenv("OS_CLIENT_CONFIG_FILE", str(config))
        mp.setenv("OS_CLOUD", "broken")
        return ["--all", "--yes"]

    return setup


def _treadmill(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    cloud(MockConfig(servers=6, projects=1, faults=Faults(list_treadmill=True)))
    return ["--all", "--yes"]


def _capped(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    cloud(MockConfig(servers=6, projects=1))
    return ["--all", "--yes", "--max-servers", "1"]


def _disk_full(cloud: Cloud, tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    cloud(MockConfig(servers=6, projects=1))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    mp.setattr("bulkstop.record.report.write_atomic", full)
    return ["--all", "--yes", "--report", str(tmp / "r.json")]


CASES: list[tuple[str, int, Setup]] = [
    ("ok", EXIT_OK, _healthy),
    ("not-found", EXIT_FAILURES, _unknown_id),
    ("bad-id-file", EXIT_USAGE, _bad_id_file),
    ("bad-endpoint", EXIT_USAGE, _bad_endpoint),
    ("auth-as-string", EXIT_CLOUD, _clouds_yaml('clouds: {broken: {auth: "oops"}}\n')),
    (
        "unknown-auth-key",
        EXIT_CLOUD,
        _clouds_yaml(
            "clouds: {broken: {auth: {auth_url: 'http://127.0.0.1:9/v3', usernme: x, "
            "password: y, project_id: p}}}\n"
        ),
    ),
    (
        "ipv6-auth-url",
        EXIT_CLOUD,
        _clouds_yaml(
            "clouds: {broken: {auth: {auth_url: 'http://[::1/v3', username: x, password: y, "
            "project_id: p, user_domain_name: D, project_domain_name: D}}}\n"
        ),
    ),
    ("treadmill", EXIT_CLOUD, _treadmill),
    ("max-servers", EXIT_REFUSED, _capped),
    ("disk-full", EXIT_RECORD, _disk_full),
]


@pytest.mark.parametrize(("code", "setup"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_exit_path_is_free_of_tracebacks(
    cloud: Cloud,
    bulkstop: Bulkstop,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    setup: Setup,
) -> None:
    args = setup(cloud, tmp_path, monkeypatch)
    result = bulkstop("stop", "--quiet", *args)
    assert "Traceback" not in result.stderr
    assert "ExceptionGroup" not in result.stderr
    assert result.exit_code == code, result.stderr
    if code not in (EXIT_OK, EXIT_FAILURES, EXIT_REFUSED):
        errors = [line for line in result.stderr.splitlines() if "rror" in line]
        assert len(errors) == 1, result.stderr
