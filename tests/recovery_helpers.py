"""Helpers of the recovery tests (resume, undo) against the in-process mock cloud.

Runs go through :class:`api_runner.Runner`; these read what they did from the mock's journal
and from their reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from bulkstop.mockcloud import MockCloud
from bulkstop.record.report import Report


def actions(mock: MockCloud, action: str = "os-stop") -> Counter[str]:
    """How many ``action`` requests reached each server (answered or not)."""
    return Counter(
        r.server_id
        for r in mock.requests
        if r.kind == "action" and r.action == action and r.server_id is not None
    )


def planned(report: Report) -> set[str]:
    """The servers a dry run would act on."""
    return {s.id for s in report.servers if s.outcome.value == "planned"}


def assert_each_once(report: Report, targets: Iterable[str]) -> None:
    """The report holds exactly ``targets``, each once."""
    ids = [s.id for s in report.servers]
    assert len(ids) == len(set(ids)), "a server appears twice in the report"
    assert set(ids) == set(targets)
