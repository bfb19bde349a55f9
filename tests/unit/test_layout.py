"""The layout is the architecture: these tests keep the arrows pointing one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bulkstop"
#: The stages in the order data flows through them; a stage may import only earlier ones.
STAGES = ["select", "plan", "execute", "record"]
#: Rooms the library must never import: the command line and the mock cloud sit above it.
OUTER = {"cli", "mockcloud", "testing"}


def bulkstop_imports(path: Path) -> set[str]:
    """The ``bulkstop.X`` subpackages (or top-level modules) that a module imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "bulkstop" and len(parts) > 1:
                found.add(parts[1])
    return found


def modules_of(room: str) -> list[Path]:
    return sorted((PACKAGE / room).rglob("*.py"))


class TestArrows:
    """Data flows select → plan → execute → record; nothing upstream imports downstream."""

    @pytest.mark.parametrize("stage", STAGES)
    def test_a_stage_imports_no_later_stage(self, stage: str) -> None:
        later = set(STAGES[STAGES.index(stage) + 1 :])
        for module in modules_of(stage):
            wrong = bulkstop_imports(module) & (later | OUTER)
            assert not wrong, f"{module.relative_to(PACKAGE)} imports {sorted(wrong)}"

    def test_the_cloud_seam_imports_no_stage(self) -> None:
        for module in modules_of("cloud"):
            wrong = bulkstop_imports(module) & (set(STAGES) | OUTER)
            assert not wrong, f"{module.relative_to(PACKAGE)} imports {sorted(wrong)}"

    @pytest.mark.parametrize("module", ["__init__", "api", "arguments", "runner"])
    def test_the_front_door_imports_neither_the_cli_nor_the_mock_cloud(self, module: str) -> None:
        wrong = bulkstop_imports(PACKAGE / f"{module}.py") & OUTER
        assert not wrong, f"{module}.py imports {sorted(wrong)}"

    def test_the_shared_vocabulary_imports_nothing_of_ours_but_itself(self) -> None:
        for name in ("errors", "models", "identifiers", "timespec", "limits", "redaction"):
            wrong = bulkstop_imports(PACKAGE / f"{name}.py") - {"errors", "models", "identifiers"}
            assert not wrong, f"{name}.py imports {sorted(wrong)}"


def test_stop_does_not_import_the_mock_cloud() -> None:
    """``bulkstop stop`` pays for neither aiohttp's server nor the mock cloud at start-up."""
    probe = (
        "import sys, click\n"
        "from bulkstop.cli import main\n"
        "main.get_command(click.Context(main), 'stop')\n"
        "loaded = [m for m in sys.modules if m.startswith(('bulkstop.mockcloud', 'aiohttp.web'))]\n"
        "print(' '.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
