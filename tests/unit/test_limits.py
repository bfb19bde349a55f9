"""The named limits, the one redaction helper, and the record identifier checks."""

from __future__ import annotations

import inspect
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop import limits
from bulkstop.cli import options
from bulkstop.cloud import auth, errorbody, http, verdict
from bulkstop.execute import backoff, engine, gate
from bulkstop.identifiers import record_project_id, record_server_id
from bulkstop.redaction import redact
from bulkstop.runner import run


class TestOnePlace:
    """Every limit is defined once, in limits.py, and is what the code uses."""

    def test_the_modules_use_the_named_limits(self) -> None:
        assert verdict.MAX_RETRY_AFTER is limits.MAX_RETRY_AFTER
        assert gate.RetryPolicy().max_throttle_wait == limits.DEFAULT_MAX_THROTTLE_WAIT
        assert backoff.Backoff().cap == limits.DEFAULT_BACKOFF_CAP
        assert engine.RunOptions().wait_timeout == limits.DEFAULT_WAIT_TIMEOUT
        assert errorbody.MAX_SCAN_BYTES is limits.MAX_SCAN_BYTES
        assert auth.DEFAULT_AUTH_TIMEOUT is limits.DEFAULT_AUTH_TIMEOUT
        assert http.DEFAULT_REQUEST_TIMEOUT is limits.DEFAULT_REQUEST_TIMEOUT
        assert options.MAX_ID_FILE_BYTES is limits.MAX_ID_FILE_BYTES
        assert inspect.signature(run).parameters["grace"].default == limits.DEFAULT_GRACE

    def test_the_values_the_readme_states(self) -> None:
        assert limits.MAX_RETRY_AFTER == 300
        assert limits.DEFAULT_MAX_THROTTLE_WAIT == 15 * 60
        assert limits.MAX_RESPONSE_BYTES == 64 << 20
        assert limits.MAX_ID_FILE_BYTES == 256 << 20
        assert limits.MAX_LIST_PAGES == 10_000
        assert limits.DEFAULT_GRACE == 10


class TestClamp:
    @pytest.mark.parametrize(
        ("asked", "honoured"),
        [(None, None), (-5, 0), (0, 0), (299.5, 299.5), (300, 300), (300.01, 300), (1e12, 300)],
    )
    def test_at_its_edge(self, asked: float | None, honoured: float | None) -> None:
        assert verdict.clamp_delay(asked) == honoured


class TestRedact:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("http://alice:secret@k.example/v3", "http://***@k.example/v3"),
            (
                "at https://bob:p@ss@n.example:8774/v2.1 now",
                "at https://***@n.example:8774/v2.1 now",
            ),
            ("http://k.example/v3?user=a@b", "http://k.example/v3?user=a@b"),
            ("mail alice@example.com", "mail alice@example.com"),
            ("a http://u@h/x and http://v:w@h2", "a http://***@h/x and http://***@h2"),
        ],
    )
    def test_userinfo_is_masked(self, text: str, shown: str) -> None:
        assert redact(text) == shown

    @given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
    def test_a_password_never_survives(self, password: str) -> None:
        secret = "S3cr3t" + password.replace("/", "").replace("?", "").replace("#", "")
        secret = "".join(c for c in secret if not c.isspace())
        assert "S3cr3t" not in redact(f"see http://u:{secret}@host/path")


class TestRecordIds:
    def test_upper_case_copies_are_one_id(self) -> None:
        sid = str(uuid.uuid4())
        assert record_server_id(sid.upper()) == record_server_id(sid) == sid

    @pytest.mark.parametrize(
        "bad", ["", "..", "x/../{u}", " {u}", "{u} ", "{u}\n", "{bare}", None, 7, "{u}/action"]
    )
    def test_nothing_but_exactly_a_uuid(self, bad: object) -> None:
        u = str(uuid.uuid4())
        value = bad.format(u=u, bare=u.replace("-", "")) if isinstance(bad, str) else bad
        with pytest.raises(ValueError, match="not a server id"):
            record_server_id(value)

    def test_project_ids(self) -> None:
        assert record_project_id(None) == record_project_id("") == ""
        assert record_project_id("abc_1-2") == "abc_1-2"
        with pytest.raises(ValueError):
            record_project_id("../x")
