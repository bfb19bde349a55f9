"""Plans: a dry run's report, frozen, then executed exactly with ``--plan``.

``bulkstop stop --dry-run --report plan.json`` writes a report whose servers are ``planned``
and whose ``plan.digest`` commits to them (see :attr:`bulkstop.record.report.Report.plan_digest`).
``bulkstop stop --plan plan.json --yes`` acts on exactly those servers — never one that is not
in the plan — re-checking each one's state and protection at execution time, and refuses
(exit 4, nothing sent) a plan that was edited or is older than ``--plan-max-age``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from bulkstop.errors import InputError, RefusedError
from bulkstop.models import Outcome
from bulkstop.record.report import Report
from bulkstop.select.idfile import IdEntry
from bulkstop.timespec import format_time

#: ``--plan-max-age``: a plan older than this is refused (a duration, as the CLI takes it).
DEFAULT_PLAN_MAX_AGE: Final = "24h"


@dataclass(frozen=True, slots=True, kw_only=True)
class FrozenPlan:
    """What a verified plan commits the run to."""

    action: str
    ids: tuple[IdEntry, ...]
    projects: tuple[str, ...]
    all_projects: bool
    exclude_tags: tuple[str, ...]
    protect_tags: tuple[str, ...]
    include_locked: bool
    created: datetime


def load_plan(path: str, *, max_age: timedelta, now: datetime) -> FrozenPlan:
    """Read and verify a plan; RefusedError if edited or stale, InputError if not a plan."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read plan: {exc}", source=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", source=path, line=exc.lineno) from None
    report = Report.from_dict(data, source=path)
    stored = data.get("plan", {}).get("digest") if isinstance(data.get("plan"), dict) else None
    if not report.dry_run or not isinstance(stored, str):
        raise InputError("not a plan: write one with `dry_run` and `report`", source=path)
    if stored != report.plan_digest:
        raise RefusedError(f"{path}: the plan was edited (digest mismatch); nothing was sent")
    if report.halted_by is not None:
        raise RefusedError(
            f"{path}: this plan's dry run was refused ({report.halted_by}); make a plan that "
            "passes the rails; nothing was sent"
        )
    age = now - report.finished_at
    if age > max_age:
        raise RefusedError(
            f"{path}: the plan was made {format_time(report.finished_at)}, longer ago than "
            f"`plan_max_age` {max_age}; make a new one; nothing was sent"
        )
    selector = report.selector
    planned = [s for s in report.servers if s.outcome is Outcome.PLANNED]
    return FrozenPlan(
        action=report.action,
        ids=tuple(
            IdEntry(id=s.id, project_id=s.project_id or None, line=n, name=s.name)
            for n, s in enumerate(planned, 1)
        ),
        projects=tuple(selector.get("projects") or ()),
        all_projects=bool(selector.get("all_projects")),
        exclude_tags=tuple(selector.get("exclude_tags") or ()),
        protect_tags=tuple(selector.get("protect_tags") or ()),
        include_locked=bool(selector.get("include_locked")),
        created=report.finished_at,
    )
