"""Reading files of server ids: plain lists, CSV, JSON, and bulkstop's own reports.

The format is detected from the content, not the file name:

* **JSON** when the first non-blank character is ``[`` or ``{``: a list of id strings, a list of
  objects with ``id`` (also ``ID``/``server_id``) and optional ``project_id`` (``tenant_id``)
  and ``name``, or an object ``{"servers": [...]}`` of either. ``openstack server list -f json``
  output reads as it is.
* **A bulkstop report** (an object with ``"schema": "bulkstop/report/v1"``): its ``servers``;
  with ``only``, just those whose ``outcome`` is one of ``only`` (to retry failures).
* **CSV** when the first non-comment line has a comma or is an ``id`` header: a header row with
  an ``id`` (or ``server_id``) column and an optional ``project_id`` (or ``tenant_id``) and
  ``name`` column; other columns are ignored. Blank lines and lines starting with ``#`` are
  skipped (quote a first cell that starts with ``#``).
* **Text** otherwise: one id per line; blank lines and ``#`` comments (whole-line or after
  whitespace) are ignored.

The name's ``.json``/``.csv`` suffix only breaks a tie: when the first line is neither a server
id nor a header, it picks which reader reports the error. Column and key names are matched
case-insensitively, with spaces read as ``_`` (``Project ID`` is ``project_id``).

Every problem raises :class:`~bulkstop.errors.InputError` naming the file and the line (for
JSON, the item); the first problem found is reported. Duplicated ids keep their first
occurrence; the same id with two different project ids is an error.
"""

from __future__ import annotations

import codecs
import csv
import enum
import io
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import BinaryIO, Final, TypeAlias

from bulkstop.errors import InputError, UsageError
from bulkstop.identifiers import validate_project_id, validate_server_id
from bulkstop.limits import MAX_ID_FILE_BYTES
from bulkstop.models import REPORT_SCHEMA, Outcome

#: The path that means standard input, and how errors name it.
STDIN_PATH: Final = "-"
STDIN_SOURCE: Final = "<stdin>"

#: Any version of the report schema, to refuse the ones this reader does not know.
_REPORT_SCHEMA_PREFIX: Final = REPORT_SCHEMA.rpartition("/")[0] + "/"
_ID_KEYS: Final = ("id", "server_id")
_PROJECT_KEYS: Final = ("project_id", "tenant_id")
_NAME_KEYS: Final = ("name",)
_OUTCOME_KEY: Final = "outcome"
_OUTCOME_NAMES: Final = tuple(outcome.value for outcome in Outcome)
#: A ``#`` at the start of a line or after whitespace starts a comment (``web#1`` is no comment).
_COMMENT: Final = re.compile(r"(?:^|\s)#.*")

#: One entry before validation: a bare id, or a CSV row / JSON object keyed by normalized names.
_Record: TypeAlias = str | dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class IdEntry:
    """One server named by an id file.

    ``line`` is the 1-based line in the file, or for JSON the 1-based index of the item in its
    list. ``project_id`` is ``None`` when the file does not say.
    """

    id: str
    project_id: str | None = None
    line: int
    name: str = ""


class _Format(enum.Enum):
    TEXT = "text"
    CSV = "csv"
    JSON = "json"


_FORMAT_BY_SUFFIX: Final = {".csv": _Format.CSV, ".json": _Format.JSON}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Locator:
    """Builds errors that point at a line (text, CSV) or at an item (JSON) of one source."""

    source: str
    json: bool

    def where(self, position: int) -> str:
        return f"JSON item {position}" if self.json else f"line {position}"

    def error(self, position: int, message: str) -> InputError:
        # A JSON item number is not a line number, so it goes into the message instead.
        if self.json:
            return InputError(f"{self.where(position)}: {message}", source=self.source)
        return InputError(message, source=self.source, line=position)


def load_ids(path: str, *, only: frozenset[str] | None = None) -> tuple[IdEntry, ...]:
    """Read the id file at *path* (``-`` for standard input); see :func:`read_ids`.

    Raises :class:`~bulkstop.errors.InputError` naming the file if it cannot be read.
    """
    source = STDIN_SOURCE if path == STDIN_PATH else path
    try:
        if path != STDIN_PATH:
            with open(path, "rb") as handle:
                data = _read_capped(handle, source)
        elif sys.stdin is None:  # started with standard input closed (``<&-``)
            raise InputError("standard input is closed", source=source)
        else:
            data = _read_capped(sys.stdin.buffer, source)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=source) from exc
    return read_ids(source, data, only=only)


def _read_capped(handle: BinaryIO, source: str) -> bytes:
    """All of ``handle``, refused (InputError) past :data:`~bulkstop.limits.MAX_ID_FILE_BYTES`:
    ``/dev/zero`` or an endless pipe must not fill the memory."""
    data = handle.read(MAX_ID_FILE_BYTES + 1)
    if len(data) > MAX_ID_FILE_BYTES:
        raise InputError(
            f"larger than {MAX_ID_FILE_BYTES // (1 << 20)} MiB, the most an ID file may be",
            source=source,
        )
    return data


def read_ids(
    source: str, text: str | bytes, *, only: frozenset[str] | None = None
) -> tuple[IdEntry, ...]:
    """Parse an id file's content (bytes are decoded as UTF-8, a BOM is skipped).

    *source* names the file in errors and its suffix breaks ties between formats. *only* keeps
    the servers of a bulkstop report whose outcome is in it; it raises
    :class:`~bulkstop.errors.UsageError` for unknown outcome names or a file that is not a
    report. A report may leave nothing after filtering (the result is then empty), but a file
    without any id raises :class:`~bulkstop.errors.InputError`, like any malformed entry.
    """
    _check_only(only)
    content = _decode(source, text) if isinstance(text, bytes) else text.removeprefix("\ufeff")
    lines = io.StringIO(content, newline="").readlines()
    found = _detect(source, content, lines)
    locator = _Locator(source=source, json=found is _Format.JSON)
    is_report = False
    if found is _Format.JSON:
        records, is_report = _read_json(locator, content)
    elif found is _Format.CSV:
        records = _read_csv(locator, lines)
    else:
        records = _read_text(lines)
    if only is not None and not is_report:
        raise UsageError(f"`only` needs a bulkstop report; {source} is not one")
    if not records:
        raise InputError("no server ids in file", source=source)
    entries = (
        _entry(locator, position, record)
        for position, record in records
        if only is None or _outcome(locator, position, record) in only
    )
    return _without_duplicates(locator, entries)


def _check_only(only: frozenset[str] | None) -> None:
    if only is None:
        return
    unknown = sorted(only.difference(_OUTCOME_NAMES))
    if unknown or not only:
        problem = f"unknown outcome(s) {', '.join(unknown)}" if unknown else "no outcome given"
        raise UsageError(f"`only`: {problem}; valid outcomes: {', '.join(_OUTCOME_NAMES)}")


def _decode(source: str, data: bytes) -> str:
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        offset = len(data) - len(body) + exc.start
        raise InputError(
            f"not valid UTF-8 (byte {offset + 1} of the file)", source=source, line=line
        ) from exc


def _uncommented(line: str) -> str:
    return _COMMENT.sub("", line).strip()


def _key(name: str) -> str:
    """Normalize a column or key name: ``Project ID`` and ``project_id`` are the same."""
    return name.strip().lower().replace(" ", "_")


def _detect(source: str, content: str, lines: Sequence[str]) -> _Format:
    if content.lstrip()[:1] in ("[", "{"):
        return _Format.JSON
    first = next((text for line in lines if (text := _uncommented(line))), None)
    if first is None:
        return _Format.TEXT
    if "," in first or _key(first.strip('"')) in _ID_KEYS:
        return _Format.CSV
    if _is_server_id(first):
        return _Format.TEXT
    return _FORMAT_BY_SUFFIX.get(PurePath(source).suffix.lower(), _Format.TEXT)


def _is_server_id(text: str) -> bool:
    try:
        validate_server_id(text)
    except ValueError:
        return False
    return True


def _read_text(lines: Sequence[str]) -> list[tuple[int, _Record]]:
    return [(number, text) for number, line in enumerate(lines, 1) if (text := _uncommented(line))]


def _read_csv(locator: _Locator, lines: Sequence[str]) -> list[tuple[int, _Record]]:
    # Comment lines are blanked before the csv module sees them (a quote in one could open a
    # field that swallows the lines after it); blanking keeps its line count right.
    uncommented = ["\n" if line.lstrip().startswith("#") else line for line in lines]
    reader = csv.reader(uncommented, skipinitialspace=True)
    header: list[str] | None = None
    records: list[tuple[int, _Record]] = []
    position = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                if header is None:
                    header = _csv_header(locator, position, row)
                else:
                    records.append((position, _record(zip(header, row, strict=False))))
            position = reader.line_num + 1
    except csv.Error as exc:
        raise locator.error(position, f"invalid CSV: {exc}") from exc
    return records


def _csv_header(locator: _Locator, position: int, row: list[str]) -> list[str]:
    header = [_key(cell) for cell in row]
    if not any(key in header for key in _ID_KEYS):
        raise locator.error(position, "CSV has no 'id' column")
    return header


def _read_json(locator: _Locator, content: str) -> tuple[list[tuple[int, _Record]], bool]:
    """The numbered items of a JSON id file, and whether it is a bulkstop report."""
    source = locator.source
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", source=source, line=exc.lineno) from exc
    except (ValueError, RecursionError) as exc:  # over-long integers, nesting too deep
        raise InputError(f"invalid JSON: {exc}", source=source) from exc
    is_report = False
    if isinstance(data, dict):
        schema = data.get("schema")
        is_report = schema == REPORT_SCHEMA
        if not is_report and isinstance(schema, str) and schema.startswith(_REPORT_SCHEMA_PREFIX):
            raise InputError(f"unsupported report schema {schema!r}", source=source)
        data = data.get("servers")
        if not isinstance(data, list):
            raise InputError("JSON object has no 'servers' list", source=source)
    elif not isinstance(data, list):
        raise InputError(
            "JSON must be a list of ids or objects, or an object with 'servers'", source=source
        )
    records: list[tuple[int, _Record]] = []
    for position, item in enumerate(data, 1):
        if isinstance(item, str):
            records.append((position, item))
        elif isinstance(item, dict):
            records.append((position, _record(item.items())))
        else:
            raise locator.error(position, f"neither an id nor an object: {type(item).__name__}")
    return records, is_report


def _record(pairs: Iterable[tuple[str, object]]) -> dict[str, object]:
    """A CSV row or JSON object keyed by normalized names; the first of equal names wins."""
    record: dict[str, object] = {}
    for name, value in pairs:
        record.setdefault(_key(name), value)
    return record


def _outcome(locator: _Locator, position: int, record: _Record) -> object:
    if isinstance(record, dict) and isinstance(outcome := record.get(_OUTCOME_KEY), str):
        return outcome
    raise locator.error(position, f"no {_OUTCOME_KEY!r}")


def _entry(locator: _Locator, position: int, record: _Record) -> IdEntry:
    if isinstance(record, str):
        return IdEntry(id=_valid(locator, position, validate_server_id, record), line=position)
    server_id = _string(locator, position, record, _ID_KEYS)
    if server_id is None:
        raise locator.error(position, f"no {_ID_KEYS[0]!r}")
    project_id = (_string(locator, position, record, _PROJECT_KEYS) or "").strip()
    return IdEntry(
        id=_valid(locator, position, validate_server_id, server_id),
        project_id=_valid(locator, position, validate_project_id, project_id)
        if project_id
        else None,
        line=position,
        name=_string(locator, position, record, _NAME_KEYS) or "",
    )


def _string(
    locator: _Locator, position: int, record: dict[str, object], keys: tuple[str, ...]
) -> str | None:
    """The value of the first of *keys* that is set (JSON ``null`` counts as not set)."""
    for key in keys:
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise locator.error(position, f"{key!r} is not a string: {type(value).__name__}")
        return value
    return None


def _valid(locator: _Locator, position: int, validate: Callable[[str], str], value: str) -> str:
    try:
        return validate(value)
    except ValueError as exc:
        raise locator.error(position, str(exc)) from None


def _without_duplicates(locator: _Locator, entries: Iterable[IdEntry]) -> tuple[IdEntry, ...]:
    """Keep each id's first entry; a later one may fill in its project, not contradict it."""
    kept: dict[str, IdEntry] = {}
    for entry in entries:
        first = kept.get(entry.id)
        if first is None:
            kept[entry.id] = entry
        elif first.project_id is None:
            kept[entry.id] = replace(first, project_id=entry.project_id)
        elif entry.project_id not in (None, first.project_id):
            raise locator.error(
                entry.line,
                f"server {entry.id} has project_id {entry.project_id!r} here but "
                f"{first.project_id!r} at {locator.where(first.line)}",
            )
    return tuple(kept.values())
