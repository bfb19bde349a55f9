"""How a run ended, as the metrics and notifications see it (:mod:`.metrics`, :mod:`.notify`).

A run can end with a report (it ran, was halted or interrupted), or without one (bad usage, a
cloud that could not be reached, a refusal before the report was written): :class:`RunEnd`
carries both cases, so every way out of a run can be measured and told.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bulkstop.errors import EXIT_INTERRUPTED, EXIT_REFUSED
from bulkstop.execute.halt import DEADLINE
from bulkstop.models import INTERRUPTED
from bulkstop.record.report import Report

#: ``halted_by`` prefixes that name a rail (the rest of the text says why).
RAILS: Final = frozenset(
    {
        "canary",
        "max-errors",
        "max-servers",
        "max-percent",
        DEADLINE,
        INTERRUPTED,
        "not confirmed",
    }
)
#: The metric labels bulkstop sets itself (an operator's extra labels may not reuse them).
METRIC_LABELS: Final = frozenset({"action", "project", "outcome", "rail", "job", "instance"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnd:
    """One finished invocation: its exit code, its report if it has one, its error if any."""

    action: str
    exit_code: int
    finished_at: datetime
    #: Seconds from the start of the command to its end.
    duration: float
    report: Report | None = None
    report_path: str | None = None
    #: The one-line error the run ended with (exit 2, 3, 4, 5), or None.
    error: str | None = None

    @property
    def halted_by(self) -> str | None:
        """Why dispatch stopped early: the report's reason, else the error's (a refusal, an
        interruption before anything was sent)."""
        if self.report is not None and self.report.halted_by is not None:
            return self.report.halted_by
        return self.error if self.exit_code in (EXIT_REFUSED, EXIT_INTERRUPTED) else None

    @property
    def rail(self) -> str:
        """The rail that halted or refused the run (``canary``, ``deadline``, ...), ``none``,
        or ``other`` (a journal write failure, a run-wide cloud error)."""
        halted = self.halted_by
        if halted is None:
            return "none"
        head = halted.split(":")[0].strip()
        return head if head in RAILS else "other"
