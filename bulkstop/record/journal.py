"""The run journal: an append-only JSON-lines record of a run, written while it happens.

A report is written once, at the end; a journal is written as the run goes, so that after a
``kill -9``, a reboot or an OOM kill we still know which servers were sent a request and which
have a final outcome (``bulkstop stop --resume JOURNAL`` finishes the run from it).

Schema ``bulkstop/journal/v1``, one JSON object per line::

    {"type": "header", "schema": "bulkstop/journal/v1", "action": "stop",
     "started_at": "...Z", "selector": {...}, "options": {...}, "command": ["--tag", "x"],
     "report_path": "...", "targets": [{"id": "", "project_id": "", "scope": "", "name": ""}]}
    {"type": "intent", "id": "..."}         before the first request for a server is sent
    {"type": "job", "scope": "", "service": "bms", "job_id": "...", "ids": ["..."]}
                                             a batch call's job, as soon as it is known
    {"type": "outcome", "id": "...", ...}    the server's final result (the report's fields)
    {"type": "resume", "started_at": "...Z", "options": {...}, "command": [...]}
    {"type": "end", "finished_at": "...Z", "halted_by": null}

``targets`` is the frozen selection: every server the run resolved (and the IDs it did not
find), in report order. A resumed run appends to the same journal after a ``resume`` record,
so one journal describes one logical run however often it was interrupted.

Durability: records are written with ``os.write`` on an ``O_APPEND`` descriptor, at most one
write per event-loop turn: an intent is written at once, before its request is sent (with any
outcomes waiting, in order); an outcome waits for the next intent or the end of the loop turn it
was known in, whichever comes first (at most ``concurrency`` outcomes wait). A killed process
loses nothing the kernel has, so a ``kill -9`` at any instant loses at most the outcomes of
requests in flight or answered in that last turn: their intents are written, so a resume checks
them like any request whose fate is unknown. ``fsync`` (which only matters for power loss) runs on a
background thread at most every :data:`DEFAULT_SYNC_INTERVAL` seconds and at close, so the run
never waits for the disk. A torn last line (the process died mid-write, or the machine lost
power) is ignored on read and cut off before a resumed run appends; a bad line anywhere else is
an :class:`~bulkstop.errors.InputError` naming the line. Files are created owner-only (0600).

Why one module of ~600 lines: the writer and the reader of one file format stay together, so a
record type cannot be added to one side only; the round-trip tests exercise both.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bulkstop.errors import InputError, RecordError, UsageError
from bulkstop.execute.batch import RecordedJob, batch_service
from bulkstop.execute.engine import Observer, Plan
from bulkstop.identifiers import record_project_id, record_server_id, validate_job_id
from bulkstop.models import Action, ServerResult
from bulkstop.plan.eligibility import PlanEntry

# The report's per-server fields are the journal's outcome fields: one serialization for both.
from bulkstop.record.report import server_from_dict, server_json, utf8_dumps, utf8_string
from bulkstop.timespec import format_time, parse_moment, utc_now

SCHEMA: Final = "bulkstop/journal/v1"
#: Longest time a record waits for ``fsync`` (it is in the OS page cache at once).
DEFAULT_SYNC_INTERVAL: Final = 0.5
#: Suffix of the default journal path: ``<report name without .json>.journal.jsonl``.
JOURNAL_SUFFIX: Final = ".journal.jsonl"

_MODE: Final = 0o600
_NEW_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
_APPEND_FLAGS: Final = os.O_WRONLY | os.O_APPEND

ErrorHook = Callable[[str], None]


def journal_path_for(report_path: str) -> str:
    """The default journal beside a report: ``run.json`` → ``run.journal.jsonl``."""
    return report_path.removesuffix(".json") + JOURNAL_SUFFIX


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One server of the frozen selection, as the header records it."""

    id: str
    project_id: str
    #: The project whose token and URL reach the server ("" for an ID the cloud did not know).
    scope: str
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalState:
    """What a journal says: the run's header, the latest options, and each server's progress."""

    path: str
    action: Action
    started_at: datetime
    selector: Mapping[str, Any]
    #: The options of the latest part of the run (the header's, or the last ``resume`` record's).
    options: Mapping[str, Any]
    #: The command lines of the run's parts (options and arguments after the command name).
    commands: tuple[tuple[str, ...], ...]
    report_path: str | None
    targets: tuple[Target, ...]
    #: Final results by server id; a later record for the same server wins.
    outcomes: Mapping[str, ServerResult]
    #: Servers a request was sent for (or was about to be) that have no final result.
    pending: frozenset[str]
    #: The batch job each server was last sent in (Huawei's batch API), by server id.
    jobs: Mapping[str, RecordedJob] = field(default_factory=dict)
    #: How often the run was started: 1 + the number of ``resume`` records.
    parts: int = 1
    #: True when the last part ended normally (an ``end`` record is the last record).
    ended: bool = False
    halted_by: str | None = None
    finished_at: datetime | None = None
    #: Bytes of whole records; what follows is a torn last line.
    intact_size: int = 0
    #: Bytes of the file when it was read.
    size: int = 0
    #: The last whole record has no newline yet (a resumed run adds it before appending).
    unterminated: bool = False
    #: A torn last line was dropped.
    torn: bool = False

    @property
    def unfinished(self) -> tuple[Target, ...]:
        """The targets without a final outcome, in report order."""
        return tuple(t for t in self.targets if t.id not in self.outcomes)


class Journal(Observer):
    """Writes a run's journal; an engine observer (compose it first, before progress).

    Nothing touches the disk before :meth:`start` (or :meth:`resume`): a refused run leaves
    no journal. Hooks never raise: a failed write calls ``on_error`` once (the runner halts
    dispatch with it) and the journal writes nothing more.
    """

    def __init__(self, path: str, *, sync_interval: float = DEFAULT_SYNC_INTERVAL) -> None:
        self.path = path
        self._sync_interval = sync_interval
        self._fd: int | None = None
        self._on_error: ErrorHook | None = None
        self._failed: str | None = None
        self._dirty = False
        #: Records not yet written (outcomes waiting for an intent or the end of a loop turn).
        self._pending: list[str] = []
        self._flush_scheduled = False
        self._closing = threading.Event()
        self._syncer: threading.Thread | None = None

    # -- opening -------------------------------------------------------------------------------

    def start(
        self,
        *,
        action: Action,
        started_at: datetime,
        selector: Mapping[str, Any],
        options: Mapping[str, Any],
        command: Sequence[str],
        report_path: str | None,
        plan: Plan,
        on_error: ErrorHook | None = None,
    ) -> None:
        """Create the journal (it must not exist) and write the header with the plan's servers.

        Raises RecordError if the file cannot be created or written (no file is left behind),
        UsageError if another run's journal is there; nothing has been sent then.
        """
        try:
            _retire_finished(self.path)
            fd = os.open(self.path, _NEW_FLAGS, _MODE)
        except FileExistsError:
            holder = _holder(self.path)
            if holder is not None:
                pid = f" (pid {holder})" if holder else ""
                raise UsageError(
                    f"journal {self.path} is in use by a running bulkstop{pid}: "
                    "wait for it to end, or choose another `report` or `journal`"
                ) from None
            raise UsageError(
                f"journal {self.path} already exists and its run did not finish: continue it "
                f"with `resume` {self.path}, or choose another `journal`"
            ) from None
        except OSError as exc:
            raise RecordError(f"cannot create journal {self.path}: {exc.strerror}") from None
        try:
            self._lock(fd)  # a new file: only a bulkstop that opened it just now can hold it
        except UsageError:
            os.close(fd)
            raise
        if report_path not in (None, "-"):
            # Absolute, so that a resume from another directory writes the same report.
            report_path = os.path.abspath(report_path)
        header = {
            "type": "header",
            "schema": SCHEMA,
            "action": action.verb,
            "started_at": format_time(started_at),
            "selector": dict(selector),
            "options": dict(options),
            "command": list(command),
            "report_path": report_path,
            "pid": os.getpid(),
        }
        # The targets (one per server: 10,000 before the first stop) formatted by hand, as
        # utf8_dumps would write them, and spliced in as the header's last key.
        targets = ",".join(target_records(plan))
        line = f'{utf8_dumps(header)[:-1]},"targets":[{targets}]}}\n'
        try:
            self._open(fd, line, on_error)
        except RecordError:
            # Nothing was sent: leave no headerless journal that would block every later run.
            Path(self.path).unlink(missing_ok=True)
            raise

    def resume(
        self,
        state: JournalState,
        *,
        started_at: datetime,
        options: Mapping[str, Any],
        command: Sequence[str],
        on_error: ErrorHook | None = None,
    ) -> None:
        """Append a ``resume`` record to the journal ``state`` was read from.

        A torn last line is cut off first. Raises UsageError if the file cannot be written,
        another bulkstop has it open, or it changed since it was read.
        """
        try:
            fd = os.open(self.path, _APPEND_FLAGS)
        except OSError as exc:
            raise UsageError(f"cannot append to journal {self.path}: {exc.strerror}") from None
        try:
            self._lock(fd)
            if os.fstat(fd).st_size != state.size:
                raise UsageError(
                    f"journal {self.path} changed since it was read: run the resume again"
                )
            if state.torn:
                os.ftruncate(fd, state.intact_size)
        except OSError as exc:
            os.close(fd)
            raise UsageError(f"cannot append to journal {self.path}: {exc.strerror}") from None
        except UsageError:
            os.close(fd)
            raise
        record = {
            "type": "resume",
            "started_at": format_time(started_at),
            "options": dict(options),
            "command": list(command),
        }
        self._open(fd, ("\n" if state.unterminated else "") + utf8_dumps(record) + "\n", on_error)

    def _lock(self, fd: int) -> None:
        """Hold the journal for the run: a second bulkstop (a resume started while the run
        is alive, or twice at once) is refused. The kernel lets go when the process dies."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"journal {self.path} is in use: another bulkstop is running this run"
            ) from None

    def _open(self, fd: int, first: str, on_error: ErrorHook | None) -> None:
        self._fd = fd
        self._on_error = on_error
        try:
            _write_all(fd, first.encode())
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self._fd = None
            raise RecordError(f"cannot write journal {self.path}: {exc.strerror}") from None
        self._syncer = threading.Thread(
            target=self._sync_loop, name="bulkstop-journal-sync", daemon=True
        )
        self._syncer.start()

    # -- observer hooks (the hot path: one write per loop turn) -------------------------------

    def sending(self, entry: PlanEntry) -> None:
        # Formatted by hand: encoding a dict would triple the cost of the commonest record.
        # Written now, with the outcomes waiting: the intent must reach the OS before its request.
        self._pending.append(f'{{"type":"intent","id":{utf8_string(entry.server.id)}}}')
        self._flush()

    def finished(self, result: ServerResult) -> None:
        self._pending.append(outcome_record(result))
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside an event loop: nothing to batch with
            self._flush()
            return
        # The outcomes of one loop turn go out in one write, unless an intent takes them first.
        self._flush_scheduled = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write the records waiting, in one ``os.write``."""
        self._flush_scheduled = False
        if not self._pending:
            return
        records, self._pending = self._pending, []
        self._write("\n".join(records))

    def job_started(self, scope: str, service: str, job_id: str, ids: Sequence[str]) -> None:
        record = {"type": "job", "scope": scope, "service": service, "job_id": job_id}
        # After the outcomes waiting, in order, and at once (like an intent).
        self._pending.append(utf8_dumps({**record, "ids": list(ids)}))
        self._flush()

    def _write(self, record: str) -> None:
        if self._fd is None or self._failed is not None:
            return
        try:
            _write_all(self._fd, (record + "\n").encode())
        except OSError as exc:
            self._fail(f"journal {self.path}: {exc.strerror}")
            return
        self._dirty = True

    @property
    def failed(self) -> str | None:
        """Why the journal stopped recording (a write failed), or None."""
        return self._failed

    def _fail(self, reason: str) -> None:
        if self._failed is None:
            self._failed = reason
            if self._on_error is not None:
                self._on_error(reason)

    # -- durability ----------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        fd = self._fd
        assert fd is not None
        while not self._closing.wait(self._sync_interval):
            if self._dirty:
                self._dirty = False
                try:
                    os.fsync(fd)
                except OSError:
                    return  # close() syncs once more and reports the error there

    def close(self, *, halted_by: str | None) -> None:
        """Write the ``end`` record, sync and close. Safe to call when never opened."""
        fd = self._fd
        if fd is None:
            return
        self._flush()
        self._write(
            utf8_dumps(
                {"type": "end", "finished_at": format_time(utc_now()), "halted_by": halted_by}
            )
        )
        self._closing.set()
        if self._syncer is not None:
            self._syncer.join()
        self._fd = None
        try:
            os.fsync(fd)
        except OSError as exc:
            self._fail(f"journal {self.path}: {exc.strerror}")
        finally:
            os.close(fd)


def outcome_record(result: ServerResult) -> str:
    """A server's ``outcome`` record: the text ``_dumps`` makes of ``{"type": "outcome",
    **server_to_dict(result)}`` (:func:`~bulkstop.record.report.server_json`, formatted by hand).
    """
    return '{"type":"outcome",' + server_json(result, string=utf8_string)[1:]


def target_records(plan: Plan) -> Iterator[str]:
    """The header's targets, in report order: IDs the cloud did not know first, then the plan's
    entries; each the text ``_dumps`` makes of ``{"id", "project_id", "scope", "name"}``."""
    string = utf8_string
    for missing in plan.missing:
        yield (
            f'{{"id":{string(missing.id)},"project_id":{string(missing.project_id)},'
            f'"scope":"","name":{string(missing.name)}}}'
        )
    for entry in plan.entries:
        server = entry.server
        yield (
            f'{{"id":{string(server.id)},"project_id":{string(server.project_id or entry.scope)},'
            f'"scope":{string(entry.scope)},"name":{string(server.name)}}}'
        )


def _write_all(fd: int, data: bytes) -> None:
    # A regular file takes the whole buffer in one write unless the disk is full; loop anyway.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- reading -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Reader:
    """Folds records into a JournalState, one line at a time."""

    path: str
    header: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    commands: list[tuple[str, ...]] = field(default_factory=list)
    outcomes: dict[str, ServerResult] = field(default_factory=dict)
    intents: set[str] = field(default_factory=set)
    jobs: dict[str, RecordedJob] = field(default_factory=dict)
    parts: int = 0
    ended: bool = False
    halted_by: str | None = None
    finished_at: datetime | None = None

    def add(self, record: Any, line: int) -> None:
        kind = record.get("type") if isinstance(record, dict) else None
        if self.header is None:
            if kind != "header" or record.get("schema") != SCHEMA:
                raise InputError(
                    f"not a bulkstop journal (a {SCHEMA!r} header expected)",
                    source=self.path,
                    line=line,
                )
            self.header = record
            self._start_part(record)
        elif kind == "intent":
            self.intents.add(record_server_id(record["id"]))
        elif kind == "job":
            job = RecordedJob(
                scope=record_project_id(record["scope"]),
                service=batch_service(record["service"]),
                job_id=validate_job_id(record["job_id"]),
            )
            self.jobs.update((record_server_id(i), job) for i in record["ids"])
        elif kind == "outcome":
            result = server_from_dict(record)
            self.outcomes[result.id] = result
        elif kind == "resume":
            self._start_part(record)
        elif kind == "end":
            self.ended = True
            self.halted_by = record.get("halted_by")
            self.finished_at = parse_moment(record["finished_at"])
        else:
            raise InputError(f"unknown journal record type {kind!r}", source=self.path, line=line)
        if kind != "end":
            self.ended = False

    def _start_part(self, record: dict[str, Any]) -> None:
        self.parts += 1
        self.options = dict(record.get("options") or {})
        self.commands.append(tuple(str(a) for a in record.get("command") or ()))
        self.halted_by = None


def read_journal(path: str) -> JournalState:
    """Read a journal written by :class:`Journal`.

    Tolerates a torn last line (reported in ``torn``); raises InputError naming the line for
    anything else that is not a journal record, and for a journal without a whole header (the
    run died before it started: nothing was sent).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read journal: {exc.strerror or exc}", source=path) from None
    reader = _Reader(path=path)
    # The last piece has no newline: empty when the file ends with one, else maybe torn.
    lines = data.split(b"\n")
    last = max((n for n, raw in enumerate(lines, 1) if raw.strip()), default=0)
    offset = intact_size = 0
    torn = unterminated = False
    for number, raw in enumerate(lines, 1):
        end = offset + len(raw) + (number < len(lines))
        offset = end
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            if number == last:
                torn = True
                break
            raise InputError("corrupt journal line", source=path, line=number) from None
        try:
            reader.add(record, number)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"malformed journal record: {exc!r}", source=path, line=number
            ) from None
        intact_size, unterminated = end, number == len(lines)
    if reader.header is None:
        raise InputError(
            "the journal has no whole header: the run ended before it started, nothing was sent",
            source=path,
        )
    return _state(
        reader, path, size=len(data), intact_size=intact_size, torn=torn, unterminated=unterminated
    )


def _state(
    reader: _Reader, path: str, *, size: int, intact_size: int, torn: bool, unterminated: bool
) -> JournalState:
    header = reader.header
    assert header is not None
    try:
        targets = tuple(
            Target(
                id=record_server_id(t["id"]),
                project_id=record_project_id(t.get("project_id")),
                scope=record_project_id(t.get("scope")),
                name=str(t.get("name") or ""),
            )
            for t in header["targets"]
        )
        action = next(a for a in Action if a.verb == header["action"])
        started_at = parse_moment(header["started_at"])
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as exc:
        raise InputError(f"malformed journal header: {exc!r}", source=path, line=1) from None
    return JournalState(
        path=path,
        action=action,
        started_at=started_at,
        selector=dict(header.get("selector") or {}),
        options=reader.options,
        commands=tuple(reader.commands),
        report_path=header.get("report_path"),
        targets=targets,
        outcomes=reader.outcomes,
        pending=frozenset(reader.intents - reader.outcomes.keys()),
        jobs={i: j for i, j in reader.jobs.items() if i not in reader.outcomes},
        parts=reader.parts,
        ended=reader.ended,
        halted_by=reader.halted_by,
        finished_at=reader.finished_at,
        intact_size=intact_size,
        size=size,
        unterminated=unterminated,
        torn=torn,
    )


def _retire_finished(path: str) -> None:
    """Move the journal of a run that ended out of the way (``<path>.<its end time>``).

    A nightly job with a fixed ``--report`` reuses the journal's name every night; the journal
    of a run that did not end is left alone (it can still be resumed).
    """
    if not os.path.exists(path):
        return
    if _never_started(path):
        os.unlink(path)  # its run died before its header was written: nothing was sent
        return
    try:
        state = read_journal(path)
    except InputError:
        return  # not a journal we can read: the caller refuses to overwrite it
    if state.ended and state.finished_at is not None:
        stamp = state.finished_at.strftime("%Y%m%dT%H%M%SZ")
        os.replace(path, f"{path}.{stamp}")


def _never_started(path: str) -> bool:
    """The file holds no whole line: a journal whose header was never written (empty, or
    torn by a full disk). Another bulkstop writing it right now holds its lock.

    The whole file is looked through: a header is one line, over 1 MiB from ~7,000 servers.
    """
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                if b"\n" in chunk:
                    return False
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(path: str) -> int | None:
    """The pid of the running bulkstop that holds the journal's lock, or None if none does."""
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                first = handle.readline(1 << 20)
            else:
                return None
    except OSError:
        return None
    try:
        pid = json.loads(first).get("pid")
    except (ValueError, AttributeError):
        pid = None
    return pid if isinstance(pid, int) else 0
