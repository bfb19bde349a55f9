"""What a dispatcher works with: one :class:`DispatchContext` per execution of a plan."""

from __future__ import annotations

from dataclasses import dataclass

from bulkstop.cloud.base import ComputeAPI
from bulkstop.execute.budget import Clock, Sleep
from bulkstop.execute.gate import Gate
from bulkstop.execute.halt import Halting
from bulkstop.execute.ledger import Ledger
from bulkstop.execute.options import RunOptions
from bulkstop.execute.resolve import Plan, Reader


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchContext:
    """The run's parts a dispatcher uses; built by the engine for each plan it executes.

    * ``gate``: the only path to the cloud (slot, rate turn, retries, renewal); every request
      a dispatcher sends goes through :meth:`~bulkstop.execute.gate.Gate.call`.
    * ``reader``: reads servers (one GET each, or the listing) through the same gate.
    * ``halting``: may dispatch go on? (:meth:`~.halt.Halting.may_dispatch`), and the cancel
      scopes that a halt cuts short (:meth:`~.halt.Halting.waiting`).
    * ``ledger``: the one finish path, and the observer behind it (journal, progress):
      :meth:`~.ledger.Ledger.admit` before a server's first request,
      :meth:`~.ledger.Ledger.answered`, :meth:`~.ledger.Ledger.awaiting` and
      :meth:`~.ledger.Ledger.finish` after.
    * ``plan``: the plan being executed (its listing query and the page of each server).
    """

    compute: ComputeAPI
    gate: Gate
    reader: Reader
    halting: Halting
    ledger: Ledger
    options: RunOptions
    plan: Plan
    clock: Clock
    sleep: Sleep
