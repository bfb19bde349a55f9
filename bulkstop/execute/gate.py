"""One compute call under the run's rules: concurrency slot, project budget, retries, renewal.

:class:`Gate` is the only path from the engine to the :class:`~.cloud.base.ComputeAPI`: listing
pages, reads, actions and polls all go through :meth:`Gate.call`, so every request counts against
its project's ``--rate`` and the global ``--concurrency`` bound, and every request gets the same
retry rules. What an answer *means* is :func:`bulkstop.cloud.verdict.judge`'s to say; the gate
acts on the verdict's kind:

=====================================  ======================================================
verdict                                what happens
=====================================  ======================================================
ACCEPTED                               returned
THROTTLED (429, 413 overLimit, ...)    budget hold + slow-down, wait ``delay`` (the verdict's
                                       clamped Retry-After, or back off), retry; not an
                                       attempt failure; bounded by ``max_throttle_wait`` of
                                       wall time since the first throttle
TRANSIENT (5xx, no answer)             exponential backoff with jitter, up to ``max_attempts``
AUTH_EXPIRED (401)                     renew the project's token, retry once
anything else                          returned with its verdict: the caller acts on it
=====================================  ======================================================
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import anyio

from bulkstop.cloud.base import ComputeAPI
from bulkstop.cloud.verdict import Kind, Verdict, judge
from bulkstop.execute.backoff import DEFAULT_MAX_THROTTLE_WAIT, Backoff, throttle_delay
from bulkstop.execute.budget import Clock, ProjectBudget, Sleep
from bulkstop.models import Reply

#: Attempts per request on transient failures (``--max-attempts``).
DEFAULT_MAX_ATTEMPTS: Final = 5
#: What a call's result says before any answer came (a call cut short before sending).
_NO_REPLY: Final = Reply(status=None)
_NO_VERDICT: Final = judge(_NO_REPLY)

Request = Callable[[], Awaitable[Reply]]
#: Hears each answer of :meth:`Gate.call` as it arrives, with True while no attempt so far may
#: have been carried out (every answer was a throttle): the engine's record of what was sent.
ReplyHook = Callable[[Reply, bool], None]


class AnswerHook(Protocol):
    """Told of every answer: the project, whether it was a throttle, and the hold (seconds,
    the verdict's clamped ``Retry-After``) it put on the project (``Observer.answered``)."""

    def __call__(self, scope: str, *, throttled: bool, hold: float | None) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to try one request."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Backoff = field(default_factory=Backoff)
    max_throttle_wait: float = DEFAULT_MAX_THROTTLE_WAIT


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """The final answer to one logical request, and what it took to get it."""

    reply: Reply
    #: What the reply means.
    verdict: Verdict
    #: HTTP requests sent for it (retries and the retry after a token renewal included).
    attempts: int
    #: ``time.monotonic()`` when the first request was sent.
    started: float
    #: True when an earlier attempt got no answer: it may have reached the cloud.
    uncertain: bool = False
    #: Why we stopped retrying, when the reply is a transient error or throttle we gave up on.
    gave_up: str | None = None


class NotAdmitted(Exception):
    """Raised by :meth:`Gate.call` when ``admit`` refused the first request: nothing was sent.

    Never leaves the engine (it turns the server into ``not_attempted``).
    """


def throttled_for(budget: float) -> str:
    """The reason a request gave up after ``budget`` seconds of throttling."""
    if budget >= 60 and budget % 60 == 0:
        return f"throttled for {budget / 60:g} min"
    return f"throttled for {budget:g}s"


def _passed(now: float, until: float | None) -> bool:
    return until is not None and now >= until


class Gate:
    """Sends requests under the run's concurrency bound, project budgets and retry policy."""

    def __init__(
        self,
        *,
        compute: ComputeAPI,
        budgets: dict[str, ProjectBudget],
        concurrency: int,
        policy: RetryPolicy,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        on_answer: AnswerHook | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.compute = compute
        self.budgets = budgets
        self.policy = policy
        # fast_acquire: a free slot is taken without a round trip through the event loop (the
        # request that follows yields soon enough); cancellation is still honoured.
        self._slots = anyio.Semaphore(concurrency, fast_acquire=True)
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._on_answer = on_answer
        #: Requests sent, by project; the report shows it.
        self.sent: dict[str, int] = dict.fromkeys(budgets, 0)

    async def call(
        self,
        project_id: str,
        request: Request,
        *,
        admit: Callable[[], bool] | None = None,
        until: float | None = None,
        on_reply: ReplyHook | None = None,
    ) -> CallResult:
        """Send ``request`` for ``project_id`` until it gets a final answer or retries run out.

        ``admit`` is asked once a request has its slot and its turn, just before it is sent, as
        long as no attempt has been served (the first one, and retries after throttles): False
        raises :class:`NotAdmitted` — nothing of this request reached the cloud.

        ``until`` (on the gate's clock) is a deadline for sending: no wait goes past it, and a
        retry of an attempt that may have been served is not sent after it (the result then
        gives up). ``on_reply`` hears every answer as it comes (see :data:`ReplyHook`).
        """
        budget = self.budgets[project_id]
        attempts = failures = throttles = 0
        first_throttle: float | None = None
        uncertain = renewed = False
        started = 0.0
        reply, verdict = _NO_REPLY, _NO_VERDICT

        def result(gave_up: str | None = None) -> CallResult:
            return CallResult(
                reply=reply,
                verdict=verdict,
                attempts=attempts,
                started=started,
                uncertain=uncertain,
                gave_up=gave_up,
            )

        while True:
            # Until an attempt has reached the cloud (each one so far was throttled: not served),
            # the request is not dispatched yet, so a run halted meanwhile must not send it.
            unserved = attempts == throttles
            if not unserved and _passed(self._clock(), until):
                return result("deadline passed before a retry")
            sent = await self._send(project_id, budget, request, admit if unserved else None, until)
            if sent is None:  # the deadline passed while a retry waited for its turn
                return result("deadline passed before a retry")
            reply, sent_at = sent
            # From the first request on the wire: waiting for a slot or a turn is not its time.
            started = started if attempts else sent_at
            attempts += 1
            verdict = judge(reply)
            throttles += verdict.kind is Kind.THROTTLED
            # Two hooks at one spot, for two listeners with different reach: ``on_answer`` is the
            # gate's, told of every request (listings, reads, polls too) by project for the
            # run's observer (timeline: throttles, holds); ``on_reply`` is this call's, for the
            # ledger of one server's action (what may have been carried out).
            if self._on_answer is not None:
                throttled = verdict.kind is Kind.THROTTLED
                hold = verdict.delay if throttled else None
                self._on_answer(project_id, throttled=throttled, hold=hold)
            if on_reply is not None:
                on_reply(reply, attempts == throttles)
            if verdict.kind is Kind.ACCEPTED:
                budget.succeeded()
                return result()
            if verdict.kind is Kind.THROTTLED:
                budget.throttled(verdict.delay)
                now = self._clock()
                first_throttle = now if first_throttle is None else first_throttle
                wait = throttle_delay(verdict.delay, throttles, self.policy.backoff, self._rng)
                if now + wait - first_throttle > self.policy.max_throttle_wait:
                    return result(throttled_for(self.policy.max_throttle_wait))
                await self._pause(wait, until)
                continue
            if verdict.kind is Kind.AUTH_EXPIRED and not renewed:
                # Tokens can be revoked or expire early; one fresh token, one more try.
                await self.compute.renew_auth(project_id)
                renewed = True
                continue
            if verdict.kind is not Kind.TRANSIENT:
                return result()
            # No answer, or a gateway/server error: the request may have been carried out.
            uncertain = True
            failures += 1
            if failures >= self.policy.max_attempts:
                return result(f"gave up after {failures} failed attempts")
            asked = verdict.delay or 0.0
            await self._pause(max(asked, self.policy.backoff.delay(failures, self._rng)), until)

    async def _pause(self, wait: float, until: float | None) -> None:
        """Sleep ``wait`` seconds, or until ``until`` if that comes first."""
        if until is not None:
            wait = min(wait, until - self._clock())
        if wait > 0:
            await self._sleep(wait)

    async def _send(
        self,
        project_id: str,
        budget: ProjectBudget,
        request: Request,
        admit: Callable[[], bool] | None,
        until: float | None,
    ) -> tuple[Reply, float] | None:
        """One request once it has its slot and turn: the reply, and when it was sent.

        None when ``until`` passed first and nothing was sent (``admit`` decides for a request
        that was never served: it raises NotAdmitted then).
        """
        if budget.paced:
            # A Retry-After hold is waited out before queueing for the turn: a request whose
            # deadline comes first must not be stuck behind one that waits for the hold's end
            # (and no slot is held through a hold).
            await budget.wait_open(until)
            # One task per project waits for pacing while holding a slot; the rest wait their
            # turn without one, so a slow project cannot starve the others of slots.
            async with budget.turn:
                await self._slots.acquire()
                try:
                    await budget.pace(until)
                except BaseException:
                    self._slots.release()
                    raise
        else:
            while True:
                await budget.wait_open(until)
                await self._slots.acquire()
                # Past the deadline the hold no longer matters: admit or the deadline decides.
                if budget.is_open or _passed(self._clock(), until):
                    break
                # A throttle came in while we waited for the slot: honour its hold too.
                self._slots.release()
            budget.note_send()
        try:
            if admit is not None:
                if not admit():
                    raise NotAdmitted
            elif _passed(self._clock(), until):
                return None
            self.sent[project_id] += 1
            sent_at = self._clock()
            return await request(), sent_at
        finally:
            self._slots.release()
