"""The mock cloud as a process: print one line of JSON once listening, stop on SIGINT/SIGTERM.

The line is :meth:`MockCloud.connection_info` (auth URL, compute URL template, credentials,
project ids...), so a script can start the mock, read one line, and go::

    python -m bulkstop.mockcloud --servers 1000 --projects 4 > info.json &
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import signal
import sys
from collections.abc import Callable
from typing import Final, TextIO

from .app import MockCloud
from .config import MockConfig

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


async def serve(config: MockConfig, *, out: TextIO | None = None) -> None:
    """Serve ``config`` until SIGINT or SIGTERM; the JSON line goes to ``out`` (stdout)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        # Built after the handlers are in place: seeding a big fleet takes a moment, and a
        # signal during it must still end the process cleanly.
        async with MockCloud(config) as mock:
            # The fleet lives as long as the process: keep the collector from rescanning it.
            gc.freeze()
            stream = out or sys.stdout
            stream.write(json.dumps(mock.connection_info()) + "\n")
            stream.flush()
            await stop.wait()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (it serves faster), else asyncio's default.

    Imported by name: uvloop is optional (the ``test`` extra brings it), and the type checker
    must pass with or without it.
    """
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_standalone(config: MockConfig, *, out: TextIO | None = None) -> int:
    """Run :func:`serve` on a fresh event loop; returns the exit code (0)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(config, out=out))
    return 0
