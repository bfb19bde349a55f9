"""Running a command's coroutine and turning bulkstop's errors into messages and exit codes.

Shared by every click command, so no command can forget it: a user never sees a traceback for
something the cloud or the input did.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final, NoReturn, TypeVar

import anyio

from bulkstop.cli import log
from bulkstop.cli.options import flag_of
from bulkstop.errors import EXIT_INTERRUPTED, BulkstopError, ParameterError

T = TypeVar("T")

#: Collector thresholds while a command runs. A fan-out allocates about a hundred short-lived
#: objects per request while the plan (every selected server) lives for the whole run; at
#: CPython's default (700, 10, 10) the collector runs every few requests, re-traverses what is in
#: flight and the plan, and takes 35-50 % of a run's CPU (benchmarks/README.md). Cyclic garbage
#: waits a little longer; nothing else changes.
GC_THRESHOLDS: Final = (10_000, 10, 10)


def message_of(error: BulkstopError) -> str:
    """An error as the command line tells it (a parameter named by its flag)."""
    return error.naming(flag_of) if isinstance(error, ParameterError) else str(error)


def fail(error: BulkstopError) -> NoReturn:
    """Print a one-line error and exit with its code."""
    log.say(
        "error", f"bulkstop: error: {message_of(error)}", level="error", exit_code=error.exit_code
    )
    sys.exit(error.exit_code)


def run_async(
    main: Callable[[], Coroutine[Any, Any, T]],
    *,
    last_words: Callable[[int], None] | None = None,
) -> T:
    """Run a coroutine with bulkstop's error handling (and collector thresholds) around it.

    ``last_words`` is called with the exit code before an interruption leaves at once, which
    skips every ``finally`` (the end-of-run metrics and notifications use it).
    """
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        return anyio.run(main)
    except BulkstopError as exc:
        fail(exc)
    except KeyboardInterrupt:
        # Only reached before anything was sent (once dispatch starts, the runner owns SIGINT).
        # A worker thread may still be blocked (the confirmation prompt, a Keystone call), and
        # interpreter shutdown would wait for it: leave at once instead.
        log.say(
            "interrupted",
            "bulkstop: interrupted; nothing was sent",
            level="warning",
            exit_code=EXIT_INTERRUPTED,
        )
        if last_words is not None:
            last_words(EXIT_INTERRUPTED)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    finally:
        gc.set_threshold(*previous)
