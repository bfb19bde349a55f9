"""``python -m benchmarks.profile``: the phases and shares it reports from py-spy's samples."""

from __future__ import annotations

from typing import Any

from benchmarks import profile

FRAMES = [
    {"name": "<module>", "file": "/v/site-packages/aiohttp/__init__.py"},
    {"name": "run_async", "file": "/c/bulkstop/cli/console.py"},
    {"name": "HttpCompute.list_page", "file": "/c/bulkstop/cloud/http.py"},
    {"name": "Resolver._plan", "file": "/c/bulkstop/execute/resolve.py"},
    {"name": "HttpCompute.action", "file": "/c/bulkstop/cloud/http.py"},
    {"name": "Journal.sending", "file": "/c/bulkstop/record/journal.py"},
    {"name": "ClientSession._request", "file": "/v/site-packages/aiohttp/client.py"},
    {"name": "Runner._publish", "file": "/c/bulkstop/runner.py"},
]


def speedscope(*main: list[int]) -> dict[str, Any]:
    worker = {"name": "worker", "samples": [[0]]}
    return {"shared": {"frames": FRAMES}, "profiles": [worker, {"name": "main", "samples": main}]}


def test_phases_follow_their_first_marker_and_never_go_back() -> None:
    report = profile.profile_run(
        speedscope([0], [1, 2], [1, 3], [1, 4, 5], [1, 4, 6], [1, 4, 6], [1, 2], [1, 7])
    )
    counts = [int(line.split()[0]) for line in report.splitlines() if "samples ~" in line]
    # start-up, listing, planning, span (a poll's listing stays in it), end
    assert counts == [1, 1, 1, 4, 1]


def test_the_span_is_split_between_bulkstop_stages_and_libraries() -> None:
    report = profile.profile_run(
        speedscope([1, 4, 5], [1, 4, 6], [1, 4, 6], [1, 4, 2], [1, 7])
    ).splitlines()
    assert "   25.0%  run journal (intent before each request, outcome after)" in report
    assert "   25.0%  HTTP wrapper (URL, headers, reply)" in report
    assert "   50.0%  in all" in report
    assert "   50.0%  aiohttp" in report


def test_collapsed_stacks_count_every_thread() -> None:
    text = profile.collapsed(speedscope([1, 4, 6], [1, 4, 6]))
    lines = text.splitlines()
    assert lines[0].startswith("main;run_async (/c/bulkstop/cli/console.py:)")
    assert lines[0].endswith(" 2")
    assert lines[1] == "worker;<module> (/v/site-packages/aiohttp/__init__.py:) 1"
