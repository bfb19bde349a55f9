"""Finishing an interrupted run from its journal (``--resume``), undoing a stop run from its
report (``start --from-report``), and reading a journal as a report.

A resumed run acts on exactly the frozen selection of the original run, minus the servers that
already have a final outcome: it re-resolves them **by id** (never by the original tags, which
may match other servers by now), under the original protections. Servers that were sent a
request but have no outcome are re-read before anything is sent: if the cloud shows them
stopped or stopping, the interrupted run's request went through and they are ``accepted``
(``stopped`` with ``--wait`` when already ``SHUTOFF``; one still powering off stays
``accepted``: the resumed run does not wait for it), not ``already_stopped``; otherwise they
are sent again. The final report covers the whole run: the journal's outcomes plus the new
ones, each server once, with the original ``started_at`` and selector.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from typing import Final

from bulkstop.errors import InputError
from bulkstop.execute.engine import Plan, RunOptions
from bulkstop.models import INTERRUPTED, Action, Outcome, ServerResult
from bulkstop.plan.eligibility import PlanEntry
from bulkstop.record.journal import JournalState, Target
from bulkstop.record.report import Report
from bulkstop.select.idfile import IdEntry
from bulkstop.select.selector import Selector

#: Outcomes of a stop run that mean "this run stopped it": what an undo starts.
UNDONE_OUTCOMES: Final = frozenset({Outcome.ACCEPTED, Outcome.STOPPED})


def stopped_by_run(result: ServerResult) -> bool:
    """This run's stop reached the server: accepted or stopped, or accepted (2xx) and then
    failed while waiting for SHUTOFF — an undo must start those too."""
    if result.outcome in UNDONE_OUTCOMES:
        return True
    status = result.http_status
    return result.outcome is Outcome.FAILED and status is not None and 200 <= status < 300


def resume_selector(
    state: JournalState, *, protect_tags: tuple[str, ...] = (), include_locked: bool = False
) -> Selector:
    """The servers the run has left, by id and project, under the run's protections.

    ``protect_tags`` adds protections; ``include_locked`` can only widen what was recorded.
    """
    recorded = state.selector
    return Selector(
        ids=tuple(
            IdEntry(id=t.id, project_id=t.scope or None, line=number, name=t.name)
            for number, t in enumerate(state.unfinished, 1)
        ),
        ids_source=state.path,
        exclude_tags=tuple(recorded.get("exclude_tags") or ()),
        protect_tags=tuple(dict.fromkeys((*(recorded.get("protect_tags") or ()), *protect_tags))),
        include_locked=bool(recorded.get("include_locked")) or include_locked,
        all_projects=bool(recorded.get("all_projects")),
    )


def recorded_projects(state: JournalState) -> tuple[str, ...]:
    """The projects the run acted in (empty with ``--all-projects``: the credentials decide)."""
    if state.selector.get("all_projects"):
        return ()
    return tuple(str(p) for p in state.selector.get("projects") or ())


def adopt(plan: Plan, state: JournalState, *, options: RunOptions) -> Plan:
    """Credit the interrupted run with the servers its requests evidently reached.

    A server with an intent but no outcome that the cloud now shows done or in progress was
    acted on by that request: ``accepted`` (or the finished outcome with ``--wait`` when it is
    done already), and no request is sent. A server whose batch job was recorded goes to
    the dispatcher whatever its state now (unless a protection excludes it): the batch
    dispatcher polls that job for its fate and sends nothing.
    """
    jobs = state.pending & state.jobs.keys()
    unknown = state.pending - jobs
    return dataclasses.replace(
        plan,
        entries=tuple(
            _adopted(e, options)
            if e.server.id in unknown
            else _polled(e)
            if e.server.id in jobs
            else e
            for e in plan.entries
        ),
    )


def _polled(entry: PlanEntry) -> PlanEntry:
    if entry.outcome is Outcome.EXCLUDED:
        return entry
    return dataclasses.replace(entry, outcome=None, reason=None)


def _adopted(entry: PlanEntry, options: RunOptions) -> PlanEntry:
    spec, server = options.spec, entry.server
    if spec.is_done(server):
        outcome = spec.finished if options.wait else Outcome.ACCEPTED
        now = spec.final_status
    elif spec.in_progress(server):
        outcome, now = Outcome.ACCEPTED, spec.task_state
    else:
        return entry
    reason = f"{now}: the request sent before the interruption went through"
    return dataclasses.replace(entry, outcome=outcome, reason=reason)


def merge(report: Report, state: JournalState) -> Report:
    """The whole run's report: the journal's final outcomes, then this part's results.

    ``requests`` counts this part's requests only (a killed part never reported its own).
    """
    fresh = {s.id: s for s in report.servers}
    servers = [_latest(t, state, fresh.pop(t.id, None)) for t in state.targets]
    servers.extend(fresh.values())
    return dataclasses.replace(
        report,
        started_at=state.started_at,
        servers=tuple(servers),
        selector=state.selector,
        options={**report.options, "resumed_from": state.path},
    )


def journal_report(state: JournalState) -> Report:
    """The report a journal implies, for a run that may have died without writing one.

    Servers sent a request without an outcome are ``failed`` (state unknown until resumed);
    servers never reached are ``not_attempted``.
    """
    finished = state.finished_at if state.ended else None
    if finished is None:
        finished = datetime.fromtimestamp(os.stat(state.path).st_mtime, UTC)
    return Report(
        action=state.action.verb,
        dry_run=False,
        started_at=state.started_at,
        finished_at=finished,
        servers=tuple(_latest(t, state, None) for t in state.targets),
        selector=state.selector,
        options=state.options,
        halted_by=state.halted_by if state.ended else INTERRUPTED,
    )


def _latest(target: Target, state: JournalState, fresh: ServerResult | None) -> ServerResult:
    """A target's result: the journal's outcome, else this part's, else what the journal says."""
    sent = target.id in state.pending
    if target.id in state.outcomes:
        return state.outcomes[target.id]
    if fresh is not None:
        # The interrupted part sent at least one request that left no outcome: count it.
        return dataclasses.replace(fresh, attempts=fresh.attempts + 1) if sent else fresh
    return ServerResult(
        id=target.id,
        project_id=target.project_id,
        name=target.name,
        outcome=Outcome.FAILED if sent else Outcome.NOT_ATTEMPTED,
        reason=(
            f"{INTERRUPTED} with the request in flight: state unknown (resume to find out)"
            if sent
            else INTERRUPTED
        ),
    )


def undo_selector(
    report: Report,
    *,
    source: str,
    protect_tags: tuple[str, ...] = (),
    include_locked: bool = False,
) -> tuple[Selector, tuple[str, ...]]:
    """The selector that undoes a stop run: exactly the servers it stopped, and their projects.

    Servers the run found already stopped are not among them (they were off before it).
    Raises InputError naming ``source`` for a report of anything but a real stop run.
    """
    if report.action != Action.STOP.verb or report.dry_run:
        kind = "dry-run" if report.dry_run else report.action
        raise InputError(f"a {kind} report: only a stop run can be undone", source=source)
    stopped = [s for s in report.servers if stopped_by_run(s)]
    all_projects = bool(report.selector.get("all_projects"))
    selector = Selector(
        ids=tuple(
            IdEntry(id=s.id, project_id=s.project_id or None, line=number, name=s.name)
            for number, s in enumerate(stopped, 1)
        ),
        ids_source=source,
        protect_tags=protect_tags,
        include_locked=include_locked,
        all_projects=all_projects,
    )
    projects = () if all_projects else tuple(sorted({s.project_id for s in stopped}))
    return selector, projects
