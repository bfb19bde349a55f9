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
THROTTLED (429, 413 overLimit, ...)    budget hold + slow-down, wait ``delay`` (or back
                                       off), retry; not an attempt failure; bounded by
                                       ``max_throttle_wait`` in total
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

Request = Callable[[], Awaitable[Reply]]


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
        self._slots = anyio.Semaphore(concurrency)
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._on_answer = on_answer
        #: Requests sent, by project; the report shows it.
        self.sent: dict[str, int] = dict.fromkeys(budgets, 0)

    async def call(
        self, project_id: str, request: Request, *, admit: Callable[[], bool] | None = None
    ) -> CallResult:
        """Send ``request`` for ``project_id`` until it gets a final answer or retries run out.

        ``admit`` is asked once a request has its slot and its turn, just before it is sent, as
        long as no attempt has been served (the first one, and retries after throttles): False
        raises :class:`NotAdmitted` — nothing of this request reached the cloud.
        """
        budget = self.budgets[project_id]
        attempts = failures = throttles = 0
        throttle_waited = 0.0
        uncertain = renewed = False
        started = 0.0
        while True:
            # Until an attempt has reached the cloud (each one so far was throttled: not served),
            # the request is not dispatched yet, so a run halted meanwhile must not send it.
            reply, sent_at = await self._send(
                project_id, budget, request, admit if attempts == throttles else None
            )
            # From the first request on the wire: waiting for a slot or a turn is not its time.
            started = started if attempts else sent_at
            attempts += 1
            verdict = judge(reply)
            if self._on_answer is not None:
                throttled = verdict.kind is Kind.THROTTLED
                hold = verdict.delay if throttled else None
                self._on_answer(project_id, throttled=throttled, hold=hold)
            if verdict.kind is Kind.ACCEPTED:
                budget.succeeded()
                return CallResult(
                    reply=reply,
                    verdict=verdict,
                    attempts=attempts,
                    started=started,
                    uncertain=uncertain,
                )
            if verdict.kind is Kind.THROTTLED:
                budget.throttled(verdict.delay)
                throttles += 1
                wait = throttle_delay(verdict.delay, throttles, self.policy.backoff, self._rng)
                if throttle_waited + wait > self.policy.max_throttle_wait:
                    return CallResult(
                        reply=reply,
                        verdict=verdict,
                        attempts=attempts,
                        started=started,
                        uncertain=uncertain,
                        gave_up=f"still throttled after waiting {throttle_waited:.0f}s",
                    )
                throttle_waited += wait
                await self._sleep(wait)
                continue
            if verdict.kind is Kind.AUTH_EXPIRED and not renewed:
                # Tokens can be revoked or expire early; one fresh token, one more try.
                await self.compute.renew_auth(project_id)
                renewed = True
                continue
            if verdict.kind is not Kind.TRANSIENT:
                return CallResult(
                    reply=reply,
                    verdict=verdict,
                    attempts=attempts,
                    started=started,
                    uncertain=uncertain,
                )
            # No answer, or a gateway/server error: the request may have been carried out.
            uncertain = True
            failures += 1
            if failures >= self.policy.max_attempts:
                return CallResult(
                    reply=reply,
                    verdict=verdict,
                    attempts=attempts,
                    started=started,
                    uncertain=uncertain,
                    gave_up=f"gave up after {failures} failed attempts",
                )
            wait = verdict.delay or 0.0
            await self._sleep(max(wait, self.policy.backoff.delay(failures, self._rng)))

    async def _send(
        self,
        project_id: str,
        budget: ProjectBudget,
        request: Request,
        admit: Callable[[], bool] | None,
    ) -> tuple[Reply, float]:
        """One request once it has its slot and turn: the reply, and when it was sent."""
        if budget.paced:
            # One task per project waits for pacing while holding a slot; the rest wait their
            # turn without one, so a slow project cannot starve the others of slots.
            async with budget.turn:
                await self._slots.acquire()
                try:
                    await budget.pace()
                except BaseException:
                    self._slots.release()
                    raise
        else:
            while True:
                await budget.wait_open()
                await self._slots.acquire()
                if budget.is_open:
                    break
                # A throttle came in while we waited for the slot: honour its hold too.
                self._slots.release()
            budget.note_send()
        try:
            if admit is not None and not admit():
                raise NotAdmitted
            self.sent[project_id] += 1
            sent_at = self._clock()
            return await request(), sent_at
        finally:
            self._slots.release()
