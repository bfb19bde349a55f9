"""``bulkstop stop --api batch`` killed while a job runs, then ``--resume``: the job is polled,
its servers are never named in a batch call again, and every selected server ends once.

The command and the mock cloud (Huawei AK/SK mode) run as real processes, as in
``test_kill_resume.py``; the resume runs in-process and repeats the recorded options
(``--api batch``, ``--batch-endpoint``, ``--endpoint``, ``--batch-size``, ``--stop-type``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from fleets import TAG
from processes import PROCESS_TIMEOUT, StandaloneMock, wait_for

#: Long enough that a kill lands while the first job runs.
JOB_DURATION: Final = "1.5"
BATCH_SIZE: Final = "15"


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneMock]:
    """A seeded Huawei fleet, half bare metal; commands signed with its AK/SK."""
    served = StandaloneMock(
        tmp_path_factory.mktemp("mock"),
        *("--servers", "80", "--projects", "1", "--seed", "7", "--huawei"),
        *("--baremetal-fraction", "0.5", "--job-duration", JOB_DURATION),
    )
    served.env.update(
        OS_ACCESS_KEY=served.info["access_key"],
        OS_SECRET_KEY=served.info["secret_key"],
        OS_PROJECT_ID=served.info["project_ids"][0],
    )
    try:
        yield served
    finally:
        served.close()


def batch_options(mock: StandaloneMock) -> tuple[str, ...]:
    return (
        *("--api", "batch", "--batch-size", BATCH_SIZE, "--stop-type", "HARD"),
        *("--endpoint", mock.info["compute_url_template"]),
        *("--batch-endpoint", mock.info["batch_url_template"]),
    )


def named(mock: StandaloneMock) -> Counter[str]:
    """How often each server was named in a batch call that got a job."""
    return Counter(s for r in mock.requests("batch") if r["status"] == 200 for s in r["servers"])


def journal_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]  # the last piece may be torn
    return [json.loads(line) for line in lines if line.strip()]


def test_killed_during_a_job_resume_polls_it_instead_of_sending_again(
    mock: StandaloneMock, tmp_path: Path
) -> None:
    mock.reset()
    dry = mock.invoke(
        "stop", "--tag", TAG, *batch_options(mock), "--dry-run", "--quiet", "--report", "-"
    )
    assert dry.exit_code == 0, dry.stderr
    selected = {s["id"] for s in json.loads(dry.stdout)["servers"] if s["outcome"] == "planned"}
    assert len(selected) > int(BATCH_SIZE)

    run = mock.spawn_bulkstop(
        *("stop", "--tag", TAG, *batch_options(mock), "--yes", "--quiet", "--report", "run.json"),
        cwd=tmp_path,
    )
    journal = tmp_path / "run.journal.jsonl"
    try:
        wait_for(
            lambda: (
                run.poll() is not None or any(r["type"] == "job" for r in journal_records(journal))
            ),
            "the first job recorded",
        )
    finally:
        run.kill()
        run.communicate(timeout=PROCESS_TIMEOUT)
    jobs = [r for r in journal_records(journal) if r["type"] == "job"]
    assert jobs, "killed before any job was recorded"
    killed_job = jobs[-1]
    sent_before = named(mock)
    polled_before = len(mock.requests("job"))

    finished = mock.invoke("stop", "--resume", str(journal), "--yes", "--quiet")
    assert finished.exit_code == 0, finished.stderr

    after = named(mock)
    # The recorded job's servers were polled, not sent again; nothing was sent twice.
    for server_id in killed_job["ids"]:
        assert after[server_id] == sent_before[server_id] == 1, server_id
    assert set(after) == selected, "a selected server was not sent, or another one was"
    assert max(after.values()) == 1
    resumed_polls = mock.requests("job")[polled_before:]
    polls = [r for r in resumed_polls if killed_job["job_id"] in r["path"]]
    assert polls, "the resumed run did not poll the recorded job"
    report = json.loads((tmp_path / "run.json").read_text())
    results = {s["id"]: s for s in report["servers"]}
    assert {sid for sid, s in results.items() if s["outcome"] == "stopped"} == selected
    assert {results[sid]["job_id"] for sid in killed_job["ids"]} == {killed_job["job_id"]}
    assert report["options"]["api"] == "batch"


def test_batch_size_above_the_limit_is_a_usage_error(mock: StandaloneMock) -> None:
    mock.reset()
    result = mock.invoke(
        "stop", "--tag", TAG, *batch_options(mock), "--batch-size", "1001", "--yes"
    )
    assert result.exit_code == 2
    assert "--batch-size" in result.stderr and "1000" in result.stderr
    assert mock.requests(None) == []


def test_soft_stop_of_bare_metal_is_a_usage_error(mock: StandaloneMock) -> None:
    mock.reset()
    options = [o if o != "HARD" else "SOFT" for o in batch_options(mock)]
    result = mock.invoke("stop", "--tag", TAG, *options, "--yes", "--quiet", "--report", "-")
    assert result.exit_code == 2, result.stderr
    assert "--stop-type SOFT" in result.stderr and "bare metal" in result.stderr
    assert mock.requests("batch") == []
