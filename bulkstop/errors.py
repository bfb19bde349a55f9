"""The one error tree of bulkstop.

Every exception bulkstop raises on purpose is a :class:`BulkstopError`. Each leaf maps to one
documented exit code of the CLI, so a user never sees a traceback for something the cloud or
the input did::

    BulkstopError            exit 1   anything not more specific
    ├── UsageError           exit 2   bad options, or a refusal to run without --yes
    │   ├── ParameterError   exit 2   a Python API parameter that cannot work (the CLI: its flag)
    │   └── InputError       exit 2   a malformed ID file, plan or report; names file and line
    ├── CloudAccessError     exit 3   we could not talk to the cloud at all
    │   ├── ConfigError      exit 3   clouds.yaml / OS_* settings are missing or wrong
    │   ├── AuthError        exit 3   Keystone refused us, or no compute endpoint
    │   ├── EndpointError    exit 3   the endpoint is unreachable or not a compute API
    │   └── UnsafeCloudError exit 3   the cloud ignored a filter we rely on (tags below 2.26)
    ├── RefusedError         exit 4   a safety rail refused before anything was sent
    └── RecordError          exit 5   the report or journal could not be written; fix, then resume

An interrupted run is not an error: it returns its report with ``halted_by == "interrupted"``
and the CLI exits 130.

Third-party exceptions (aiohttp, keystoneauth1, openstacksdk's config loader, json) are translated
into this tree at exactly one boundary each: :mod:`bulkstop.cloud.http` for HTTP and
:mod:`~.cloud.auth` for Keystone and configuration. A failure that concerns one server is never
an exception: it is an :class:`~bulkstop.models.Outcome` in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Final

EXIT_OK: Final = 0
EXIT_FAILURES: Final = 1
EXIT_USAGE: Final = 2
EXIT_CLOUD: Final = 3
EXIT_REFUSED: Final = 4
EXIT_RECORD: Final = 5
EXIT_INTERRUPTED: Final = 130


class BulkstopError(Exception):
    """Base of every error bulkstop raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code: ClassVar[int] = EXIT_FAILURES


class UsageError(BulkstopError):
    """Raised by the CLI and config layer for options that cannot work together."""

    exit_code: ClassVar[int] = EXIT_USAGE


class ParameterError(UsageError):
    """Raised by :mod:`bulkstop.api` for parameters that cannot work, alone or together.

    The message names parameters as ``{name}`` fields of :attr:`template`: ``str()`` shows the
    Python parameter names, and the CLI shows its flags instead (:meth:`naming`), so that the
    library speaks of parameters and the command line of flags.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.naming(str))

    def naming(self, name: Callable[[str], str]) -> str:
        """The message with each ``{param}`` field shown as ``name(param)``."""
        return self.template.format_map(_Names(name))


class _Names(dict[str, str]):
    """``str.format_map`` fields, each named by a function of the field."""

    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self._name = name

    def __missing__(self, key: str) -> str:
        return self._name(key)


def literal(text: object) -> str:
    """``text`` made safe to put into a :class:`ParameterError` template (braces doubled)."""
    return str(text).replace("{", "{{").replace("}", "}}")


class InputError(UsageError):
    """Raised by the ID-file, plan and report readers for malformed input.

    The message names the file and, where it helps, the line.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = source or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line


class CloudAccessError(BulkstopError):
    """Base for failures to reach or trust the cloud as a whole (not one server)."""

    exit_code: ClassVar[int] = EXIT_CLOUD


class ConfigError(CloudAccessError):
    """Raised by :mod:`~.cloud.auth` when clouds.yaml or ``OS_*`` settings are missing or wrong."""


class AuthError(CloudAccessError):
    """Raised by :mod:`~.cloud.auth` when Keystone refuses the credentials or has no compute."""


class EndpointError(CloudAccessError):
    """Raised when the compute endpoint is unreachable or answers like something else."""


class UnsafeCloudError(CloudAccessError):
    """Raised by the selector when the cloud ignored a filter: acting would hit too many servers."""


class RefusedError(BulkstopError):
    """Raised by a safety rail that refuses before anything is sent (caps, confirmation)."""

    exit_code: ClassVar[int] = EXIT_REFUSED


class RecordError(BulkstopError):
    """Raised by the journal and report writers when the disk refuses a write (full, read-only).

    What was sent is still on record as far as the disk allowed; the message names the file, and
    the run can be finished with a resume once the cause is fixed.
    """

    exit_code: ClassVar[int] = EXIT_RECORD

    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        #: The run's report as far as it was built (the runner's ``Report``), for the summary.
        self.report = report
        #: Set by :mod:`bulkstop.api`: the run's ``RunResult`` (that report, and where the
        #: journal to resume from is), so that a caller can say how to finish the run.
        self.result: object | None = None
