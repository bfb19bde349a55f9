"""Telling people how a run ended: a JSON document or a Slack/Mattermost message, POSTed.

Incoming-webhook URLs carry their secret in the path (``/services/T000/B000/XXXX``) or the query:
:func:`~bulkstop.redaction.redact_url` keeps only the scheme and host, and is what every message,
report and journal shows of them. Sending is bounded (:data:`TIMEOUT` per attempt,
:data:`ATTEMPTS` attempts) and never raises: a failure is returned as one line for the caller to
warn with.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final

from bulkstop.models import Outcome
from bulkstop.record.report import failure_text, server_to_dict
from bulkstop.record.runend import RunEnd
from bulkstop.redaction import redact_url

#: Seconds one POST may take.
TIMEOUT: Final = 10.0
#: POSTs per notification at most (a timeout, a reset, a 5xx or a 429 is tried again).
ATTEMPTS: Final = 3
#: Seconds before the second attempt; doubled before each later one.
FIRST_PAUSE: Final = 1.0
#: Failed servers listed in a JSON notification at most.
MAX_FAILED: Final = 100
#: Failed servers named in a Slack message at most.
MAX_FAILED_SHOWN: Final = 5
#: ``--notify-format`` values.
FORMATS: Final = ("json", "slack")


def json_payload(end: RunEnd, *, max_failed: int = MAX_FAILED) -> dict[str, Any]:
    """The report minus its servers (and timeline), plus the failed servers up to a cap."""
    payload: dict[str, Any] = {
        "event": "bulkstop.run",
        "action": end.action,
        "exit_code": end.exit_code,
        "error": end.error,
        "rail": end.rail,
        "report_path": end.report_path,
        "report": None,
        "failed": [],
        "failed_total": 0,
    }
    if end.report is not None:
        failed = end.report.tally.failures
        payload.update(
            report=end.report.summary_document(),
            failed=[server_to_dict(s) for s in failed[:max_failed]],
            failed_total=len(failed),
        )
    return payload


def slack_text(end: RunEnd, *, shown: int = MAX_FAILED_SHOWN) -> str:
    """A short message: counts per outcome, the halting rail, the first failures, the report."""
    report = end.report
    dry = " (dry run)" if report is not None and report.dry_run else ""
    lines = [f"*bulkstop {end.action}*{dry}: exit {end.exit_code}"]
    if end.error:
        lines.append(f"error: {end.error}")
    if report is not None:
        counts = report.outcomes
        parts = [f"{o.value} {counts[o.value]}" for o in Outcome if counts.get(o.value)]
        lines.append(f"{len(report.servers)} selected: {', '.join(parts) or 'nothing matched'}")
        if report.halted_by:
            lines.append(f"halted by {end.rail}: {report.halted_by}")
        failed = report.tally.failures
        for s in failed[:shown]:
            lines.append(f"• {s.id} {s.name or ''} {s.outcome.value}: {failure_text(s)}")
        if len(failed) > shown:
            lines.append(f"… and {len(failed) - shown} more failed")
    if end.report_path not in (None, "-"):
        lines.append(f"report: {end.report_path}")
    return "\n".join(lines)


def payload(end: RunEnd, fmt: str) -> dict[str, Any]:
    """The body for ``fmt`` (``json`` or ``slack``)."""
    if fmt == "slack":
        return {"text": slack_text(end)}
    return json_payload(end)


Sleep = Callable[[float], None]


def send(
    url: str,
    body: Mapping[str, Any],
    *,
    timeout: float = TIMEOUT,
    attempts: int = ATTEMPTS,
    pause: float = FIRST_PAUSE,
    sleep: Sleep = time.sleep,
) -> str | None:
    """POST ``body`` as JSON; None when delivered, else why not (with the URL redacted)."""
    data = json.dumps(body).encode()
    why = "not sent"
    for attempt in range(attempts):
        if attempt:
            sleep(pause * 2 ** (attempt - 1))
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
            return None
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            why = type(reason).__name__ if isinstance(reason, BaseException) else "unreachable"
    return f"notification to {redact_url(url)} failed after {attempt + 1} attempt(s): {why}"
