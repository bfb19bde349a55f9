"""The README's ``bulkstop.testing`` examples run as written: a user's pytest test of their
evacuation script (through the installed pytest plugin), and the openstacksdk example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest
from processes import PROCESS_TIMEOUT, SOURCE_ROOT, child_env

README: Final = Path(SOURCE_ROOT) / "README.md"
#: ``<!-- example: NAME -->`` followed by a fenced python block.
EXAMPLE: Final = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)\n```", re.S)

pytestmark = pytest.mark.slow


def examples() -> dict[str, str]:
    """The README's named examples: file name → code."""
    found = dict(EXAMPLE.findall(README.read_text(encoding="utf-8")))
    assert {"evacuate.py", "test_evacuate.py", "openstacksdk_example.py"} <= found.keys()
    return found


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``tmp_path`` (no configuration of ours), as a user would run it."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT * 4,
        check=False,
    )


def test_the_users_pytest_test_of_an_evacuation_script(tmp_path: Path) -> None:
    code = examples()
    for name in ("evacuate.py", "test_evacuate.py"):
        (tmp_path / name).write_text(code[name], encoding="utf-8")
    done = run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_evacuate.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_openstacksdk_example(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(examples()["openstacksdk_example.py"], encoding="utf-8")
    done = run(tmp_path, "example.py")
    assert done.returncode == 0, done.stdout + done.stderr
    sent, refused = map(int, re.findall(r"(\d+) stops sent, (\d+) refused", done.stdout)[0])
    assert sent > refused > 0
