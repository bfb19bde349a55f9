"""The front door's surface and its parameter checks (no cloud: they fail before one is opened).

Every mistake here raises :class:`~bulkstop.errors.ParameterError` naming the parameter as a
script writes it, never a ``--flag``; the CLI shows the same error with its flags.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bulkstop
from bulkstop import arguments
from bulkstop.cli.options import flag_of
from bulkstop.errors import ParameterError, UsageError, literal


class TestSurface:
    """``import bulkstop`` gives the documented names, and only imports them when used."""

    def test_every_public_name_resolves(self) -> None:
        for name in bulkstop.__all__:
            assert getattr(bulkstop, name) is not None, name
        assert set(bulkstop.__all__) <= set(dir(bulkstop))

    def test_an_unknown_name_is_an_attribute_error(self) -> None:
        with pytest.raises(AttributeError, match="no attribute 'stopp'"):
            _ = bulkstop.stopp  # type: ignore[attr-defined]

    def test_the_version_is_the_package_metadata(self) -> None:
        assert bulkstop.__version__ == importlib.metadata.version("bulkstop")

    def test_importing_the_package_does_not_load_the_cloud_client(self) -> None:
        probe = (
            "import sys, bulkstop\n"
            "print(bulkstop.__version__, 'bulkstop.api' in sys.modules, 'aiohttp' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        )
        assert out.stdout.split()[1:] == ["False", "False"]


def refused(params: dict[str, Any], *, function: str = "stop") -> str:
    """The ParameterError message of ``run_<function>(**params)``."""
    with pytest.raises(ParameterError) as caught:
        getattr(bulkstop, f"run_{function}")(**params)
    message = str(caught.value)
    assert "--" not in message, message
    return message


class TestParameterErrors:
    """Mistakes are refused before anything is opened, in the script's own words."""

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({}, "nothing selected: give tags, any_tags or ids, or select_all"),
            ({"select_all": True, "tags": "x"}, "select_all cannot be combined with tags"),
            ({"tags": "x", "only": "failed"}, "only needs ids pointing at a bulkstop report"),
            ({"ids": ["a"], "only": ["failed"]}, "only needs ids pointing at a bulkstop report"),
            ({"ids": "r.json", "only": ["gone"]}, "only: unknown outcome(s) gone; valid outc"),
            ({"ids": "r.json", "only": []}, "only: no outcome given"),
            ({"tags": "x", "all_projects": True, "projects": ["a" * 32]}, "exclude each other"),
            ({"tags": "bad,tag"}, "tags: "),
            ({"tags": "x", "projects": "not a project"}, "projects: "),
            ({"ids": ["not an id\n"]}, "ids: "),
            ({"tags": "x", "deadline": "soonish"}, "deadline: not a duration"),
            ({"tags": "x", "deadline": timedelta(seconds=-1)}, "deadline "),
            ({"tags": "x", "deadline": datetime(2030, 1, 1)}, "deadline needs a timezone"),
            ({"tags": "x", "max_errors": "lots"}, "max_errors: not an error budget"),
            ({"tags": "x", "stop_type": "gentle"}, "stop_type must be SOFT or HARD"),
            ({"plan": "p.json", "tags": "x", "projects": ["a" * 32]}, "drop tags projects"),
        ],
    )
    def test_a_stop_names_the_parameter(self, params: dict[str, Any], message: str) -> None:
        assert message in refused(params)

    def test_the_cli_names_the_flags_instead(self) -> None:
        with pytest.raises(ParameterError) as caught:
            bulkstop.run_stop(tags="x", only="failed")
        assert caught.value.naming(flag_of) == (
            "--only needs --ids-file pointing at a bulkstop report"
        )

    def test_a_parameter_error_is_a_usage_error(self) -> None:
        assert issubclass(ParameterError, UsageError)

    def test_a_brace_in_a_value_is_shown_as_it_is(self) -> None:
        assert "{x}" in refused({"tags": "y", "deadline": "{x}"})

    @given(text=st.text())
    def test_a_value_in_a_message_survives_any_naming(self, text: str) -> None:
        error = ParameterError("{deadline}: " + literal(text))
        assert str(error) == f"deadline: {text}"
        assert error.naming(flag_of) == f"--deadline: {text}"

    def test_a_start_has_no_stop_type(self) -> None:
        with pytest.raises(TypeError, match="unexpected keyword argument 'stop_type'"):
            bulkstop.run_start(tags="x", stop_type="HARD")  # type: ignore[call-arg]

    def test_an_unknown_parameter_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="unexpected keyword argument 'tag'"):
            bulkstop.run_stop(tag="x")  # type: ignore[call-arg]

    def test_undo_checks_its_protections(self) -> None:
        moment = datetime(2026, 11, 28, tzinfo=UTC)
        report = bulkstop.Report(
            action="stop", dry_run=False, started_at=moment, finished_at=moment, servers=()
        )
        with pytest.raises(ParameterError, match=r"^protect_tags: "):
            bulkstop.run_undo(report, protect_tags=["bad,tag"])

    def test_undo_refuses_a_report_of_a_start(self) -> None:
        moment = datetime(2026, 11, 28, tzinfo=UTC)
        report = bulkstop.Report(
            action="start", dry_run=False, started_at=moment, finished_at=moment, servers=()
        )
        with pytest.raises(UsageError, match="only a stop run can be undone"):
            bulkstop.run_undo(report)


class TestJournalPath:
    """``journal=True`` puts it beside the report, as the CLI does."""

    @pytest.mark.parametrize(
        ("journal", "report", "expected"),
        [
            (True, "night.json", "night.journal.jsonl"),
            (True, "out/x.json", "out/x.journal.jsonl"),
            (True, None, None),
            (True, "-", None),
            (False, "night.json", None),
            ("j.jsonl", None, "j.jsonl"),
            (Path("d/j.jsonl"), "night.json", "d/j.jsonl"),
        ],
    )
    def test_default_and_given(
        self, journal: bool | str | Path, report: str | None, expected: str | None
    ) -> None:
        assert arguments.journal_path(journal, report) == expected
