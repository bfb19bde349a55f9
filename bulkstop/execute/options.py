"""How a run acts: :class:`RunOptions` and its named defaults (the CLI's defaults too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from bulkstop.execute.gate import RetryPolicy
from bulkstop.limits import DEFAULT_WAIT_TIMEOUT
from bulkstop.models import Action
from bulkstop.plan.eligibility import SPECS, ActionSpec
from bulkstop.plan.rails import Rails

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RATE",
    "DEFAULT_WAIT_TIMEOUT",
    "RunOptions",
]

#: ``rate``: compute API requests per second per project.
DEFAULT_RATE: Final = 10
#: ``concurrency``: requests in flight overall.
DEFAULT_CONCURRENCY: Final = 32
#: Seconds between two status polls of a project while waiting.
DEFAULT_POLL_INTERVAL: Final = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How a run acts. Defaults are the CLI's."""

    action: Action = Action.STOP
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    wait: bool = False
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    stop_type: str | None = None
    dry_run: bool = False
    rails: Rails = field(default_factory=Rails)

    @property
    def spec(self) -> ActionSpec:
        """What done / in progress / allowed mean for this run's action."""
        return SPECS[self.action]
