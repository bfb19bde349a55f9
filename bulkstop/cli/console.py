"""Running a command's coroutine and turning bulkstop's errors into messages and exit codes.

Shared by every click command, so no command can forget it: a user never sees a traceback for
something the cloud or the input did.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, Final, NoReturn, TypeVar

import anyio
import click

from bulkstop.errors import EXIT_INTERRUPTED, BulkstopError
from bulkstop.redaction import redact

T = TypeVar("T")

#: Collector thresholds while a command runs. A fan-out allocates about a hundred short-lived
#: objects per request while the plan (every selected server) lives for the whole run; at
#: CPython's default (700, 10, 10) the collector runs every few requests, re-traverses what is in
#: flight and the plan, and takes 35-50 % of a run's CPU (benchmarks/README.md). Cyclic garbage
#: waits a little longer; nothing else changes.
GC_THRESHOLDS: Final = (10_000, 10, 10)


def fail(error: BulkstopError) -> NoReturn:
    """Print a one-line error and exit with its code."""
    click.echo(f"bulkstop: error: {redact(str(error))}", err=True)
    sys.exit(error.exit_code)


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine with bulkstop's error handling (and collector thresholds) around it."""
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    previous_term = signal.signal(signal.SIGTERM, _terminated)
    try:
        return anyio.run(main)
    except BulkstopError as exc:
        if _abandoned_a_thread():
            # A Keystone exchange abandoned at its timeout still holds a worker thread, and
            # interpreter shutdown would wait for it: say so and leave at once.
            click.echo(f"bulkstop: error: {redact(str(exc))}", err=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        fail(exc)
    except KeyboardInterrupt:
        # Only reached before anything was sent (once dispatch starts, the runner owns SIGINT).
        interrupted()
    finally:
        gc.set_threshold(*previous)
        signal.signal(signal.SIGTERM, previous_term)


def interrupted() -> NoReturn:
    """Ctrl-C or SIGTERM before anything was sent: one line, exit 130.

    A worker thread may still be blocked (the confirmation prompt, a Keystone call), and
    interpreter shutdown would wait for it: leave at once instead.
    """
    click.echo("bulkstop: interrupted; nothing was sent", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _abandoned_a_thread() -> bool:
    """A Keystone exchange was abandoned at its timeout (see ``cloud.auth.ABANDONED``); looked
    up without importing keystoneauth1 into commands that never load it."""
    auth = sys.modules.get("bulkstop.cloud.auth")
    return auth is not None and bool(auth.ABANDONED.is_set())


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the runner watches signals (resolving, listing) is a Ctrl-C too."""
    raise KeyboardInterrupt
