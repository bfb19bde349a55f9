"""bulkstop: stop many OpenStack / Huawei Cloud servers at once, safely, fast, and on the record.

The Python API (see :mod:`bulkstop.api` for every parameter and why it has this shape)::

    import bulkstop

    result = bulkstop.run_stop(tags=["nightly-stop"], cloud="prod", report="night.json")
    print(result.summary)

:func:`stop`, :func:`start`, :func:`resume` and :func:`undo` are coroutines; ``run_stop`` and
the other ``run_*`` functions are their blocking twins. Each returns a :class:`RunResult`: the
:class:`Report` and the paths of the report and journal it wrote.

The names are imported on first use, so that ``bulkstop report`` and ``--help`` do not pay for
the cloud client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from bulkstop._version import __version__

if TYPE_CHECKING:
    from bulkstop.api import (
        RunResult,
        resume,
        run_resume,
        run_start,
        run_stop,
        run_undo,
        start,
        stop,
        undo,
    )
    from bulkstop.cloud.auth import AuthSettings
    from bulkstop.errors import (
        BulkstopError,
        CloudAccessError,
        ParameterError,
        RecordError,
        RefusedError,
        UsageError,
    )
    from bulkstop.execute.engine import Observer
    from bulkstop.models import Outcome, ServerResult
    from bulkstop.record.report import Report


__all__ = [
    "AuthSettings",
    "BulkstopError",
    "CloudAccessError",
    "Observer",
    "Outcome",
    "ParameterError",
    "RecordError",
    "RefusedError",
    "Report",
    "RunResult",
    "ServerResult",
    "UsageError",
    "__version__",
    "resume",
    "run_resume",
    "run_start",
    "run_stop",
    "run_undo",
    "start",
    "stop",
    "undo",
]

#: The module each public name lives in (the same names as the imports above).
_HOMES: Final = {
    "bulkstop.api": (
        *("stop", "start", "resume", "undo"),
        *("run_stop", "run_start", "run_resume", "run_undo", "RunResult"),
    ),
    "bulkstop.cloud.auth": ("AuthSettings",),
    "bulkstop.execute.engine": ("Observer",),
    "bulkstop.models": ("Outcome", "ServerResult"),
    "bulkstop.record.report": ("Report",),
    "bulkstop.errors": (
        *("BulkstopError", "UsageError", "ParameterError"),
        *("CloudAccessError", "RefusedError", "RecordError"),
    ),
}


def __getattr__(name: str) -> Any:
    home = next((module for module, names in _HOMES.items() if name in names), None)
    if home is None:
        raise AttributeError(f"module 'bulkstop' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
