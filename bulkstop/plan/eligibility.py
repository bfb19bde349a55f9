"""Eligibility: which resolved servers get a request, and why the others do not.

Pure functions from a :class:`~bulkstop.models.Server` to a :class:`PlanEntry`. Nova accepts a
stop only from vm_state ``active`` or ``error`` with no task in progress and not locked (and a
start only from ``stopped``); we check the same preconditions before sending, so the common cases
cost no request at all. :class:`ActionSpec` holds everything that differs between stop and start,
so the engine has one code path for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bulkstop.models import (
    POWERING_OFF,
    POWERING_ON,
    STOPPABLE_VM_STATES,
    STOPPED_VM_STATE,
    Action,
    Outcome,
    Server,
)
from bulkstop.select.selector import Selector


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """What "done", "in progress" and "allowed" mean for one action."""

    action: Action
    #: vm_states Nova accepts the action from.
    allowed_vm_states: frozenset[str]
    #: task_state while the cloud carries the action out.
    task_state: str
    #: status the server reaches when the action has completed.
    final_status: str
    #: Outcome when the server was already where the action would take it.
    already: Outcome
    #: Outcome when --wait saw the server reach ``final_status``.
    finished: Outcome
    is_done: Callable[[Server], bool]

    def in_progress(self, server: Server) -> bool:
        """The cloud is carrying this action out right now."""
        return server.task_state == self.task_state


STOP: Final = ActionSpec(
    action=Action.STOP,
    allowed_vm_states=STOPPABLE_VM_STATES,
    task_state=POWERING_OFF,
    final_status="SHUTOFF",
    already=Outcome.ALREADY_STOPPED,
    finished=Outcome.STOPPED,
    is_done=lambda s: s.is_stopped,
)
START: Final = ActionSpec(
    action=Action.START,
    allowed_vm_states=frozenset({STOPPED_VM_STATE}),
    task_state=POWERING_ON,
    final_status="ACTIVE",
    already=Outcome.ALREADY_STARTED,
    finished=Outcome.STARTED,
    is_done=lambda s: s.vm_state == "active" and s.task_state is None,
)
SPECS: Final = {STOP.action: STOP, START.action: START}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanEntry:
    """A server, the project whose token/URL reaches it, and what the run will do with it:
    send a request (``outcome is None``) or record an outcome without one."""

    server: Server
    scope: str
    outcome: Outcome | None = None
    reason: str | None = None

    @property
    def sends(self) -> bool:
        """True when a request will be sent for this server."""
        return self.outcome is None


def classify(
    server: Server, *, scope: str, selector: Selector, spec: ActionSpec, now: datetime
) -> PlanEntry:
    """Decide what happens to a server that matched the selector, at time ``now``."""
    excluded = selector.exclusion(server, now=now)
    if excluded is not None:
        return PlanEntry(server=server, scope=scope, outcome=Outcome.EXCLUDED, reason=excluded)
    if spec.is_done(server):
        reason = f"already {spec.final_status}"
        return PlanEntry(server=server, scope=scope, outcome=spec.already, reason=reason)
    if spec.in_progress(server):
        reason = f"already {spec.task_state}"
        return PlanEntry(server=server, scope=scope, outcome=spec.already, reason=reason)
    blocker = _blocker(server, spec.allowed_vm_states, include_locked=selector.include_locked)
    outcome = Outcome.SKIPPED if blocker else None
    return PlanEntry(server=server, scope=scope, outcome=outcome, reason=blocker)


def _blocker(
    server: Server, allowed_vm_states: frozenset[str], *, include_locked: bool
) -> str | None:
    """Why Nova would refuse the action (409), or None."""
    if server.locked and not include_locked:
        return "locked"
    if server.task_state is not None:
        return f"task in progress: {server.task_state}"
    if server.vm_state not in allowed_vm_states:
        return f"vm_state {server.vm_state or 'unknown'}"
    return None
