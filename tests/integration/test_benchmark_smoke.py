"""``python -m benchmarks --quick``: the documented benchmark command runs end to end.

A smoke run (tiny fleets, one concurrency level, one repeat): the numbers are not judged for
speed, only for sanity — every selected server was stopped once and only once, the pacing
never went over ``--rate``, the throttling storm failed nothing — so the benchmarks cannot rot
unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
#: The quick run takes ~10 s on the 2-core CI machine; leave room for a busy one.
TIMEOUT: Final = 180.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON of one quick run (shared by the tests of this module)."""
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Sanity checks:" in done.stdout
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def test_every_scenario_ran_and_every_sanity_check_passed(results: dict[str, Any]) -> None:
    scenarios = results["scenarios"]
    assert set(scenarios) == {
        *("throughput", "rate", "throttling", "scale", "peers", "vsbare", "huawei"),
    }
    failed = [c for s in scenarios.values() for c in s["checks"] if not c["ok"]]
    assert failed == []
    assert results["meta"]["quick"] is True
    assert results["meta"]["machine"]["nproc"] >= 1


def test_throughput_stops_every_server_in_both_clients(results: dict[str, Any]) -> None:
    (level,) = results["scenarios"]["throughput"]["levels"]
    for client in ("bulkstop", "bare"):
        figures = level[client]
        assert figures["stops"] == figures["servers_stopped"] == level["servers"]
        assert figures["stops_per_s"] > 0
        assert figures["window_s"] > 0
        assert figures["client_peak_rss_mb"] > 0
    assert level["ceiling_stops_per_s"] == pytest.approx(level["concurrency"] / 0.020)
    assert level["bulkstop_vs_bare"] > 0


def test_rate_is_never_exceeded_in_any_second(results: dict[str, Any]) -> None:
    for case in results["scenarios"]["rate"]["cases"]:
        assert case["per_project"]
        for project in case["per_project"]:
            assert 0 < project["max_in_1s"] <= case["rate"]
            assert project["achieved_per_s"] > 0


def test_throttling_storm_is_throttled_and_fails_nothing(results: dict[str, Any]) -> None:
    storm = results["scenarios"]["throttling"]
    assert storm["throttled"] > 0
    assert storm["failures"] == 0
    (run,) = storm["runs"]
    assert run["stops"] == storm["projects"] * storm["servers_per_project"]
    assert storm["completion_s"] >= storm["ideal_s"] > 0


def test_scale_expands_then_stops_everything(results: dict[str, Any]) -> None:
    scale = results["scenarios"]["scale"]
    assert scale["list_calls"] >= scale["projects"]
    assert scale["expansion_dry_run_s"] > 0
    dry_run, real = scale["runs"]
    assert dry_run["stops"] == 0
    assert real["stops"] == scale["servers"]
    assert scale["peak_rss_mb"] > 0


def test_peers_all_stop_servers_and_ratios_are_computed(results: dict[str, Any]) -> None:
    peers = results["scenarios"]["peers"]
    assert [c["label"] for c in peers["clients"]] == [
        "openstacksdk sequential",
        "openstacksdk 32 threads",
        "bulkstop c=32",
        "bulkstop c=256",
    ]
    assert all(c["stops"] > 0 for c in peers["clients"])
    assert all(ratio > 0 for ratio in peers["ratios"].values())
    assert {t["target"] for t in results["targets"]} >= {"bulkstop c=256 vs sequential"}


def test_vs_bare_runs_both_clients_against_both_servers(results: dict[str, Any]) -> None:
    vsbare = results["scenarios"]["vsbare"]
    assert [entry["server"] for entry in vsbare["per_server"]] == ["mock", "minimal nova"]
    for entry in vsbare["per_server"]:
        for client in ("bulkstop", "bare"):
            figures = entry[client]
            assert figures["stops"] == figures["servers_stopped"] == vsbare["servers"]
            assert figures["span_stops_per_s"] > 0
            # The span lies inside the process's life: start-up before it, exit after it.
            assert figures["before_span_s"] > 0
            assert figures["after_span_s"] > 0
            assert figures["span_s"] < figures["process_wall_s"]
        assert all(ratio is not None and ratio > 0 for ratio in entry["ratios"].values())
    names = {t["target"] for t in results["targets"]}
    assert "stops/s over the span vs bare loop, minimal nova" in names


def test_huawei_batch_uses_fewer_calls_than_native(results: dict[str, Any]) -> None:
    huawei = results["scenarios"]["huawei"]
    native, *batches = huawei["clients"]
    assert native["api"] == "native" and {b["api"] for b in batches} == {"batch"}
    assert all(b["calls"] < native["calls"] for b in batches)
    assert all(b["done"] == native["done"] > 0 for b in batches)
