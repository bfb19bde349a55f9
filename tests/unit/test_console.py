"""Which event loop the CLI runs its commands on."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Final

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


def _in_child(probe: str) -> subprocess.CompletedProcess[str]:
    """Run ``probe`` in a fresh interpreter: these tests end the process or signal it."""
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )


def _exit_in_child(body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body``, which ends with ``exit_now``."""
    return _in_child(
        "import atexit, threading, time\nfrom bulkstop.cli.console import exit_now\n" + body
    )


def _run_async_in_child(body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body``, which defines ``main``, under ``run_async``."""
    imports = "import os, signal, anyio\nfrom bulkstop.cli import console\n"
    return _in_child(imports + body + "console.run_async(main)\n")


#: The one line an interruption before anything was sent prints.
INTERRUPTED: Final = "bulkstop: interrupted; nothing was sent\n"
#: A coroutine that raises the error anyio raised when SIGTERM's KeyboardInterrupt landed inside
#: its cancel-scope exit (in CI).
_FAILS_DURING_INTERRUPT: Final = (
    "async def fail():\n"
    "    try:\n"
    "        raise KeyboardInterrupt\n"
    "    except KeyboardInterrupt:\n"
    "        raise RuntimeError('Attempted to exit a cancel scope')\n"
)


class TestExitNow:
    def test_keeps_the_status_the_atexit_handlers_and_the_buffered_output(self) -> None:
        done = _exit_in_child(
            "atexit.register(lambda: print('handler ran'))\nprint('buffered', end=' ')\nexit_now(3)"
        )
        assert (done.returncode, done.stdout) == (3, "buffered handler ran\n")

    def test_a_message_is_printed_with_status_1(self) -> None:
        done = _exit_in_child("exit_now('bulkstop: gone')")
        assert (done.returncode, done.stderr) == (1, "bulkstop: gone\n")

    def test_none_is_success(self) -> None:
        assert _exit_in_child("exit_now(None)").returncode == 0

    def test_waits_for_a_thread_an_ordinary_exit_would_wait_for(self) -> None:
        # A non-daemon thread still working: the exit is an ordinary one, which joins it.
        done = _exit_in_child(
            "def work():\n    time.sleep(0.2)\n    print('thread finished', flush=True)\n"
            "threading.Thread(target=work).start()\nexit_now(4)"
        )
        assert (done.returncode, done.stdout) == (4, "thread finished\n")


class TestInterruptedBeforeDispatch:
    """Ctrl-C or SIGTERM while the loop runs, before anything was sent: exit 130, one line."""

    def test_an_error_raised_while_the_interrupt_unwinds_is_the_interruption(self) -> None:
        done = _run_async_in_child(_FAILS_DURING_INTERRUPT + "main = fail\n")
        assert (done.returncode, done.stderr) == (130, INTERRUPTED)

    def test_so_is_a_task_group_error_raised_so(self) -> None:
        done = _run_async_in_child(
            _FAILS_DURING_INTERRUPT + "async def main():\n"
            "    async with anyio.create_task_group() as tg:\n"
            "        tg.start_soon(fail)\n"
        )
        assert (done.returncode, done.stderr) == (130, INTERRUPTED)

    def test_an_error_of_its_own_is_not_taken_for_an_interruption(self) -> None:
        async def main() -> None:
            raise RuntimeError("a bug")

        with pytest.raises(RuntimeError, match="a bug"):
            console.run_async(main)

    def test_sigterm_cancels_the_run_as_ctrl_c_does(self) -> None:
        # Not a KeyboardInterrupt raised wherever the signal lands: the run is cancelled, its
        # cleanup runs, and the exit is Ctrl-C's.
        done = _run_async_in_child(
            "async def main():\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        await anyio.sleep(60)\n"
            "    except anyio.get_cancelled_exc_class():\n"
            "        print('cancelled, cleaning up', flush=True)\n"
            "        raise\n"
        )
        assert (done.returncode, done.stdout, done.stderr) == (
            130,
            "cancelled, cleaning up\n",
            INTERRUPTED,
        )
