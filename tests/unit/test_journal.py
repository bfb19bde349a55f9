"""The run journal and resuming from it, against the in-memory fake seam (no sockets)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest
from fakes import FakeClock, FakeCompute, make_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkstop.errors import InputError, RecordError, RefusedError, UsageError
from bulkstop.execute.engine import Engine, Observer, Observers, Plan, RunOptions
from bulkstop.models import INTERRUPTED, Action, ErrorInfo, Outcome, Reply, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.record import journal as journal_module
from bulkstop.record.journal import SCHEMA, Journal, journal_path_for, read_journal
from bulkstop.record.report import (
    Report,
    server_from_dict,
    server_json,
    server_to_dict,
    utf8_dumps,
)
from bulkstop.record.resume import adopt, journal_report, merge, resume_selector
from bulkstop.runner import RunRequest, run
from bulkstop.select.selector import PROTECT_TAG, Selector

pytestmark = pytest.mark.anyio

NIGHTLY = Selector(tags=("nightly-stop",))
STARTED = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
FAST = RunOptions(rate=0, concurrency=4)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fleet(n: int = 8, **extra: Any) -> FakeCompute:
    """``n`` stoppable servers tagged nightly-stop, one already stopped, one untagged."""
    servers = [make_server(i) for i in range(n)]
    servers.append(make_server(100, vm_state="stopped"))
    servers.append(make_server(200, tags=("keep",)))
    return FakeCompute.with_servers(servers, page_size=100, **extra)


def stops(fake: FakeCompute) -> list[str]:
    return fake.actions(Action.STOP)


async def plan_of(fake: FakeCompute, selector: Selector = NIGHTLY) -> Plan:
    engine = Engine(compute=fake, scopes=("p1",), options=FAST, clock=FakeClock())
    return await engine.resolve(selector)


def start_journal(journal: Journal, plan: Plan, **overrides: Any) -> Journal:
    fields: dict[str, Any] = {
        "action": Action.STOP,
        "started_at": STARTED,
        "selector": {**NIGHTLY.describe(), "projects": ["p1"]},
        "options": {"rate": 3.0},
        "command": ("--tag", "nightly-stop", "--rate", "3"),
        "report_path": "run.json",
        "plan": plan,
        **overrides,
    }
    journal.start(**fields)
    return journal


def accepted(entry: PlanEntry) -> ServerResult:
    return ServerResult(
        id=entry.server.id,
        project_id="p1",
        name=entry.server.name,
        outcome=Outcome.ACCEPTED,
        http_status=202,
        attempts=1,
    )


async def killed_run(
    tmp_path: Path, fake: FakeCompute, *, done: int, sent: int, reached: int
) -> Path:
    """The journal a ``kill -9`` leaves: ``done`` servers stopped with an outcome, then ``sent``
    with an intent only, of which the first ``reached`` were in fact stopped by the cloud."""
    path = tmp_path / "run.journal.jsonl"
    plan = await plan_of(fake)
    journal = start_journal(Journal(str(path)), plan)
    to_send = plan.to_send
    for i, entry in enumerate(to_send[: done + sent]):
        journal.sending(entry)
        if i < done + reached:
            await fake.action("p1", entry.server.id, Action.STOP)
        if i < done:
            journal.finished(accepted(entry))
    # Also the outcomes the engine records without a request (already stopped, ...).
    for entry in plan.entries:
        if not entry.sends:
            assert entry.outcome is not None
            journal.finished(
                ServerResult(id=entry.server.id, project_id="p1", outcome=entry.outcome)
            )
    journal.close(halted_by=None)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))  # a killed process writes no end record
    fake.calls.clear()
    return path


async def resume(
    fake: FakeCompute, path: Path, *, options: RunOptions = FAST, **selector: Any
) -> Report:
    state = read_journal(str(path))
    return await run(
        compute=fake,
        scopes=("p1",),
        request=RunRequest(
            selector=resume_selector(state, **selector),
            options=options,
            journal_path=str(path),
            resume=state,
        ),
    )


class TestWriting:
    """What a run writes, and when."""

    async def test_outcomes_wait_for_the_next_intent_or_the_end_of_the_loop_turn(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "run.journal.jsonl"
        plan = await plan_of(fleet(4))
        journal = start_journal(Journal(str(path)), plan)
        first, second, third = plan.to_send[:3]

        def records() -> list[tuple[str, str]]:
            lines = path.read_text().splitlines()[1:]
            return [(r["type"], r["id"]) for r in map(json.loads, lines)]

        journal.sending(first)
        assert records() == [("intent", first.server.id)]  # before its request: at once
        journal.finished(accepted(first))
        assert records() == [("intent", first.server.id)]  # waits (one write per turn)
        journal.sending(second)  # the intent takes the waiting outcome with it, in order
        assert records()[1:] == [("outcome", first.server.id), ("intent", second.server.id)]
        journal.finished(accepted(second))
        journal.finished(accepted(third))
        await anyio.lowlevel.checkpoint()  # the end of the loop turn
        assert records()[3:] == [("outcome", second.server.id), ("outcome", third.server.id)]
        journal.close(halted_by=None)

    async def test_an_unfinished_journal_with_a_header_over_a_mebibyte_is_kept(
        self, tmp_path: Path
    ) -> None:
        # The header is one line (~155 bytes a server): a killed run of 10,000 servers left
        # one of 1.5 MiB, then intents. It was taken for a journal that never started, and
        # deleted, when only its first MiB was looked at for a line.
        path = tmp_path / "run.journal.jsonl"
        header = json.dumps({"type": "header", "targets": "x" * (3 << 19)})
        left = f'{header}\n{{"type":"intent","id":"{make_server(1).id}"}}\n'
        path.write_text(left)
        with pytest.raises(UsageError, match="already exists and its run did not finish"):
            start_journal(Journal(str(path)), await plan_of(fleet(2)))
        assert path.read_text() == left

    async def test_a_run_records_header_intents_outcomes_and_end(self, tmp_path: Path) -> None:
        fake = fleet(4)
        path = tmp_path / "j.jsonl"
        request = RunRequest(
            selector=NIGHTLY, options=FAST, journal_path=str(path), command=("--tag", "x")
        )
        report = await run(compute=fake, scopes=("p1",), request=request)
        records = [json.loads(line) for line in path.read_text().splitlines()]
        header = records[0]
        assert header["type"] == "header" and header["schema"] == SCHEMA
        assert header["action"] == "stop" and header["command"] == ["--tag", "x"]
        assert [t["id"] for t in header["targets"]] == [s.id for s in report.servers]
        intents = [r["id"] for r in records if r["type"] == "intent"]
        assert intents == stops(fake)
        assert records[-1] == {
            "type": "end",
            "finished_at": records[-1]["finished_at"],
            "halted_by": None,
        }
        state = read_journal(str(path))
        assert state.ended and not state.pending and not state.unfinished
        # The report a journal implies is the run's report (elapsed rounded alike).
        assert journal_report(state).to_dict()["servers"] == report.to_dict()["servers"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async def test_the_intent_is_in_the_file_before_the_request_is_sent(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "j.jsonl"
        seen: dict[str, bool] = {}

        class Checking(FakeCompute):
            async def action(self, project_id: str, server_id: str, *a: Any, **k: Any) -> Reply:
                seen[server_id] = f'"intent","id":"{server_id}"' in path.read_text()
                return await super().action(project_id, server_id, *a, **k)

        fake = Checking.with_servers([make_server(i) for i in range(6)], page_size=100)
        request = RunRequest(selector=NIGHTLY, options=FAST, journal_path=str(path))
        await run(compute=fake, scopes=("p1",), request=request)
        assert len(seen) == 6 and all(seen.values())

    async def test_a_dry_run_and_a_refused_run_keep_no_journal(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        dry = RunRequest(
            selector=NIGHTLY, options=RunOptions(rate=0, dry_run=True), journal_path=str(path)
        )
        await run(compute=fleet(), scopes=("p1",), request=dry)
        assert not path.exists()

        async def no(plan: Plan) -> bool:
            return False

        with pytest.raises(RefusedError):
            await run(
                compute=fleet(),
                scopes=("p1",),
                request=dataclasses.replace(dry, options=FAST),
                confirm=no,
            )
        assert not path.exists()

    async def test_refuses_an_existing_journal_before_sending(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        path.write_text('{"type": "header", "schema": "bulkstop/journal/v1"}\n')
        fake = fleet()
        request = RunRequest(selector=NIGHTLY, options=FAST, journal_path=str(path))
        with pytest.raises(UsageError, match="`resume`"):
            await run(compute=fake, scopes=("p1",), request=request)
        assert stops(fake) == []

    async def test_a_failed_write_halts_the_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fake = fleet(6)
        path = tmp_path / "j.jsonl"
        real_write = os.write
        intents = 0

        def write(fd: int, data: Any) -> int:
            nonlocal intents
            # The header, two intents and what came with them; then the disk is full.
            intents += bytes(data).count(b'"type":"intent"')
            if intents > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(journal_module.os, "write", write)
        request = RunRequest(
            selector=NIGHTLY, options=RunOptions(rate=0, concurrency=1), journal_path=str(path)
        )
        # The run ends with what it could record, as a RecordError (exit 5) carrying the report.
        with pytest.raises(RecordError, match="No space left") as caught:
            await run(compute=fake, scopes=("p1",), request=request)
        report = caught.value.report
        assert isinstance(report, Report)
        assert report.halted_by is not None and "No space left" in report.halted_by
        # The request whose intent could not be written is not sent: nothing goes out unrecorded.
        assert len(stops(fake)) == 2
        assert report.outcomes[Outcome.NOT_ATTEMPTED] == 4

    async def test_a_halt_sends_none_of_the_requests_waiting_for_their_turn(
        self, tmp_path: Path
    ) -> None:
        fake = fleet(20)
        path = tmp_path / "j.jsonl"

        class HaltAfterThree(Observer):
            engine: Engine | None = None

            def finished(self, result: ServerResult) -> None:
                if result.attempts and len(stops(fake)) >= 3 and self.engine is not None:
                    self.engine.halt(INTERRUPTED)

        halter = HaltAfterThree()
        clock = FakeClock()
        journal = Journal(str(path))
        engine = Engine(
            compute=fake,
            scopes=("p1",),
            # Paced: most workers are queued in the gate when the halt comes.
            options=RunOptions(rate=40, concurrency=8),
            observer=Observers(journal, halter),
            clock=clock,
            sleep=clock.sleep,
        )
        halter.engine = engine
        plan = await engine.resolve(NIGHTLY)
        start_journal(journal, plan)
        results = await engine.execute(plan)
        journal.close(halted_by=engine.halted)
        assert len(stops(fake)) == 3
        state = read_journal(str(path))
        assert set(state.outcomes) >= set(stops(fake)) and not state.pending
        assert sum(r.outcome is Outcome.NOT_ATTEMPTED for r in results) == 17

    async def test_a_cancelled_run_reports_requests_cut_short_as_unknown(
        self, tmp_path: Path
    ) -> None:
        hung, unfinished = make_server(1), make_server(2)

        class Cloud(FakeCompute):
            async def action(self, project_id: str, server_id: str, *a: Any, **k: Any) -> Reply:
                if server_id == hung.id:
                    await anyio.sleep_forever()  # the answer never comes
                if server_id == unfinished.id:
                    return Reply(status=202)  # accepted, but never reaches SHUTOFF
                return await super().action(project_id, server_id, *a, **k)

        fake = Cloud.with_servers([hung, unfinished, *(make_server(i) for i in range(3, 6))])
        path = tmp_path / "j.jsonl"

        class CancelWhenTheRestIsDone(Observer):
            def __init__(self, scope: anyio.CancelScope) -> None:
                self.scope, self.done = scope, 0

            def finished(self, result: ServerResult) -> None:
                self.done += 1
                if self.done == 3:
                    self.scope.cancel()

        clock = FakeClock()
        with anyio.CancelScope() as crash:
            engine = Engine(
                compute=fake,
                scopes=("p1",),
                options=RunOptions(rate=0, wait=True, poll_interval=1.0),
                observer=Observers(Journal(str(path)), CancelWhenTheRestIsDone(crash)),
                clock=clock,
                sleep=clock.sleep,
            )
            plan = await engine.resolve(NIGHTLY)
            assert isinstance(engine.observer, Observers)
            journal = engine.observer.observers[0]
            assert isinstance(journal, Journal)
            start_journal(journal, plan)
            await engine.execute(plan)
        journal.close(halted_by=None)
        results = {r.id: r for r in engine.final_results(plan)}
        assert results[hung.id].outcome is Outcome.FAILED
        assert "in flight: state unknown" in (results[hung.id].reason or "")
        assert results[unfinished.id].outcome is Outcome.ACCEPTED
        assert results[unfinished.id].reason == f"{INTERRUPTED} before SHUTOFF"
        assert read_journal(str(path)).pending == {hung.id, unfinished.id}


class TestReading:
    """A journal survives a torn last line, and nothing else that is not a journal."""

    async def journal(self, tmp_path: Path) -> Path:
        return await killed_run(tmp_path, fleet(4), done=2, sent=1, reached=0)

    async def test_reads_a_killed_run(self, tmp_path: Path) -> None:
        state = read_journal(str(await self.journal(tmp_path)))
        assert not state.ended and not state.torn and state.parts == 1
        assert len(state.targets) == 5 and len(state.pending) == 1
        assert len(state.unfinished) == 2  # the pending one and the one never sent
        assert state.options == {"rate": 3.0}
        assert state.commands == (("--tag", "nightly-stop", "--rate", "3"),)

    @pytest.mark.parametrize("tail", [b'{"type":"outcome","id":"00', b"\x00\x00\x00", b"{]\n"])
    async def test_ignores_a_torn_last_line(self, tmp_path: Path, tail: bytes) -> None:
        path = await self.journal(tmp_path)
        whole = read_journal(str(path))
        with path.open("ab") as fh:
            fh.write(tail)
        state = read_journal(str(path))
        assert state.torn
        assert state.intact_size == len(path.read_bytes()) - len(tail)
        assert (state.outcomes, state.pending) == (whole.outcomes, whole.pending)

    async def test_keeps_a_whole_last_record_without_its_newline(self, tmp_path: Path) -> None:
        path = await self.journal(tmp_path)
        target = read_journal(str(path)).unfinished[-1].id
        with path.open("ab") as fh:
            fh.write(json.dumps({"type": "intent", "id": target}).encode())
        state = read_journal(str(path))
        assert state.unterminated and not state.torn and target in state.pending

    async def test_a_corrupt_line_in_the_middle_names_it(self, tmp_path: Path) -> None:
        path = await self.journal(tmp_path)
        lines = path.read_bytes().splitlines(keepends=True)
        lines[2] = b"{garbage\n"
        path.write_bytes(b"".join(lines))
        with pytest.raises(InputError, match=r"run\.journal\.jsonl:3: corrupt journal line"):
            read_journal(str(path))

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"", "no whole header"),
            (b'{"type":"header","schema":"bulkstop/jour', "no whole header"),
            (b'{"schema": "bulkstop/report/v1"}\n', "not a bulkstop journal"),
            (b"hello\nworld\n", "corrupt journal line"),
        ],
    )
    async def test_refuses_what_is_not_a_journal(
        self, tmp_path: Path, content: bytes, message: str
    ) -> None:
        path = tmp_path / "x.jsonl"
        path.write_bytes(content)
        with pytest.raises(InputError, match=message):
            read_journal(str(path))

    async def test_an_unknown_record_type_is_an_error(self, tmp_path: Path) -> None:
        path = await self.journal(tmp_path)
        with path.open("a") as fh:
            fh.write('{"type":"mystery"}\n{"type":"intent","id":"x"}\n')
        with pytest.raises(InputError, match="unknown journal record type 'mystery'"):
            read_journal(str(path))

    async def test_every_cut_of_a_journal_reads_as_a_prefix_of_it(self, tmp_path: Path) -> None:
        path = await killed_run(tmp_path, fleet(3), done=2, sent=1, reached=1)
        data = path.read_bytes()
        full = read_journal(str(path))
        header_end = data.index(b"\n") + 1

        @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.integers(min_value=0, max_value=len(data)))
        def cut_at(size: int) -> None:
            path.write_bytes(data[:size])
            if size < header_end - 1:
                with pytest.raises(InputError, match="no whole header"):
                    read_journal(str(path))
                return
            state = read_journal(str(path))
            assert state.targets == full.targets
            assert state.outcomes.items() <= full.outcomes.items()
            assert state.pending <= full.pending | full.outcomes.keys()

        cut_at()


class TestAppending:
    """A resumed run appends to the same journal, after mending its tail."""

    async def test_cuts_a_torn_line_then_appends(self, tmp_path: Path) -> None:
        path = await killed_run(tmp_path, fleet(4), done=1, sent=0, reached=0)
        with path.open("ab") as fh:
            fh.write(b'{"type":"outcome","id":"TORN')
        state = read_journal(str(path))
        journal = Journal(str(path))
        journal.resume(state, started_at=STARTED, options={"rate": 9}, command=("--resume",))
        journal.close(halted_by=None)
        again = read_journal(str(path))
        assert not again.torn and again.ended and again.parts == 2
        assert again.options == {"rate": 9}
        assert b"TORN" not in path.read_bytes()

    async def test_refuses_a_journal_whose_run_is_still_alive(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        running = start_journal(Journal(str(path)), await plan_of(fleet(2)))
        try:
            with pytest.raises(UsageError, match="in use: another bulkstop is running"):
                Journal(str(path)).resume(
                    read_journal(str(path)), started_at=STARTED, options={}, command=()
                )
        finally:
            running.close(halted_by=None)
        # Once the run has let go (as the kernel does when it dies), the resume may go on.
        resumed = Journal(str(path))
        resumed.resume(read_journal(str(path)), started_at=STARTED, options={}, command=())
        resumed.close(halted_by=None)

    async def test_refuses_a_journal_that_changed_since_it_was_read(self, tmp_path: Path) -> None:
        path = await killed_run(tmp_path, fleet(2), done=0, sent=0, reached=0)
        state = read_journal(str(path))
        with path.open("a") as fh:
            fh.write('{"type":"intent","id":"late"}\n')
        with pytest.raises(UsageError, match="changed since it was read"):
            Journal(str(path)).resume(state, started_at=STARTED, options={}, command=())

    async def test_ends_an_unterminated_record_before_appending(self, tmp_path: Path) -> None:
        path = await killed_run(tmp_path, fleet(4), done=1, sent=0, reached=0)
        target = read_journal(str(path)).unfinished[0].id
        with path.open("ab") as fh:
            fh.write(json.dumps({"type": "intent", "id": target}).encode())
        journal = Journal(str(path))
        journal.resume(read_journal(str(path)), started_at=STARTED, options={}, command=())
        journal.close(halted_by=None)
        again = read_journal(str(path))
        assert target in again.pending and again.parts == 2


class TestResume:
    """Finishing a killed run: nothing twice, nothing forgotten, one report for the whole run."""

    async def test_finishes_a_killed_run_without_stopping_anything_twice(
        self, tmp_path: Path
    ) -> None:
        fake = fleet(8)
        path = await killed_run(tmp_path, fake, done=3, sent=3, reached=2)
        report = await resume(fake, path)
        # 2 requests went through before the kill: re-read, credited, not sent again.
        # 1 intent never reached the cloud, 2 were never sent: those 3 are sent now.
        assert len(stops(fake)) == 3
        assert len(set(stops(fake))) == 3
        by_id = {s.id: s for s in report.servers}
        assert len(by_id) == len(report.servers) == 9
        credited = [s for s in report.servers if s.reason and "went through" in s.reason]
        assert len(credited) == 2 and all(s.outcome is Outcome.ACCEPTED for s in credited)
        assert report.outcomes == {"accepted": 8, "already_stopped": 1}
        assert report.started_at == STARTED
        assert report.options["resumed_from"] == str(path)
        assert report.selector == read_journal(str(path)).selector
        state = read_journal(str(path))
        assert state.ended and state.parts == 2 and not state.unfinished

    async def test_with_wait_a_server_already_off_is_stopped(self, tmp_path: Path) -> None:
        fake = fleet(2)
        path = await killed_run(tmp_path, fake, done=0, sent=1, reached=1)
        state = read_journal(str(path))
        plan = await plan_of(fake, resume_selector(state))
        adopted = adopt(plan, state, options=RunOptions(wait=True))
        (credited,) = [e for e in adopted.entries if e.server.id in state.pending]
        assert credited.outcome is Outcome.STOPPED

    async def test_final_outcomes_are_not_touched_again(self, tmp_path: Path) -> None:
        fake = fleet(3)
        path = await killed_run(tmp_path, fake, done=0, sent=0, reached=0)
        plan = await plan_of(fake)
        failed = ServerResult(
            id=plan.to_send[0].server.id, project_id="p1", outcome=Outcome.FAILED, attempts=5
        )
        with path.open("a") as fh:
            fh.write(json.dumps({"type": "outcome", **_result_dict(failed)}) + "\n")
        report = await resume(fake, path)
        assert failed.id not in stops(fake) and len(stops(fake)) == 2
        assert next(s for s in report.servers if s.id == failed.id) == failed

    async def test_acts_on_the_frozen_selection_not_on_the_tags_now(self, tmp_path: Path) -> None:
        fake = fleet(3)
        path = await killed_run(tmp_path, fake, done=0, sent=0, reached=0)
        newcomer = make_server(300)  # tagged nightly-stop after the run started
        fake.servers[newcomer.id] = newcomer
        untagged = read_journal(str(path)).unfinished[0].id  # lost its tag meanwhile
        fake.servers[untagged] = dataclasses.replace(fake.servers[untagged], tags=frozenset())
        report = await resume(fake, path)
        assert newcomer.id not in stops(fake) and untagged in stops(fake)
        assert newcomer.id not in {s.id for s in report.servers}

    async def test_protection_added_since_is_honoured(self, tmp_path: Path) -> None:
        fake = fleet(3)
        path = await killed_run(tmp_path, fake, done=0, sent=0, reached=0)
        first, second, _ = (t.id for t in read_journal(str(path)).unfinished)
        fake.servers[first] = dataclasses.replace(
            fake.servers[first], tags=frozenset({"nightly-stop", PROTECT_TAG})
        )
        fake.servers[second] = dataclasses.replace(
            fake.servers[second], tags=frozenset({"nightly-stop", "hands-off"})
        )
        report = await resume(fake, path, protect_tags=("hands-off",))
        assert first not in stops(fake) and second not in stops(fake)
        outcomes = {s.id: s.outcome for s in report.servers}
        assert outcomes[first] is outcomes[second] is Outcome.EXCLUDED

    async def test_a_finished_run_resumes_to_the_same_report(self, tmp_path: Path) -> None:
        fake = fleet(4)
        path = tmp_path / "j.jsonl"
        request = RunRequest(selector=NIGHTLY, options=FAST, journal_path=str(path))
        first = await run(compute=fake, scopes=("p1",), request=request)
        fake.calls.clear()
        again = await resume(fake, path)
        assert [c.kind for c in fake.calls] == []
        assert again.to_dict()["servers"] == first.to_dict()["servers"]

    async def test_a_vanished_server_is_not_found(self, tmp_path: Path) -> None:
        fake = fleet(2)
        path = await killed_run(tmp_path, fake, done=0, sent=0, reached=0)
        gone = read_journal(str(path)).unfinished[0].id
        del fake.servers[gone]
        report = await resume(fake, path)
        assert next(s for s in report.servers if s.id == gone).outcome is Outcome.NOT_FOUND


class TestJournalReport:
    """A journal read as the report of a run that died before writing one."""

    async def test_pending_is_unknown_and_the_rest_not_attempted(self, tmp_path: Path) -> None:
        path = await killed_run(tmp_path, fleet(4), done=1, sent=1, reached=1)
        state = read_journal(str(path))
        report = journal_report(state)
        outcomes = {s.id: s for s in report.servers}
        (pending,) = state.pending
        assert outcomes[pending].outcome is Outcome.FAILED
        assert "state unknown" in (outcomes[pending].reason or "")
        assert report.outcomes[Outcome.NOT_ATTEMPTED] == 2
        assert report.halted_by == INTERRUPTED and report.started_at == STARTED

    async def test_merge_keeps_the_journal_order(self, tmp_path: Path) -> None:
        path = await killed_run(tmp_path, fleet(3), done=1, sent=0, reached=0)
        state = read_journal(str(path))
        fresh = tuple(
            ServerResult(id=t.id, project_id="p1", outcome=Outcome.ACCEPTED)
            for t in reversed(state.unfinished)
        )
        part = Report(
            action="stop", dry_run=False, started_at=STARTED, finished_at=STARTED, servers=fresh
        )
        merged = merge(part, state)
        assert [s.id for s in merged.servers] == [t.id for t in state.targets]


def test_default_journal_sits_beside_the_report() -> None:
    assert journal_path_for("out/run.json") == "out/run.journal.jsonl"
    assert journal_path_for("run") == "run.journal.jsonl"


def _result_dict(result: ServerResult) -> dict[str, Any]:
    return Report(
        action="stop", dry_run=False, started_at=STARTED, finished_at=STARTED, servers=(result,)
    ).to_dict()["servers"][0]


_texts = st.text(max_size=12)


def _results(ids: st.SearchStrategy[str], project_ids: st.SearchStrategy[str]) -> Any:
    return st.builds(
        ServerResult,
        id=ids,
        project_id=project_ids,
        name=_texts,
        outcome=st.sampled_from(Outcome),
        http_status=st.none() | st.integers(min_value=100, max_value=599),
        attempts=st.integers(min_value=0, max_value=50),
        error=st.none() | st.builds(ErrorInfo, code=_texts, message=_texts),
        reason=st.none() | _texts,
        request_id=st.none() | _texts,
        elapsed=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    )


@given(result=_results(_texts, _texts), job_id=st.none() | _texts)
def test_hand_formatted_records_are_what_the_encoders_write(
    result: ServerResult, job_id: str | None
) -> None:
    result = dataclasses.replace(result, job_id=job_id)
    expected = utf8_dumps({"type": "outcome", **server_to_dict(result)})
    assert journal_module.outcome_record(result) == expected
    # The report's row: the same fields, ASCII-only, compact.
    row = json.JSONEncoder(separators=(",", ":")).encode(server_to_dict(result))
    assert server_json(result) == row


@given(
    result=_results(
        st.uuids().map(str),
        st.just("") | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
    )
)
def test_a_hand_formatted_outcome_record_reads_back(result: ServerResult) -> None:
    # Reading checks identifiers at the boundary: only a UUID is a server id there.
    record = journal_module.outcome_record(result)
    assert server_from_dict(json.loads(record)) == dataclasses.replace(
        result, elapsed=None if result.elapsed is None else round(result.elapsed, 4)
    )
