"""Unit tests of the mock cloud's fleet and server state (no sockets)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bulkstop.errors import InputError
from bulkstop.mockcloud import FakeClock, MockConfig
from bulkstop.mockcloud import fleet as fleet_module
from bulkstop.mockcloud.state import Fleet, MockServer, Project


def make_server(clock: FakeClock, **fields: object) -> MockServer:
    options: dict[str, object] = {"id": "s-1", "name": "web-0001", "project_id": "p" * 32}
    options.update(fields)
    return MockServer(clock=clock, **options)  # type: ignore[arg-type]


class TestTransitions:
    """Stops and starts complete lazily, against the injected clock."""

    def test_stop_goes_through_powering_off_to_shutoff(self) -> None:
        clock = FakeClock()
        server = make_server(clock)
        assert server.refusal("os-stop", is_admin=False) is None
        server.begin("os-stop", delay=2.0)
        assert (server.status, server.task_state, server.power_state) == (
            "ACTIVE",
            "powering-off",
            1,
        )
        clock.advance(1.999)
        assert server.vm_state == "active"
        clock.advance(0.001)
        assert (server.vm_state, server.status, server.task_state, server.power_state) == (
            "stopped",
            "SHUTOFF",
            None,
            4,
        )

    def test_start_reverses_a_stop(self) -> None:
        clock = FakeClock()
        server = make_server(clock, vm_state="stopped")
        server.begin("os-start", delay=1.0)
        assert server.task_state == "powering-on"
        assert server.status == "SHUTOFF"
        clock.advance(1.0)
        assert (server.status, server.power_state) == ("ACTIVE", 1)

    def test_zero_delay_settles_on_next_read(self) -> None:
        server = make_server(FakeClock())
        server.begin("os-stop", delay=0.0)
        assert server.status == "SHUTOFF"

    def test_cached_record_follows_the_transition(self) -> None:
        clock = FakeClock()
        server = make_server(clock)
        before = json.loads(server.detail_json("http://x"))
        server.begin("os-stop", delay=1.0)
        during = json.loads(server.detail_json("http://x"))
        clock.advance(1.0)
        after = json.loads(server.detail_json("http://x"))
        assert [r["OS-EXT-STS:task_state"] for r in (before, during, after)] == [
            None,
            "powering-off",
            None,
        ]
        assert after["status"] == "SHUTOFF"
        assert after["OS-EXT-STS:power_state"] == 4

    def test_assigning_tags_invalidates_the_record(self) -> None:
        server = make_server(FakeClock(), tags=["a"])
        assert json.loads(server.detail_json("http://x"))["tags"] == ["a"]
        server.tags = {"b", "c"}
        assert json.loads(server.detail_json("http://x"))["tags"] == ["b", "c"]

    def test_set_state_cancels_a_pending_transition(self) -> None:
        clock = FakeClock()
        server = make_server(clock)
        server.begin("os-stop", delay=1.0)
        server.set_state("error")
        clock.advance(5.0)
        assert (server.vm_state, server.task_state, server.power_state) == ("error", None, 0)


class TestNovaPreconditions:
    """Refusal messages are Nova's, in Nova's order of checks."""

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"vm_state": "stopped"}, "Cannot 'stop' instance s-1 while it is in vm_state stopped"),
            ({"vm_state": "paused"}, "Cannot 'stop' instance s-1 while it is in vm_state paused"),
            (
                {"task_state": "powering-off"},
                "Cannot 'stop' instance s-1 while it is in task_state powering-off",
            ),
            ({"locked": True}, "Instance s-1 is locked"),
            ({"locked": True, "vm_state": "stopped"}, "Instance s-1 is locked"),
            ({"host": None}, "Instance s-1 is not ready"),
        ],
    )
    def test_stop_refusals(self, fields: dict[str, object], message: str) -> None:
        assert make_server(FakeClock(), **fields).refusal("os-stop", is_admin=False) == message

    def test_error_servers_can_be_stopped(self) -> None:
        assert make_server(FakeClock(), vm_state="error").refusal("os-stop", is_admin=False) is None

    def test_admin_bypasses_the_lock_only(self) -> None:
        clock = FakeClock()
        assert make_server(clock, locked=True).refusal("os-stop", is_admin=True) is None
        locked_stopped = make_server(clock, locked=True, vm_state="stopped")
        assert "vm_state stopped" in (locked_stopped.refusal("os-stop", is_admin=True) or "")

    def test_start_needs_a_stopped_server(self) -> None:
        message = make_server(FakeClock()).refusal("os-start", is_admin=False)
        assert message == "Cannot 'start' instance s-1 while it is in vm_state active"

    def test_unknown_action_is_a_key_error(self) -> None:
        with pytest.raises(KeyError):
            make_server(FakeClock()).refusal("reboot", is_admin=False)


class TestSeededFleet:
    """The same seed gives the same, realistic fleet."""

    def test_same_seed_same_fleet(self) -> None:
        one = fleet_module.build(MockConfig(servers=300, projects=3, seed=7))
        two = fleet_module.build(MockConfig(servers=300, projects=3, seed=7))
        other = fleet_module.build(MockConfig(servers=300, projects=3, seed=8))
        assert [s.to_fleet() for s in one[1]] == [s.to_fleet() for s in two[1]]
        assert one[0] == two[0]
        assert [s.id for s in one[1]] != [s.id for s in other[1]]

    def test_ids_and_names_look_real(self) -> None:
        projects, servers = fleet_module.build(MockConfig(servers=50, projects=2, seed=1))
        assert all(len(p.id) == 32 and int(p.id, 16) >= 0 for p in projects)
        assert [p.name for p in projects] == ["project-0", "project-1"]
        assert all(len(s.id) == 36 and s.id[14] == "4" for s in servers)
        assert servers[42].name.endswith("-0042")
        assert servers[42].name.split("-")[0] in {"web", "db", "batch"}
        assert Counter(s.project_id for s in servers) == {projects[0].id: 25, projects[1].id: 25}

    def test_mix_of_tags_and_states(self) -> None:
        _, servers = fleet_module.build(MockConfig(servers=20_000, projects=1, seed=3))
        n = len(servers)

        def share(predicate: Callable[[MockServer], bool]) -> float:
            return sum(1 for s in servers if predicate(s)) / n

        assert all(sum(t.startswith("env=") for t in s.tags) == 1 for s in servers)
        assert all(sum(t.startswith("role=") for t in s.tags) == 1 for s in servers)
        assert share(lambda s: "nightly-stop" in s.tags) == pytest.approx(0.30, abs=0.02)
        assert share(lambda s: "bulkstop:protect" in s.tags) == pytest.approx(0.02, abs=0.005)
        assert share(lambda s: s.vm_state == "active" and not s.locked) == pytest.approx(
            0.85, abs=0.02
        )
        assert share(lambda s: s.status == "SHUTOFF" and s.power_state == 4) == pytest.approx(
            0.06, abs=0.01
        )
        assert share(lambda s: s.vm_state == "error") == pytest.approx(0.03, abs=0.01)
        assert share(lambda s: s.vm_state == "paused") == pytest.approx(0.02, abs=0.005)
        assert share(lambda s: s.locked) == pytest.approx(0.02, abs=0.005)
        assert {s.vm_state for s in servers} >= {"suspended", "shelved"}

    def test_listing_order_is_newest_first(self) -> None:
        _, servers = fleet_module.build(MockConfig(servers=10, projects=1))
        created = [s.created for s in servers]
        assert created == sorted(created, reverse=True)


class TestFleetFile:
    """An exact fleet loads from JSON, and the mock's own dump loads back."""

    def test_list_with_project_names(self) -> None:
        projects, servers = fleet_module.load(
            [
                {"id": "a", "name": "one", "project": "alpha", "tags": ["x"]},
                {"id": "b", "project": "beta", "vm_state": "stopped", "locked": True},
                {"id": "c", "project": "alpha", "host": None},
            ],
            clock=FakeClock(),
        )
        assert [p.name for p in projects] == ["alpha", "beta"]
        assert all(len(p.id) == 32 for p in projects)
        a, b, c = servers
        assert (a.name, a.tags, a.status) == ("one", frozenset({"x"}), "ACTIVE")
        assert (b.status, b.power_state, b.locked) == ("SHUTOFF", 4, True)
        assert c.project_id == a.project_id
        assert c.refusal("os-stop", is_admin=False) == "Instance c is not ready"

    def test_document_with_projects(self, tmp_path: Path) -> None:
        pid = "0123456789abcdef0123456789abcdef"
        document = {
            "projects": [{"id": pid, "name": "prod"}],
            "servers": [{"id": "a", "project": "prod"}, {"id": "b", "project_id": pid}],
        }
        path = tmp_path / "fleet.json"
        path.write_text(json.dumps(document))
        projects, servers = fleet_module.load(path, clock=FakeClock())
        assert projects == [Project(id=pid, name="prod")]
        assert {s.project_id for s in servers} == {pid}

    def test_round_trip_of_the_dump(self) -> None:
        clock = FakeClock()
        _, servers = fleet_module.build(MockConfig(servers=30, projects=2, seed=2))
        dumped = [s.to_fleet() for s in servers]
        _, loaded = fleet_module.load(dumped, clock=clock)
        assert [s.to_fleet() for s in loaded] == dumped

    @pytest.mark.parametrize(
        "document",
        [
            {"servers": "nope"},
            [{"name": "no id", "project": "p"}],
            [{"id": "no project"}],
            ["not an object"],
            [{"id": "dup", "project": "p"}, {"id": "dup", "project": "p"}],
        ],
    )
    def test_malformed_fleets_are_input_errors(self, document: object) -> None:
        with pytest.raises((InputError, ValueError)):
            projects, servers = fleet_module.load(document, clock=FakeClock())  # type: ignore[arg-type]
            Fleet(projects, servers)

    def test_unreadable_file_names_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.json"
        path.write_text("{")
        with pytest.raises(InputError, match=r"broken\.json"):
            fleet_module.load(path, clock=FakeClock())


class TestFleetOrder:
    """Listing order and marker positions, per project and across projects."""

    def test_positions(self) -> None:
        clock = FakeClock()
        p, q = Project(id="p" * 32, name="p"), Project(id="q" * 32, name="q")
        servers = [
            make_server(clock, id=f"s{i}", project_id=(p if i % 2 == 0 else q).id) for i in range(6)
        ]
        fleet = Fleet([p, q], servers)
        assert fleet.order(p.id) == ["s0", "s2", "s4"]
        assert fleet.order(None) == [f"s{i}" for i in range(6)]
        assert fleet.position("s4", p.id) == 2
        assert fleet.position("s4", None) == 4
        assert fleet.position("s1", p.id) is None
        assert fleet.project("q") == q

    def test_unknown_project_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown project"):
            Fleet([], [make_server(FakeClock())])
