"""The JSON report: every selected server's fate, a summary, and how the run was configured.

Schema ``bulkstop/report/v1``::

    {"schema": "bulkstop/report/v1", "action": "stop", "dry_run": false,
     "started_at": "...Z", "finished_at": "...Z", "selector": {...}, "options": {...},
     "halted_by": null, "requests": {"<project_id>": 0},
     "summary": {"selected": 0, "outcomes": {"<outcome>": 0}, "http_status": {"204": 0}},
     "projects": {"<project_id>": {"selected": 0, "outcomes": {}}},
     "timeline": {...},
     "servers": [{"id": "", "project_id": "", "name": "", "outcome": "", "http_status": 204,
                  "attempts": 1, "error": null, "reason": null, "request_id": null,
                  "elapsed": 0.02, "job_id": null}]}

``job_id`` (added within v1) names the Huawei batch job that carried a server's action out
(``api="batch"``); it is ``null`` for one request per server, and absent in older reports.

``summary`` and ``projects`` are derived from ``servers`` (they are written for readers and
recomputed on read); one pass over the servers (:class:`Tally`) counts everything the report
and the human summary show. ``timeline`` (optional, added by newer versions; readers ignore
what they do not know) holds per-second counters, see :mod:`bulkstop.record.timeline`.

Reports are written atomically (temporary file + rename) with owner-only
permissions, and never contain a password, secret or token: nothing secret is ever put in one.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bulkstop.errors import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    InputError,
    UsageError,
)
from bulkstop.identifiers import record_project_id, record_server_id, validate_job_id
from bulkstop.models import INTERRUPTED, REPORT_SCHEMA, ErrorInfo, Outcome, ServerResult
from bulkstop.timespec import format_time, parse_moment

SCHEMA: Final = REPORT_SCHEMA
#: The compact encoder of report rows and journal records (``server_json`` falls back on it).
_compact: Final = json.JSONEncoder(separators=(",", ":")).encode
#: The same, writing UTF-8 text as it is (the journal's records).
utf8_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: A string as ``_compact`` and ``utf8_dumps`` write it (the C functions behind the encoders).
_ascii: Final = json.encoder.encode_basestring_ascii
utf8_string: Final = json.encoder.encode_basestring
#: How many of the most common errors and slowest requests the human summary lists.
SUMMARY_TOP: Final = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One run, as written to and read from the JSON report."""

    action: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime
    servers: tuple[ServerResult, ...]
    selector: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Why dispatch stopped early (a safety rail, a deadline, an interruption), or None.
    halted_by: str | None = None
    #: Compute API requests sent, per project.
    requests: Mapping[str, int] = field(default_factory=dict)
    #: Per-second counters and events of the run (:mod:`bulkstop.record.timeline`), if kept.
    timeline: Mapping[str, Any] | None = None

    _tally: Tally | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def tally(self) -> Tally:
        """What the servers add up to, counted once (in one pass) and kept."""
        if self._tally is None:
            object.__setattr__(self, "_tally", Tally.of(self.servers))
        assert self._tally is not None
        return self._tally

    @property
    def outcomes(self) -> collections.Counter[str]:
        """How many servers ended with each outcome."""
        return self.tally.outcomes

    @property
    def has_failures(self) -> bool:
        """True when any server is ``failed`` or ``not_found``."""
        return bool(self.tally.failures)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        head, tail = self._parts()
        return {**head, "servers": [server_to_dict(s) for s in self.servers], **tail}

    def summary_document(self) -> dict[str, Any]:
        """The JSON document without its bulky parts (``servers``, ``timeline``): what a
        notification carries, built without encoding every server."""
        head, tail = self._parts()
        head.pop("timeline", None)
        return {**head, **tail}

    def _parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The document's keys before ``servers`` and after it."""
        tally = self.tally
        head = {
            "schema": SCHEMA,
            "action": self.action,
            "dry_run": self.dry_run,
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            "selector": dict(self.selector),
            "options": dict(self.options),
            "halted_by": self.halted_by,
            "requests": dict(self.requests),
            "summary": {
                "selected": len(self.servers),
                "outcomes": dict(sorted(tally.outcomes.items())),
                "http_status": dict(sorted(tally.statuses.items())),
            },
            "projects": tally.per_project(),
        }
        if self.timeline is not None:
            head["timeline"] = dict(self.timeline)
        return head, ({"plan": {"digest": self.plan_digest}} if self.dry_run else {})

    @property
    def plan_digest(self) -> str:
        """SHA-256 over what a plan commits to: the action, when it was made, the planned
        servers with their projects, the scope and protections they were chosen under, and
        whether its dry run was refused by a rail.

        ``bulkstop stop --plan`` recomputes it and refuses a plan whose file was edited.
        """
        selector = self.selector
        committed = {
            "action": self.action,
            "created": format_time(self.finished_at),
            "servers": sorted(
                [s.id, s.project_id] for s in self.servers if s.outcome is Outcome.PLANNED
            ),
            "projects": sorted(selector.get("projects") or []),
            "all_projects": bool(selector.get("all_projects")),
            "guard": sorted(
                [*(selector.get("exclude_tags") or []), *(selector.get("protect_tags") or [])]
            ),
            "include_locked": bool(selector.get("include_locked")),
            "halted_by": self.halted_by,
        }
        canonical = json.dumps(committed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "report") -> Report:
        """Parse a report document; raises InputError naming ``source`` if it is not one."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise InputError(f"not a bulkstop report (schema {SCHEMA!r} expected)", source=source)
        try:
            servers = tuple(server_from_dict(s) for s in data["servers"])
            return cls(
                action=str(data["action"]),
                dry_run=bool(data["dry_run"]),
                started_at=parse_moment(data["started_at"]),
                finished_at=parse_moment(data["finished_at"]),
                servers=servers,
                selector=dict(data.get("selector") or {}),
                options=dict(data.get("options") or {}),
                halted_by=data.get("halted_by"),
                requests={str(k): int(v) for k, v in (data.get("requests") or {}).items()},
                timeline=_timeline(data.get("timeline")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed bulkstop report: {exc!r}", source=source) from None


def _timeline(data: Any) -> Mapping[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError("timeline is not an object")
    return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """The counts a report's summary, its ``projects`` and the human summary show."""

    outcomes: collections.Counter[str]
    #: By HTTP status (as a string, the JSON key) of the servers that got an answer.
    statuses: collections.Counter[str]
    projects: dict[str, collections.Counter[str]]
    #: The servers that are ``failed`` or ``not_found``, in report order.
    failures: tuple[ServerResult, ...]

    @classmethod
    def of(cls, servers: Iterable[ServerResult]) -> Tally:
        """Count ``servers`` in one pass (a report of 100,000 is walked once, not five times)."""
        outcomes: collections.Counter[str] = collections.Counter()
        statuses: collections.Counter[str] = collections.Counter()
        projects: dict[str, collections.Counter[str]] = {}
        failures = []
        for s in servers:
            outcome = s.outcome.value
            outcomes[outcome] += 1
            if s.http_status is not None:
                statuses[str(s.http_status)] += 1
            counter = projects.get(s.project_id)
            if counter is None:
                counter = projects[s.project_id] = collections.Counter()
            counter[outcome] += 1
            if s.outcome.is_failure:
                failures.append(s)
        return cls(
            outcomes=outcomes, statuses=statuses, projects=projects, failures=tuple(failures)
        )

    def per_project(self) -> dict[str, Any]:
        """The report's ``projects`` object."""
        return {
            pid: {"selected": sum(c.values()), "outcomes": dict(sorted(c.items()))}
            for pid, c in sorted(self.projects.items())
        }


def server_to_dict(s: ServerResult) -> dict[str, Any]:
    """One entry of the report's ``servers`` (and of the journal's outcome records)."""
    return {
        "id": s.id,
        "project_id": s.project_id,
        "name": s.name,
        "outcome": s.outcome.value,
        "http_status": s.http_status,
        "attempts": s.attempts,
        "error": s.error.as_dict() if s.error else None,
        "reason": s.reason,
        "request_id": s.request_id,
        "elapsed": None if s.elapsed is None else round(s.elapsed, 4),
        "job_id": s.job_id,
    }


def server_json(s: ServerResult, *, string: Callable[[str], str] = _ascii) -> str:
    """:func:`server_to_dict` as compact JSON text, formatted by hand when there is no error.

    One per server in the report and one in the journal: the general encoder (a dict built,
    then walked) costs about three times as much (benchmarks/README.md). ``string`` encodes a
    string: ASCII-only by default (the report); the journal passes the UTF-8 one. A test holds
    this equal to the encoder's text.
    """
    if s.error is not None:
        return _compact(server_to_dict(s)) if string is _ascii else utf8_dumps(server_to_dict(s))
    status, reason, request_id, elapsed, job_id = (
        s.http_status,
        s.reason,
        s.request_id,
        s.elapsed,
        s.job_id,
    )
    return (
        f'{{"id":{string(s.id)},"project_id":{string(s.project_id)},'
        f'"name":{string(s.name)},"outcome":{string(s.outcome.value)},'
        f'"http_status":{"null" if status is None else int.__repr__(status)},'
        f'"attempts":{int.__repr__(s.attempts)},"error":null,'
        f'"reason":{"null" if reason is None else string(reason)},'
        f'"request_id":{"null" if request_id is None else string(request_id)},'
        f'"elapsed":{"null" if elapsed is None else repr(round(elapsed, 4))},'
        f'"job_id":{"null" if job_id is None else string(job_id)}}}'
    )


def failure_text(s: ServerResult) -> str:
    """Why a server failed, in one short line: its error, else its reason."""
    return (f"{s.error.code}: {s.error.message}" if s.error else (s.reason or "?"))[:120]


def server_from_dict(d: Mapping[str, Any]) -> ServerResult:
    """The inverse of :func:`server_to_dict`; KeyError/ValueError/TypeError if malformed."""
    error = d.get("error")
    return ServerResult(
        id=record_server_id(d["id"]),
        project_id=record_project_id(d.get("project_id")),
        name=str(d.get("name") or ""),
        outcome=Outcome(d["outcome"]),
        http_status=None if d.get("http_status") is None else int(d["http_status"]),
        attempts=int(d.get("attempts") or 0),
        error=ErrorInfo(code=str(error["code"]), message=str(error["message"])) if error else None,
        reason=d.get("reason"),
        request_id=d.get("request_id"),
        elapsed=None if d.get("elapsed") is None else float(d["elapsed"]),
        job_id=None if d.get("job_id") is None else validate_job_id(d["job_id"]),
    )


def exit_code(report: Report) -> int:
    """The CLI's exit code for a finished run: 130 interrupted, 4 halted by a safety rail,
    1 when a server is ``failed`` or ``not_found``, else 0."""
    if report.halted_by == INTERRUPTED:
        return EXIT_INTERRUPTED
    if report.halted_by is not None:
        return EXIT_REFUSED
    return EXIT_FAILURES if report.has_failures else EXIT_OK


def write_atomic(path: str | Path, text: str | Iterable[str]) -> None:
    """Write ``text`` (a string, or its pieces) to ``path`` atomically, owner-only.

    A crash leaves either the old file or the new one, never half of one.
    """
    refuse_foreign_link(str(path), "file")
    # Through the user's own symlink, replace what it points to, never the link itself.
    target = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                fh.writelines(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refuse_foreign_link(path: str, what: str) -> None:
    """Raise UsageError if ``path`` is a symbolic link the running user does not own.

    In a sticky world-writable directory (``/tmp``) another user can plant a link where a
    root cron job will write its report: writing through it would overwrite (and chmod) any
    file. A link of one's own is followed.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode) and info.st_uid != os.geteuid():
        raise UsageError(
            f"refusing to write the {what} {path}: it is a symbolic link owned by another "
            f"user (uid {info.st_uid})"
        )


def check_writable(path: str) -> None:
    """Raise UsageError unless a report can be written at ``path``: checked before anything
    is sent, so a run never ends with its stops sent and no record of them."""
    refuse_foreign_link(path, "report")
    folder = Path(path).parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the report {path}: {folder} is not a writable directory")
    if Path(path).exists() and not Path(path).is_file():
        raise UsageError(f"cannot write the report {path}: it exists and is not a file")


def write_report(report: Report, path: str) -> None:
    """Write the report as JSON to ``path``, or to stdout when ``path`` is ``-``."""
    chunks = json_chunks(report)
    if path == "-":
        sys.stdout.writelines(chunks)
        sys.stdout.flush()
    else:
        write_atomic(path, chunks)


def json_chunks(report: Report) -> Iterator[str]:
    """The report's JSON text in pieces, one line per server.

    Streamed because a report of 100,000 servers built as one ``json.dumps(..., indent=1)``
    string took ~200 MB at its peak and seconds of pure-Python encoding (``indent`` turns the
    C encoder off); each row is formatted by :func:`server_json` and nothing is kept.
    """
    head, tail = report._parts()
    text = json.dumps({**head, "servers": [], **tail}, indent=1) + "\n"
    # With indent=1, only a top-level key starts a line with exactly one space.
    before, marker, after = text.partition('\n "servers": []')
    assert marker, "the servers key is missing"
    yield before + '\n "servers": ['
    separator = "\n  "
    for server in report.servers:
        yield separator + server_json(server)
        separator = ",\n  "
    yield ("\n ]" if report.servers else "]") + after


def read_report(path: str) -> Report:
    """Read a report written by :func:`write_report`; InputError if it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read report: {exc}", source=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", source=path, line=exc.lineno) from None
    return Report.from_dict(data, source=path)


def render_summary(report: Report) -> str:
    """The human summary printed to stderr after a run."""
    verb = report.action
    took = (report.finished_at - report.started_at).total_seconds()
    title = f"bulkstop {verb}{' (dry run)' if report.dry_run else ''}"
    lines = [f"{title}: {len(report.servers)} selected in {took:.1f}s"]
    if not report.servers:
        lines.append("  nothing matched: check the tags, the ID file and the projects in scope")
    tally = report.tally
    counts = tally.outcomes
    for outcome in Outcome:
        if counts.get(outcome.value):
            lines.append(f"  {outcome.value:<16}{counts[outcome.value]:>8}")
    if report.halted_by:
        lines.append(f"  halted: {report.halted_by}")
    if dropped := report.selector.get("dropped_records"):
        lines.append(
            f"  warning: the cloud listed {dropped} record(s) whose id is not a UUID; "
            "they were dropped, nothing was sent for them"
        )
    projects = tally.per_project()
    if len(projects) > 1:
        lines.append("  per project:")
        for pid, p in projects.items():
            parts = ", ".join(f"{k} {v}" for k, v in p["outcomes"].items())
            lines.append(f"    {pid}: {parts}")
    errors = collections.Counter(failure_text(s) for s in tally.failures)
    if errors:
        lines.append("  most common errors:")
        lines.extend(f"    {n:>6} x {text}" for text, n in errors.most_common(SUMMARY_TOP))
    return "\n".join(lines)
