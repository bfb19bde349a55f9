"""What bulkstop writes to stderr: plain text, or one JSON object per line (``--log-format json``).

In JSON mode every line is ``{"ts": "...Z", "level": "info", "event": "...", ...fields}`` — the
run's start with its selector and options, the plan, periodic progress with throttles per
project, each canary or wave batch, halts, the summary, warnings and errors (usage errors
included) — for Loki, ELK or journald. There is no live line and no prompt in JSON mode.

The format is chosen by ``--log-format`` (before the command or on it) or
``BULKSTOP_LOG_FORMAT``; :func:`detect` reads it from the raw command line so that even an
error in parsing that command line comes out in the chosen format.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Final, TextIO

import anyio
import click

from bulkstop.cli.progress import LOG_INTERVAL
from bulkstop.execute.engine import Observer, Plan
from bulkstop.models import ServerResult
from bulkstop.plan.rails import Batch
from bulkstop.redaction import redact
from bulkstop.timespec import format_time, utc_now

FORMATS: Final = ("text", "json")
ENVVAR: Final = "BULKSTOP_LOG_FORMAT"
FLAG: Final = "--log-format"

_format = {"current": "text"}
_SHOW_WARNING: Final = warnings.showwarning


def set_format(fmt: str) -> None:
    """Write ``text`` or ``json`` from now on (Python's warnings included)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    _format["current"] = fmt
    warnings.showwarning = _json_warning if fmt == "json" else _SHOW_WARNING


def _json_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A library's warning (openstacksdk's, say) as one JSON line too."""
    event("python_warning", level="warning", message=str(message), category=category.__name__)


def is_json() -> bool:
    """True when stderr carries JSON lines."""
    return _format["current"] == "json"


def detect(args: Sequence[str]) -> str:
    """The format a command line (or the environment) asks for; the last flag wins."""
    chosen = os.environ.get(ENVVAR, "text")
    for n, arg in enumerate(args):
        if arg == "--":
            break
        if arg == FLAG and n + 1 < len(args):
            chosen = args[n + 1]
        elif arg.startswith(FLAG + "="):
            chosen = arg.partition("=")[2]
    return chosen if chosen in FORMATS else "text"


def set_from_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """click callback of ``--log-format``."""
    if value is not None:
        set_format(value)
    return value


def log_format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-format text|json`` (also ``BULKSTOP_LOG_FORMAT``), on the group and commands."""
    return click.option(
        FLAG,
        "log_format",
        type=click.Choice(FORMATS),
        envvar=ENVVAR,
        show_envvar=True,
        expose_value=False,
        is_eager=True,
        callback=set_from_option,
        help="stderr as text (default) or one JSON object per line.",
    )(f)


def event(name: str, *, level: str = "info", **fields: Any) -> None:
    """A JSON line in JSON mode; nothing in text mode (the text says it differently)."""
    if is_json():
        record = {"ts": format_time(utc_now()), "level": level, "event": name, **fields}
        # Credentials in any URL a field carries are masked, as on every text line.
        sys.stderr.write(redact(json.dumps(record, default=str)) + "\n")
        sys.stderr.flush()


def say(name: str, text: str, *, level: str = "info", **fields: Any) -> None:
    """``text`` on stderr in text mode; in JSON mode, an event with ``message`` and ``fields``."""
    if is_json():
        event(name, level=level, message=text, **fields)
    else:
        click.echo(text, err=True)


class JsonProgress(Observer):
    """Progress as events: the plan, a status every :data:`LOG_INTERVAL` s, batches, the halt."""

    def __init__(
        self,
        *,
        verb: str,
        clock: Callable[[], float] = time.monotonic,
        interval: float = LOG_INTERVAL,
    ) -> None:
        self._verb = verb
        self._clock = clock
        self._interval = interval
        self._counts: collections.Counter[str] = collections.Counter()
        self._throttles: collections.Counter[str] = collections.Counter()
        #: Seconds of hold (Retry-After) the throttles asked for, per project.
        self._held: collections.defaultdict[str, float] = collections.defaultdict(float)
        self._total = self._done = 0
        self._next = clock() + interval

    def planned(self, plan: Plan) -> None:
        self._total = len(plan.entries) + len(plan.missing)
        per_project = collections.Counter(e.scope for e in plan.to_send)
        event(
            "plan",
            action=self._verb,
            selected=self._total,
            to_send=len(plan.to_send),
            not_found=len(plan.missing),
            to_send_by_project=dict(sorted(per_project.items())),
        )

    def finished(self, result: ServerResult) -> None:
        self._done += 1
        self._counts[result.outcome.value] += 1
        self.tick()

    def answered(self, scope: str, *, throttled: bool, hold: float | None) -> None:
        if throttled:
            self._throttles[scope] += 1
            if hold:
                self._held[scope] += hold

    def batch_started(self, batch: Batch) -> None:
        event("batch", wave=batch.wave, canary=batch.canary, size=len(batch.entries))

    def halted(self, reason: str) -> None:
        event("halt", level="warning", reason=reason)

    def tick(self) -> None:
        """Log the status if the interval has passed."""
        now = self._clock()
        if now >= self._next:
            self._next = now + self._interval
            self._log()

    async def ticker(self) -> None:
        """Log periodically until cancelled, even while no server finishes."""
        while True:
            await anyio.sleep(self._interval)
            self.tick()

    def close(self) -> None:
        """Log the final status."""
        self._log()

    def _log(self) -> None:
        event(
            "progress",
            done=self._done,
            total=self._total,
            outcomes=dict(sorted(self._counts.items())),
            throttles=dict(sorted(self._throttles.items())),
            held_seconds={p: round(s, 3) for p, s in sorted(self._held.items())},
        )
