"""Reading id files: text, CSV, JSON and reports, with errors that name file and line."""

from __future__ import annotations

import csv
import io
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.errors import InputError, UsageError
from bulkstop.identifiers import validate_server_id
from bulkstop.models import Outcome
from bulkstop.record.report import SCHEMA as REPORT_SCHEMA
from bulkstop.select.idfile import IdEntry, load_ids, read_ids

A = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
B = "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"
C = "2c3d4e5f-6a7b-4c8d-ae9f-1a2b3c4d5e6f"
P = "0123456789abcdef0123456789abcdef"
Q = "fedcba9876543210fedcba9876543210"


def error_of(source: str, text: str | bytes, **kwargs: frozenset[str]) -> InputError:
    with pytest.raises(InputError) as caught:
        read_ids(source, text, **kwargs)
    return caught.value


def report(*servers: dict[str, str]) -> str:
    return json.dumps({"schema": REPORT_SCHEMA, "servers": list(servers)})


class TestText:
    """One id per line, with comments and blank lines."""

    def test_comments_blank_lines_and_line_numbers(self) -> None:
        text = f"# servers to stop\n\n{A}   # web\n  {B}\n#{C}\n"
        assert read_ids("ids.txt", text) == (IdEntry(id=A, line=3), IdEntry(id=B, line=4))

    def test_ids_are_canonicalized(self) -> None:
        bare = uuid.UUID(B).hex.upper()
        assert [e.id for e in read_ids("ids", f"{A.upper()}\n{bare}\n")] == [A, B]

    def test_crlf_and_bom(self) -> None:
        data = f"\ufeff{A}\r\n\r\n{B}\r\n".encode()
        assert read_ids("ids", data) == (IdEntry(id=A, line=1), IdEntry(id=B, line=3))
        assert read_ids("ids", data.decode()) == read_ids("ids", data)

    def test_malformed_id_names_file_and_line(self) -> None:
        error = error_of("ids.txt", f"{A}\n\nweb-01\n")
        assert (error.source, error.line) == ("ids.txt", 3)
        assert str(error) == "ids.txt:3: not a server id (expected a UUID): 'web-01'"

    def test_hash_without_space_is_not_a_comment(self) -> None:
        assert error_of("ids", f"{A}#web\n").line == 1

    @pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "\ufeff", "  \r\n"])
    def test_no_ids_is_an_error(self, text: str) -> None:
        error = error_of("ids.txt", text)
        assert str(error) == "ids.txt: no server ids in file"

    def test_invalid_utf8_names_line(self) -> None:
        error = error_of("ids", f"{A}\n{B}\n".encode() + b"\xff\xfe\n")
        assert error.line == 3
        assert "not valid UTF-8" in str(error)


class TestCsv:
    """A header with an id column; project id optional; other columns ignored."""

    def test_id_and_project_columns(self) -> None:
        text = f"name,id,project_id,status\nweb,{A},{P},ACTIVE\ndb,{B},,SHUTOFF\n"
        assert read_ids("servers.csv", text) == (
            IdEntry(id=A, project_id=P, line=2, name="web"),
            IdEntry(id=B, project_id=None, line=3, name="db"),
        )

    @pytest.mark.parametrize(
        "header", ["server_id,tenant_id", "ID,Project ID", "Id, PROJECT_ID", '"id","project_id"']
    )
    def test_header_aliases(self, header: str) -> None:
        assert read_ids("x", f"{header}\n{A},{P}\n") == (IdEntry(id=A, project_id=P, line=2),)

    def test_spaces_after_commas(self) -> None:
        text = f'id, project_id, name\n{A}, {P}, "web, east"\n'
        assert read_ids("x", text) == (IdEntry(id=A, project_id=P, line=2, name="web, east"),)

    def test_single_column_with_comments_crlf_and_quotes(self) -> None:
        text = f'# exported\r\nID\r\n"{A}"\r\n\r\n# {C}\r\n{B}\r\n'
        assert read_ids("x", text) == (IdEntry(id=A, line=3), IdEntry(id=B, line=6))

    def test_line_numbers_count_multiline_fields(self) -> None:
        text = f'id,name\n{A},"two\nlines"\nweb-01,x\n'
        assert error_of("x", text).line == 4

    def test_comment_lines_are_skipped_even_with_quotes(self) -> None:
        text = f'id,name\n# note, "careful\n{A},web\n  # {B}\n"#{C}",x\n'
        error = error_of("x", text)  # a quoted first cell is data, not a comment
        assert (error.line, str(error).endswith("'#" + C + "'")) == (5, True)
        assert read_ids("x", text.rpartition('"#')[0]) == (IdEntry(id=A, line=3, name="web"),)

    def test_no_id_column(self) -> None:
        error = error_of("s.csv", f"# c\nuuid,project\n{A},{P}\n")
        assert str(error) == "s.csv:2: CSV has no 'id' column"

    def test_bad_id_and_bad_project_name_the_row(self) -> None:
        assert error_of("s.csv", f"id\n{A}\nweb-01\n").line == 3
        error = error_of("s.csv", f"id,project_id\n{A},../admin\n")
        assert error.line == 2
        assert "not a project id" in str(error)

    def test_short_row_has_no_id(self) -> None:
        error = error_of("s.csv", f"name,id\n{A},\nweb\n")
        assert error.line == 2  # the empty id cell of the first row
        assert str(error_of("s.csv", "name,id\nweb\n")) == "s.csv:2: no 'id'"


class TestJson:
    """Lists of ids or objects, and ``{"servers": [...]}`` (openstack CLI output)."""

    def test_list_of_ids(self) -> None:
        assert read_ids("x", json.dumps([A, B.upper()])) == (
            IdEntry(id=A, line=1),
            IdEntry(id=B, line=2),
        )

    def test_list_of_objects(self) -> None:
        text = json.dumps([{"id": A, "tenant_id": P, "name": "web"}, {"id": B, "project_id": None}])
        assert read_ids("x", text) == (
            IdEntry(id=A, project_id=P, line=1, name="web"),
            IdEntry(id=B, line=2),
        )

    def test_openstack_server_list_output(self) -> None:
        text = json.dumps(
            [{"ID": A, "Name": "web", "Status": "ACTIVE", "Networks": {"net": ["10.0.0.1"]}}]
        )
        assert read_ids("x", text) == (IdEntry(id=A, line=1, name="web"),)

    def test_servers_object_and_whitespace_before(self) -> None:
        text = "\ufeff\n  " + json.dumps({"servers": [{"id": A}, B]})
        assert [e.id for e in read_ids("x.txt", text)] == [A, B]

    def test_invalid_json_names_line(self) -> None:
        error = error_of("x", f'[\n"{A}",\n]\n')
        assert error.line == 3
        assert "invalid JSON" in str(error)

    def test_too_deep_is_an_input_error(self) -> None:
        assert "invalid JSON" in str(error_of("x", "[" * 100_000))

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ([A, "x", {"name": "no id"}], "x: JSON item 2: not a server id (expected a UUID): 'x'"),
            ([A, {"name": "web"}], "x: JSON item 2: no 'id'"),
            ([{"id": 7}], "x: JSON item 1: 'id' is not a string: int"),
            (
                [{"id": A, "project_id": ["p"]}],
                "x: JSON item 1: 'project_id' is not a string: list",
            ),
            ([A, 5], "x: JSON item 2: neither an id nor an object: int"),
            ({"items": [A]}, "x: JSON object has no 'servers' list"),
            ({"servers": A}, "x: JSON object has no 'servers' list"),
            ({"schema": "bulkstop/report/v9", "servers": [A]}, "x: unsupported report schema"),
            ([], "x: no server ids in file"),
        ],
    )
    def test_malformed(self, value: object, message: str) -> None:
        error = error_of("x", json.dumps(value))
        assert str(error).startswith(message)
        assert error.line is None  # an item number is not a line number

    def test_scalar(self) -> None:
        assert "JSON must be a list" in str(error_of("x.json", f'"{A}"'))


class TestReport:
    """A bulkstop report, filtered by outcome with ``only``."""

    TEXT = report(
        {"id": A, "project_id": P, "name": "web", "outcome": "stopped"},
        {"id": B, "project_id": P, "name": "db", "outcome": "failed"},
        {"id": C, "project_id": Q, "name": "", "outcome": "not_attempted"},
    )

    def test_all_servers_without_only(self) -> None:
        assert [(e.id, e.project_id, e.name) for e in read_ids("r.json", self.TEXT)] == [
            (A, P, "web"),
            (B, P, "db"),
            (C, Q, ""),
        ]

    def test_only_keeps_matching_outcomes_with_their_item_numbers(self) -> None:
        only = frozenset({"failed", Outcome.NOT_ATTEMPTED})
        assert read_ids("r.json", self.TEXT, only=only) == (
            IdEntry(id=B, project_id=P, line=2, name="db"),
            IdEntry(id=C, project_id=Q, line=3),
        )

    def test_only_may_leave_nothing(self) -> None:
        assert read_ids("r.json", self.TEXT, only=frozenset({"not_found"})) == ()

    @pytest.mark.parametrize(
        "text", [f"{A}\n", f"id\n{A}\n", json.dumps([A]), json.dumps({"servers": [A]})]
    )
    def test_only_needs_a_report(self, text: str) -> None:
        with pytest.raises(UsageError, match="`only` needs a bulkstop report") as caught:
            read_ids("ids", text, only=frozenset({"failed"}))
        assert not isinstance(caught.value, InputError)

    def test_unknown_outcome_lists_valid_ones(self) -> None:
        with pytest.raises(UsageError, match="unknown outcome") as caught:
            read_ids("r.json", self.TEXT, only=frozenset({"failed", "broken"}))
        assert "broken" in str(caught.value)
        assert all(outcome.value in str(caught.value) for outcome in Outcome)

    def test_empty_only(self) -> None:
        with pytest.raises(UsageError, match="no outcome given"):
            read_ids("r.json", self.TEXT, only=frozenset())

    def test_server_without_outcome(self) -> None:
        text = report({"id": A, "project_id": P, "outcome": "failed"}, {"id": B})
        error = error_of("r.json", text, only=frozenset({"failed"}))
        assert str(error) == "r.json: JSON item 2: no 'outcome'"


class TestDuplicates:
    """The first occurrence of an id wins; project ids must not contradict each other."""

    def test_later_duplicates_are_dropped(self) -> None:
        text = f"{A}\n{B}\n{A.upper()}\n{uuid.UUID(B).hex}\n"
        assert read_ids("x", text) == (IdEntry(id=A, line=1), IdEntry(id=B, line=2))

    def test_conflicting_project_ids(self) -> None:
        error = error_of("s.csv", f"id,project_id\n{A},{P}\n{B},{P}\n{A},{Q}\n")
        assert error.line == 4
        assert f"project_id '{Q}' here but '{P}' at line 2" in str(error)

    def test_conflict_in_json_names_items(self) -> None:
        text = json.dumps([{"id": A, "project_id": P}, {"id": A, "project_id": Q}])
        assert "JSON item 2: " in str(error_of("x", text))
        assert "at JSON item 1" in str(error_of("x", text))

    def test_missing_project_is_no_conflict_and_is_filled_in(self) -> None:
        text = f"id,project_id\n{A},\n{A},{P}\n{A},\n"
        assert read_ids("x", text) == (IdEntry(id=A, project_id=P, line=2),)


class TestDetection:
    """The content decides the format; the suffix only chooses which error to report."""

    def test_content_beats_the_suffix(self) -> None:
        assert read_ids("ids.json", f"{A}\n") == read_ids("ids.csv", f"{A}\n")
        assert read_ids("ids.txt", json.dumps([A])) == (IdEntry(id=A, line=1),)

    @pytest.mark.parametrize(
        ("source", "message"),
        [
            ("ids.csv", "CSV has no 'id' column"),
            ("ids.json", "invalid JSON"),
            ("ids.txt", "not a server id"),
            ("<stdin>", "not a server id"),
        ],
    )
    def test_suffix_breaks_ties(self, source: str, message: str) -> None:
        assert message in str(error_of(source, "uuid\nweb-01\n"))

    def test_comment_with_comma_does_not_make_csv(self) -> None:
        assert read_ids("x", f"{A}  # web, db\n") == (IdEntry(id=A, line=1),)


class TestLoadIds:
    """Paths and stdin; OS errors become input errors naming the file."""

    def test_reads_a_path(self, tmp_path: Path) -> None:
        path = tmp_path / "ids.txt"
        path.write_bytes(f"\ufeff{A}\r\n".encode())
        assert load_ids(str(path)) == (IdEntry(id=A, line=1),)

    def test_reads_stdin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        stdin = io.TextIOWrapper(io.BytesIO(report({"id": A, "outcome": "failed"}).encode()))
        monkeypatch.setattr(sys, "stdin", stdin)
        assert load_ids("-", only=frozenset({"failed"})) == (IdEntry(id=A, line=1),)

    def test_stdin_errors_say_stdin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"web-01\n")))
        with pytest.raises(InputError, match=r"^<stdin>:1: not a server id"):
            load_ids("-")

    @pytest.mark.parametrize("name", ["missing.txt", "."])
    def test_unreadable(self, tmp_path: Path, name: str) -> None:
        path = str(tmp_path / name)
        with pytest.raises(InputError, match="cannot read") as caught:
            load_ids(path)
        assert caught.value.source == path
        assert str(caught.value).startswith(path)


# --- properties ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """One server as a property test writes it into a file."""

    id: str  #: canonical
    spelled: str  #: as it appears in the file (upper case, bare hex, padded...)
    project_id: str | None
    name: str


#: Writes servers in one format; returns the text and what reading it must give back.
Writer = Callable[[list[Written]], tuple[str, list[IdEntry]]]


def write_text(servers: list[Written]) -> tuple[str, list[IdEntry]]:
    text = "# ids\n" + "".join(f"{s.spelled}  # {s.name}\n" for s in servers)
    return text, [IdEntry(id=s.id, line=i) for i, s in enumerate(servers, 2)]


def write_csv(servers: list[Written]) -> tuple[str, list[IdEntry]]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ID", "Project ID", "Name"])
    writer.writerows([s.spelled, s.project_id or "", s.name] for s in servers)
    expected = [
        IdEntry(id=s.id, project_id=s.project_id, line=i, name=s.name)
        for i, s in enumerate(servers, 2)
    ]
    return out.getvalue(), expected


def write_json_ids(servers: list[Written]) -> tuple[str, list[IdEntry]]:
    text = json.dumps([s.spelled for s in servers], indent=1)
    return text, [IdEntry(id=s.id, line=i) for i, s in enumerate(servers, 1)]


def as_objects(servers: list[Written]) -> tuple[list[dict[str, str | None]], list[IdEntry]]:
    objects = [
        {"id": s.spelled, "project_id": s.project_id, "name": s.name, "outcome": "failed"}
        for s in servers
    ]
    expected = [
        IdEntry(id=s.id, project_id=s.project_id, line=i, name=s.name)
        for i, s in enumerate(servers, 1)
    ]
    return objects, expected


def write_json_objects(servers: list[Written]) -> tuple[str, list[IdEntry]]:
    objects, expected = as_objects(servers)
    return json.dumps(objects), expected


def write_servers_object(servers: list[Written]) -> tuple[str, list[IdEntry]]:
    objects, expected = as_objects(servers)
    return json.dumps({"servers": objects}), expected


def write_report(servers: list[Written]) -> tuple[str, list[IdEntry]]:
    objects, expected = as_objects(servers)
    return json.dumps({"schema": REPORT_SCHEMA, "servers": objects}, indent=2), expected


WRITERS: list[Writer] = [
    write_text,
    write_csv,
    write_json_ids,
    write_json_objects,
    write_servers_object,
    write_report,
]
JSON_KEYS = st.sampled_from(["id", "ID", "project_id", "name", "servers", "schema", "outcome"])
PROJECT_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)


@st.composite
def written_servers(draw: st.DrawFn) -> list[Written]:
    """Distinct servers, each id spelled some accepted way, with optional project ids."""
    servers = draw(st.lists(st.uuids(), min_size=1, max_size=20, unique=True))
    return [
        Written(
            id=str(server),
            spelled=draw(st.sampled_from([str(server), str(server).upper(), server.hex])),
            project_id=draw(st.none() | PROJECT_IDS),
            name="vm" + draw(st.text(alphabet="ab ,\"#'é", max_size=8)),
        )
        for server in servers
    ]


class TestProperties:
    """Round trips through every format, and robustness on arbitrary input."""

    @given(
        written_servers(),
        st.sampled_from(WRITERS),
        st.sampled_from(["\n", "\r\n"]),
        st.booleans(),
        st.sampled_from(["ids", "ids.csv", "ids.json"]),
    )
    def test_round_trip(
        self, servers: list[Written], writer: Writer, newline: str, as_bytes: bool, source: str
    ) -> None:
        text, expected = writer(servers)
        text = "\ufeff" + text.replace("\r\n", "\n").replace("\n", newline)
        assert read_ids(source, text.encode() if as_bytes else text) == tuple(expected)

    @given(
        st.one_of(
            st.text(),
            st.binary(),
            st.text(alphabet='[]{}",:#\n\r\t id ID 0123456789abcdef-/servers\ufeff'),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text() | st.just(A),
                lambda inner: st.lists(inner) | st.dictionaries(JSON_KEYS, inner),
            ).map(json.dumps),
        ),
        st.sampled_from(["x", "x.csv", "x.json"]),
        st.sampled_from([None, frozenset({"failed"})]),
    )
    def test_only_input_and_usage_errors(
        self, content: str | bytes, source: str, only: frozenset[str] | None
    ) -> None:
        try:
            entries = read_ids(source, content, only=only)
        except UsageError:  # InputError is one too
            return
        assert len({entry.id for entry in entries}) == len(entries)
        assert all(validate_server_id(entry.id) == entry.id for entry in entries)
