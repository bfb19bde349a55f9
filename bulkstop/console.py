"""Running a command's coroutine and turning bulkstop's errors into messages and exit codes.

Shared by every click command, so no command can forget it: a user never sees a traceback for
something the cloud or the input did.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import anyio
import click

from .errors import EXIT_INTERRUPTED, BulkstopError

T = TypeVar("T")


def fail(error: BulkstopError) -> NoReturn:
    """Print a one-line error and exit with its code."""
    click.echo(f"bulkstop: error: {error}", err=True)
    sys.exit(error.exit_code)


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine with bulkstop's error handling around it."""
    try:
        return anyio.run(main)
    except BulkstopError as exc:
        fail(exc)
    except KeyboardInterrupt:
        click.echo("bulkstop: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
