"""Running a command's coroutine and turning bulkstop's errors into messages and exit codes.

Shared by every click command, so no command can forget it: a user never sees a traceback for
something the cloud or the input did.
"""

from __future__ import annotations

import atexit
import gc
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, Final, NoReturn, TypeVar

import anyio

from bulkstop.cli import log
from bulkstop.cli.options import cli_words, flag_of
from bulkstop.errors import EXIT_INTERRUPTED, BulkstopError, ParameterError
from bulkstop.redaction import redact

T = TypeVar("T")
#: Told the exit code, and the error (None: an interruption), by a command about to leave at
#: once with :func:`os._exit` (see :meth:`bulkstop.cli.unattended.Ending.last_words`).
LastWords = Callable[[int, BulkstopError | None], None]

#: Collector thresholds while a command runs. A fan-out allocates about a hundred short-lived
#: objects per request while the plan (every selected server) lives for the whole run; at
#: CPython's default (700, 10, 10) the collector runs every few requests, re-traverses what is in
#: flight and the plan, and takes 35-50 % of a run's CPU (benchmarks/README.md). Cyclic garbage
#: waits a little longer; nothing else changes.
GC_THRESHOLDS: Final = (10_000, 10, 10)
#: Environment variable naming the event loop: ``asyncio`` or ``uvloop``; unset (or anything
#: else): uvloop when it is installed (the ``fast`` extra), else asyncio's own loop.
LOOP_ENV: Final = "BULKSTOP_LOOP"


def use_uvloop() -> bool:
    """Whether commands run on uvloop: installed, and not turned off by ``BULKSTOP_LOOP``.

    uvloop spends less CPU per request than asyncio's loop (benchmarks/README.md); asyncio's
    loop stays supported (``BULKSTOP_LOOP=asyncio``) for platforms or debugging without it.
    """
    if os.environ.get(LOOP_ENV, "").strip().lower() == "asyncio":
        return False
    return importlib.util.find_spec("uvloop") is not None


def message_of(error: BulkstopError) -> str:
    """An error as the command line tells it, on its error line and in its notification alike:
    a parameter named by its flag, library words as flags, credentials in URLs masked."""
    message = error.naming(flag_of) if isinstance(error, ParameterError) else str(error)
    return redact(cli_words(message))


def say_error(error: BulkstopError) -> None:
    """The one line that reports ``error`` (an ``error`` event in JSON log mode)."""
    log.say(
        "error", f"bulkstop: error: {message_of(error)}", level="error", exit_code=error.exit_code
    )


def fail(error: BulkstopError) -> NoReturn:
    """Print a one-line error and exit with its code."""
    say_error(error)
    sys.exit(error.exit_code)


def run_async(
    main: Callable[[], Coroutine[Any, Any, T]],
    *,
    last_words: LastWords | None = None,
) -> T:
    """Run a coroutine with bulkstop's error handling (and collector thresholds) around it.

    ``last_words`` is called before the process leaves at once (an interruption, a Keystone
    thread abandoned), which skips every ``finally``: the end-of-run metrics and notifications.
    """
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    previous_term = signal.signal(signal.SIGTERM, _terminated)
    _occupy_closed_standard_fds()
    try:
        return anyio.run(main, backend_options={"use_uvloop": use_uvloop()})
    except BulkstopError as exc:
        if _abandoned_a_thread():
            # A Keystone exchange abandoned at its timeout still holds a worker thread, and
            # interpreter shutdown would wait for it: say so and leave at once.
            say_error(exc)
            _leave(exc.exit_code, exc, last_words)
        fail(exc)
    except KeyboardInterrupt:
        # Only reached before anything was sent (once dispatch starts, the runner owns SIGINT).
        interrupted(last_words)
    except Exception as exc:
        # The KeyboardInterrupt of a signal can land inside a library's bookkeeping (anyio's
        # cancel scope, mid-exit) and come out as that library's error: still the interruption.
        if not _during_interrupt(exc):
            raise
        interrupted(last_words)
    finally:
        gc.set_threshold(*previous)
        signal.signal(signal.SIGTERM, previous_term)


def _occupy_closed_standard_fds() -> None:
    """Put ``/dev/null`` on a closed standard descriptor (``bulkstop ... <&-``).

    Otherwise the event loop's own descriptors land on 0-2, and uvloop aborts the process when
    it closes one of them. ``sys.stdin`` stays ``None``: reading ``-`` is still refused.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def interrupted(last_words: LastWords | None = None) -> NoReturn:
    """Ctrl-C or SIGTERM before anything was sent: one line, ``last_words``, exit 130.

    A worker thread may still be blocked (the confirmation prompt, a Keystone call), and
    interpreter shutdown would wait for it: leave at once instead.
    """
    log.say(
        "interrupted",
        "bulkstop: interrupted; nothing was sent",
        level="warning",
        exit_code=EXIT_INTERRUPTED,
    )
    _leave(EXIT_INTERRUPTED, None, last_words)


def _leave(code: int, error: BulkstopError | None, last_words: LastWords | None) -> NoReturn:
    """Tell how the run ended (``last_words``), flush, and exit at once with ``code``."""
    if last_words is not None:
        last_words(code, error)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_now(code: int | str | None) -> NoReturn:
    """End the process as an ordinary exit would, without the interpreter's teardown.

    By the end of a command everything bulkstop writes is synced and closed (the run closes the
    report and the journal); what an ordinary exit still does is free every object one by one:
    about 0.3 s after a 10,000-server run on a small machine, as long as the bare loop's whole
    exit (benchmarks/README.md). The rest of an exit is kept: ``atexit`` handlers run and the
    standard streams are flushed (exit status 120 if that fails, as Python's). While a thread
    that an ordinary exit would wait for is still alive, this is an ordinary exit.
    """
    status = code if isinstance(code, int) else 0 if code is None else 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
    main = threading.main_thread()
    if any(t is not main and not t.daemon for t in threading.enumerate()):
        sys.exit(status)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe (| head), a closed stream
        status = status or 120
    os._exit(status)


def _abandoned_a_thread() -> bool:
    """A Keystone exchange was abandoned at its timeout (see ``cloud.auth.ABANDONED``); looked
    up without importing keystoneauth1 into commands that never load it."""
    auth = sys.modules.get("bulkstop.cloud.auth")
    return auth is not None and bool(auth.ABANDONED.is_set())


def _during_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt was being handled."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        if isinstance(cause, BaseExceptionGroup) and any(  # a task group's: any of its errors
            _during_interrupt(inner) for inner in cause.exceptions
        ):
            return True
        seen.add(id(cause))
        cause = cause.__context__
    return False


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the runner watches signals (resolving, listing) is a Ctrl-C too.

    It is handled by SIGINT's handler: while the event loop runs that is asyncio's, which
    cancels the run cleanly; a KeyboardInterrupt raised here could land anywhere, even in a
    library's bookkeeping (anyio's cancel scope, asyncio's shutdown), and come out as its
    error. Python's own handler raises KeyboardInterrupt, as a SIGINT would.
    """
    on_sigint = signal.getsignal(signal.SIGINT)
    if not callable(on_sigint):  # SIGINT ignored (a background job): nothing to hand it to
        raise KeyboardInterrupt
    on_sigint(signal.SIGINT, frame)
