"""Identifier validation: only values that are safe in a URL path get through."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.identifiers import validate_project_id, validate_server_id, validate_tag

#: Characters that would change what a URL path or query means, or split an id.
UNSAFE = ["/", "?", "#", "%", ".", "&", ";", "\\", " ", "\t", "\n", "\x00", "é", "\u0663"]
PROJECT_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)


def url_path_safe(value: str) -> bool:
    """Percent-encoding leaves it alone, and it is no relative-path segment."""
    return quote(value, safe="") == value and value not in ("", ".", "..")


class TestServerId:
    """Server ids are UUIDs, returned lower-case and dashed."""

    @given(st.uuids())
    def test_canonical_spellings_round_trip(self, server: uuid.UUID) -> None:
        canonical = str(server)
        for spelling in (canonical, canonical.upper(), server.hex, f" {server.hex.upper()}\r\n"):
            assert validate_server_id(spelling) == canonical

    @given(st.text())
    def test_accepts_nothing_but_uuids(self, value: str) -> None:
        try:
            result = validate_server_id(value)
        except ValueError as exc:
            assert "not a server id" in str(exc)
        else:
            assert result == str(uuid.UUID(result))
            assert url_path_safe(result)

    @given(st.uuids(), st.sampled_from(UNSAFE), st.integers(min_value=1, max_value=35))
    def test_rejects_unsafe_character_inside(self, server: uuid.UUID, bad: str, at: int) -> None:
        text = str(server)
        with pytest.raises(ValueError, match="expected a UUID"):
            validate_server_id(text[:at] + bad + text[at:])

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "web-01",
            "../01234567-89ab-cdef-0123-456789abcdef",
            "01234567-89ab-cdef-0123-456789abcde",  # one digit short
            "01234567-89ab-cdef-0123-456789abcdeg",
            "0123456789abcdef0123456789abcdef0",
            "{01234567-89ab-cdef-0123-456789abcdef}",
            "01234567-89ab-cdef-0123-456789abcde\u0663",  # a non-ASCII digit
            "0123456789-ab-cdef-0123-456789abcdef",
        ],
    )
    def test_rejects(self, value: str) -> None:
        with pytest.raises(ValueError, match="not a server id"):
            validate_server_id(value)

    def test_message_quotes_long_values_shortly(self) -> None:
        with pytest.raises(ValueError) as caught:
            validate_server_id("x" * 10_000)
        assert len(str(caught.value)) < 200


class TestProjectId:
    """Project ids: 1-64 characters of [A-Za-z0-9_-], starting alphanumeric, kept as given."""

    @given(PROJECT_IDS)
    def test_valid_ids_are_unchanged_and_url_safe(self, value: str) -> None:
        assert validate_project_id(value) == value
        assert url_path_safe(value)

    def test_keystone_hex_id(self) -> None:
        assert validate_project_id("0123456789abcdef0123456789abcdef") == (
            "0123456789abcdef0123456789abcdef"
        )

    @given(PROJECT_IDS, st.sampled_from(UNSAFE), st.integers(min_value=0, max_value=64))
    def test_rejects_unsafe_character_anywhere(self, value: str, bad: str, at: int) -> None:
        with pytest.raises(ValueError, match="not a project id"):
            validate_project_id(value[:at] + bad + value[at:])

    @given(st.text())
    def test_anything_accepted_is_url_safe(self, value: str) -> None:
        try:
            result = validate_project_id(value)
        except ValueError:
            return
        assert result == value
        assert len(value) <= 64
        assert url_path_safe(value)

    @pytest.mark.parametrize("value", ["", "-abc", "_abc", "a" * 65, " abc", "abc\n"])
    def test_rejects(self, value: str) -> None:
        with pytest.raises(ValueError, match="not a project id"):
            validate_project_id(value)

    def test_longest(self) -> None:
        assert validate_project_id("a" * 64) == "a" * 64


TAG_TEXT = st.text(alphabet=st.characters(blacklist_characters=",/"), min_size=1, max_size=60)


class TestTag:
    """Tags follow Nova's schema: 1-60 characters without ',' or '/'."""

    @given(TAG_TEXT)
    def test_valid_tags_are_unchanged(self, tag: str) -> None:
        assert validate_tag(tag) == tag

    @given(TAG_TEXT, st.sampled_from([",", "/"]), st.integers(min_value=0, max_value=60))
    def test_rejects_comma_and_slash(self, tag: str, bad: str, at: int) -> None:
        with pytest.raises(ValueError, match="not a tag"):
            validate_tag(tag[:at] + bad + tag[at:])

    @pytest.mark.parametrize(("length", "ok"), [(0, False), (1, True), (60, True), (61, False)])
    def test_length_bounds(self, length: int, ok: bool) -> None:
        tag = "t" * length
        if ok:
            assert validate_tag(tag) == tag
        else:
            with pytest.raises(ValueError, match="1-60 characters"):
                validate_tag(tag)
