"""The library speaks of parameters, the CLI of flags; one module judges a cloud's answer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.cli.options import FLAGS, cli_words

PACKAGE = Path(__file__).resolve().parents[2] / "bulkstop"
#: Rooms that may speak of flags: the command line, and the mock cloud's own command.
CLI_ROOMS = {"cli", "mockcloud"}
FLAG = re.compile(r"(?<![\w-])--[a-z]")
PARAMETER = re.compile(r"`([a-z_]+)`")


def library_modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in CLI_ROOMS
    )


def message_strings(path: Path) -> list[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


class TestLibraryWords:
    """Messages raised by the library name parameters; the CLI knows every one it may meet."""

    @pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
    def test_no_library_message_quotes_a_flag(self, path: Path) -> None:
        flags = [s for s in message_strings(path) if FLAG.search(s)]
        assert flags == []

    def test_every_parameter_a_message_names_has_a_flag(self) -> None:
        named = {
            name
            for path in library_modules()
            for text in message_strings(path)
            for name in PARAMETER.findall(text)
        }
        assert named and named <= set(FLAGS)

    def test_cli_words_translate_parameters(self) -> None:
        message = "`all_projects` and `projects` exclude each other"
        assert cli_words(message) == "--all-projects and --project exclude each other"
        assert cli_words("more than `max_servers` 4") == "more than --max-servers 4"
        assert cli_words("`unknown_thing` stays") == "`unknown_thing` stays"

    @given(st.text().filter(lambda t: "`" not in t))
    def test_text_without_parameters_is_unchanged(self, text: str) -> None:
        assert cli_words(text) == text


class TestOneJudge:
    """Outside :mod:`bulkstop.cloud.verdict`, the execution stage never reads a status code."""

    @pytest.mark.parametrize(
        "path", sorted((PACKAGE / "execute").glob("*.py")), ids=lambda p: p.name
    )
    def test_no_status_code_comparisons(self, path: Path) -> None:
        tree = ast.parse(path.read_text(), filename=str(path))
        compared = [
            ast.unparse(node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Compare)
            and any(
                isinstance(side, ast.Attribute) and side.attr == "status"
                for side in (node.left, *node.comparators)
            )
        ]
        assert compared == []
