"""Which event loop the CLI runs its commands on."""

from __future__ import annotations

import importlib.util

import pytest

from bulkstop.cli import console


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("asyncio", False),
        (" AsyncIO ", False),
        ("uvloop", True),
        ("", True),
    ],
)
def test_uvloop_when_installed_unless_asyncio_is_asked_for(
    setting: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(console.LOOP_ENV, setting)
    installed = importlib.util.find_spec("uvloop") is not None
    assert console.use_uvloop() is (expected and installed)


def test_without_uvloop_the_asyncio_loop_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(console.LOOP_ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert console.use_uvloop() is False


def test_a_command_runs_on_the_chosen_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")

    async def loop_module() -> str:
        import asyncio

        return type(asyncio.get_running_loop()).__module__

    monkeypatch.setenv(console.LOOP_ENV, "asyncio")
    assert console.run_async(loop_module).startswith("asyncio")
    monkeypatch.setenv(console.LOOP_ENV, "uvloop")
    assert console.run_async(loop_module).startswith("uvloop")
