"""The listing asks for the next page while it merges and judges this one (issue 14).

At most one page ahead; every failure (a page that cannot be read, a record without tags)
still stops the resolution before any action is sent, and a copy of a server on a later page
is judged again, merged.
"""

from __future__ import annotations

import dataclasses
import json

import anyio
import pytest
from fakes import FakeClock, FakeCompute, fake_engine, make_server

from bulkstop.errors import CloudAccessError, UnsafeCloudError
from bulkstop.execute.resolve import AHEAD_TURNS, Plan
from bulkstop.models import ErrorInfo, ListQuery, Outcome, Reply, Server, ServerPage, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.record.journal import target_records
from bulkstop.select.selector import PROTECT_TAG, Selector

pytestmark = pytest.mark.anyio
NIGHTLY = Selector(tags=("nightly-stop",))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recording(FakeCompute):
    """Pages of three; records when each page is asked for and how many are in flight."""

    events: list[str]
    asked = in_flight = most_in_flight = 0

    async def list_page(self, project_id: str, query: ListQuery, marker: str | None) -> Reply:
        self.events.append(f"asked {self.asked}")
        self.asked += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(AHEAD_TURNS * 2):  # the answer takes more turns than are given
                await anyio.lowlevel.checkpoint()
            return await super().list_page(project_id, query, marker)
        finally:
            self.in_flight -= 1


def recording(count: int) -> Recording:
    fake = Recording(servers={s.id: s for s in (make_server(n) for n in range(count))})
    fake.events = []
    return fake


class TestOnePageAhead:
    """The overlap itself: the next page is on its way while a page is judged, never two."""

    async def test_each_page_is_judged_while_the_next_is_asked_for(self) -> None:
        fake = recording(8)  # pages of 3, 3, 2
        reader = fake_engine(fake, FakeClock()).reader

        def judge(number: int, servers: list[Server]) -> None:
            fake.events.append(f"judged {number} ({len(servers)}, {fake.in_flight} ahead)")

        listed = await reader.listing("p1", ListQuery(), each_page=judge)
        assert len(listed) == 8
        assert fake.events == [
            "asked 0",
            "asked 1",
            "judged 0 (3, 1 ahead)",
            "asked 2",
            "judged 1 (3, 1 ahead)",
            "judged 2 (2, 0 ahead)",
        ]
        assert fake.most_in_flight == 1

    async def test_a_plan_resolved_page_by_page_is_the_whole_listing(self) -> None:
        fake = recording(10)
        plan = await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
        assert [e.server.id for e in plan.entries] == list(fake.servers)
        assert plan.pages == {sid: n // 3 for n, sid in enumerate(fake.servers)}
        assert fake.most_in_flight == 1


class TestFailuresStillComeFirst:
    """Whatever page fails, the resolution raises and nothing is sent."""

    async def test_a_third_page_that_cannot_be_read_stops_everything(self) -> None:
        fake = recording(12)
        refused = Reply(status=403, error=ErrorInfo(code="forbidden", message="no"))

        class ThirdPageRefused(Recording):
            async def list_page(
                self, project_id: str, query: ListQuery, marker: str | None
            ) -> Reply:
                reply = await super().list_page(project_id, query, marker)
                return refused if len(self.events) == 3 else reply

        failing = ThirdPageRefused(servers=fake.servers)
        failing.events = []
        eng = fake_engine(failing, FakeClock())
        with pytest.raises(CloudAccessError, match="could not list servers"):
            await eng.resolve(NIGHTLY)
        assert [c.kind for c in failing.calls] == ["list"] * 3  # nothing after the failure

    async def test_a_record_without_tags_cancels_the_request_ahead(self) -> None:
        untagged = dataclasses.replace(make_server(0), tags=None)
        second_page_asked = anyio.Event()

        class Hanging(FakeCompute):
            async def list_page(
                self, project_id: str, query: ListQuery, marker: str | None
            ) -> Reply:
                if marker is None:
                    return Reply(status=200, body=ServerPage(servers=(untagged,), next_marker="m"))
                second_page_asked.set()
                await anyio.sleep_forever()  # cancelled when the first page is refused
                raise AssertionError

        fake = Hanging()
        with anyio.fail_after(5), pytest.raises(UnsafeCloudError, match="without its tags"):
            await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
        assert second_page_asked.is_set()


async def test_a_protected_copy_on_a_later_page_excludes_the_server() -> None:
    first = make_server(1)
    copy = dataclasses.replace(first, tags=frozenset({"nightly-stop", PROTECT_TAG}))
    other = make_server(2)
    fake = FakeCompute(
        list_script=[
            Reply(status=200, body=ServerPage(servers=(first,), next_marker=first.id)),
            Reply(status=200, body=ServerPage(servers=(other, copy), next_marker=None)),
        ]
    )
    plan = await fake_engine(fake, FakeClock()).resolve(NIGHTLY)
    assert [(e.server.id, e.outcome) for e in plan.entries] == [
        (first.id, Outcome.EXCLUDED),
        (other.id, None),
    ]
    assert plan.entries[0].server.tags == copy.tags
    assert plan.pages == {first.id: 0, other.id: 1}


def test_from_api_builds_the_server_init_builds() -> None:
    record = {
        "id": "0A1B2C3D-0000-4000-8000-000000000001",
        "tenant_id": "p1",
        "name": "web",
        "status": "ERROR",
        "OS-EXT-STS:vm_state": "error",
        "OS-EXT-STS:task_state": "powering-off",
        "OS-EXT-STS:power_state": 4,
        "locked": True,
        "tags": ["a", 7],
        "metadata": {"k": 1},
    }
    expected = Server(
        id="0a1b2c3d-0000-4000-8000-000000000001",
        project_id="p1",
        name="web",
        status="ERROR",
        vm_state="error",
        task_state="powering-off",
        power_state=4,
        locked=True,
        tags=frozenset({"a", "7"}),
        metadata={"k": "1"},
    )
    built = Server.from_api(record)
    assert built == expected
    assert {f.name: getattr(built, f.name) for f in dataclasses.fields(Server)} == {
        f.name: getattr(expected, f.name) for f in dataclasses.fields(Server)
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.name = "other"  # type: ignore[misc]


def test_guard_tags_follow_a_replaced_selector() -> None:
    widened = dataclasses.replace(NIGHTLY, exclude_tags=("keep",))
    assert widened.guard_tags == {"keep", PROTECT_TAG}
    assert NIGHTLY.guard_tags == {PROTECT_TAG}
    assert widened != NIGHTLY and hash(NIGHTLY) == hash(Selector(tags=("nightly-stop",)))
    assert json.dumps(NIGHTLY.describe())  # the cached field is not part of what is described


def test_the_header_targets_are_what_the_json_encoder_writes() -> None:
    odd = dataclasses.replace(make_server(1, project_id=""), name='q"uote\\ \u00e9\n\u2028 \x01')
    plan = Plan(
        entries=(PlanEntry(server=odd, scope="p1"), PlanEntry(server=make_server(2), scope="p1")),
        missing=(
            ServerResult(
                id=make_server(3).id, project_id="p2", name="gone", outcome=Outcome.NOT_FOUND
            ),
        ),
    )
    expected = [
        {"id": make_server(3).id, "project_id": "p2", "scope": "", "name": "gone"},
        {"id": odd.id, "project_id": "p1", "scope": "p1", "name": odd.name},
        {"id": make_server(2).id, "project_id": "p1", "scope": "p1", "name": "srv-2"},
    ]
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    assert list(target_records(plan)) == [encode(t) for t in expected]
