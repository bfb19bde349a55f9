"""The end of every ``stop`` / ``start``: metrics, notifications — however the run ended.

:func:`after_run` wraps a command's body. Whatever way it leaves — the run's exit code, a
usage or cloud error, a refusal, a halt, an interruption — it builds one
:class:`~bulkstop.record.runend.RunEnd`, writes ``--metrics-file``, pushes to ``--pushgateway``
and POSTs to each ``--notify`` URL, then lets the exit go on unchanged. None of these can change
the exit code or lose the report: a failure is a warning on stderr (URLs redacted).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bulkstop.cli import log
from bulkstop.cli.console import message_of
from bulkstop.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_REFUSED, BulkstopError
from bulkstop.models import INTERRUPTED, Action
from bulkstop.record.notify import payload, send
from bulkstop.record.report import Report, read_report
from bulkstop.record.runend import RunEnd
from bulkstop.redaction import redact_url
from bulkstop.timespec import utc_now

#: The error of a run interrupted before anything was sent (no report: it never got that far).
INTERRUPTED_EARLY: Final = f"{INTERRUPTED}: nothing was sent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unattended:
    """The end-of-run settings of one command line."""

    metrics_file: str | None
    pushgateway: str | None
    labels: dict[str, str]
    notify: tuple[str, ...]
    notify_format: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Unattended:
        """Read the options of :func:`~bulkstop.cli.options.unattended_options`."""
        return cls(
            metrics_file=params["metrics_file"],
            pushgateway=params["pushgateway"],
            labels=dict(params["metrics_labels"]),
            notify=tuple(params["notify_urls"]),
            notify_format=params["notify_format"],
        )

    @property
    def active(self) -> bool:
        """True when something is to be done at the end."""
        return bool(self.metrics_file or self.pushgateway or self.notify)


@dataclass(slots=True)
class Ending:
    """What the command body knows by the time it exits (filled in as the run goes), and the
    one telling of how it ended."""

    action: Action
    settings: Unattended
    began: float
    began_wall: datetime
    report: Report | None = None
    report_path: str | None = None
    #: An error the body reported without raising it (a run the disk kept off the record).
    error: BulkstopError | None = None
    told: bool = False

    def finish(self, code: int, error: str | None) -> None:
        """Measure and tell, once, if anything is to be told."""
        if self.told or not self.settings.active:
            return
        self.told = True
        report = self.report
        if report is None and code == EXIT_REFUSED:
            report = _refused_report(self.report_path, since=self.began_wall)
        end = RunEnd(
            action=self.action.verb,
            exit_code=code,
            finished_at=utc_now(),
            duration=time.monotonic() - self.began,
            report=report,
            report_path=self.report_path,
            error=error,
        )
        # Ctrl-C while a slow webhook is told cuts the telling short, and only that: the exit
        # (the run's code, or the interruption being told) goes on unchanged.
        with contextlib.suppress(KeyboardInterrupt):
            tell(end, self.settings)

    def last_words(self, code: int, error: BulkstopError | None) -> None:
        """For a command that must leave at once (``os._exit`` skips :func:`after_run`'s
        ``finally``): an interruption before anything was sent (``error`` None), or an error
        with a Keystone thread abandoned. A second signal cuts it short."""
        self.finish(code, INTERRUPTED_EARLY if error is None else message_of(error))


@contextlib.contextmanager
def after_run(action: Action, params: dict[str, Any]) -> Iterator[Ending]:
    """Run the body; on its way out (``sys.exit`` included), measure and tell, then go on.

    The body hands :meth:`Ending.last_words` to :func:`~bulkstop.cli.console.run_async`, which
    calls it before leaving at once on an interruption.
    """
    ending = Ending(
        action=action,
        settings=Unattended.from_params(params),
        began=time.monotonic(),
        began_wall=utc_now(),
    )
    code, error = 0, None
    try:
        yield ending
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILURES
        error = _error_of(exc) if ending.error is None else message_of(ending.error)
        raise
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM outside the coroutine (an ID file that is a FIFO): the command
        # group says so and exits 130 (see :func:`~bulkstop.cli.console.interrupted`).
        code, error = EXIT_INTERRUPTED, INTERRUPTED_EARLY
        raise
    except BaseException as exc:
        # A bug of ours still ends the run: tell, then let the traceback out.
        code, error = EXIT_FAILURES, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        ending.finish(code, error)


def tell(end: RunEnd, settings: Unattended) -> None:
    """Write the metrics file, push, notify; each failure is one warning."""
    # prometheus_client is imported only by runs that export metrics (~50 ms at start-up).
    from bulkstop.record.metrics import RunMetrics, push_metrics, write_metrics_file

    metrics = RunMetrics(end=end, labels=settings.labels)
    if settings.metrics_file:
        try:
            write_metrics_file(settings.metrics_file, metrics)
        except (OSError, ValueError) as exc:
            _warn(f"cannot write metrics file {settings.metrics_file}: {exc}")
    if settings.pushgateway:
        try:
            push_metrics(settings.pushgateway, metrics)
        except (OSError, ValueError) as exc:
            why = type(getattr(exc, "reason", exc)).__name__
            _warn(f"cannot push metrics to {redact_url(settings.pushgateway)}: {why}")
    if settings.notify:
        body = payload(end, settings.notify_format)
        for url in settings.notify:
            problem = send(url, body)
            if problem is not None:
                _warn(problem)


def _warn(text: str) -> None:
    log.say("warning", f"bulkstop: warning: {text}", level="warning")


def _error_of(exc: SystemExit) -> str | None:
    """The error a ``sys.exit`` was called for: ``fail()`` exits while handling it."""
    cause: BaseException | None = exc.__context__
    while cause is not None and not isinstance(cause, BulkstopError):
        cause = cause.__context__
    return None if cause is None else message_of(cause)


def _refused_report(path: str | None, *, since: datetime) -> Report | None:
    """The report a refused run wrote (the runner writes one before refusing), if this run
    wrote it."""
    if path in (None, "-"):
        return None
    try:
        written = datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
        return read_report(path) if written >= since.replace(microsecond=0) else None
    except (OSError, BulkstopError):
        return None
