"""Task-group helpers shared by the execution stage and the runner."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bulkstop.errors import BulkstopError


@contextlib.contextmanager
def first_run_error() -> Iterator[None]:
    """Raise a run-wide error from a task group as itself, not wrapped in an ExceptionGroup."""
    try:
        yield
    except* BulkstopError as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
