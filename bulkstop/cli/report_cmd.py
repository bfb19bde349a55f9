"""``bulkstop report``: read a report (or a journal) back, as a summary, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

import click

from bulkstop.cli import log
from bulkstop.cli.console import fail
from bulkstop.cli.log import log_format_option
from bulkstop.cli.options import cli_words
from bulkstop.errors import BulkstopError, InputError
from bulkstop.record.journal import SCHEMA as JOURNAL_SCHEMA
from bulkstop.record.journal import read_journal
from bulkstop.record.plot import plot_run
from bulkstop.record.report import SUMMARY_TOP, Report, read_report, render_summary
from bulkstop.record.resume import journal_report

#: Columns of ``--format csv``, one row per server.
CSV_COLUMNS: Final = (
    "id",
    "project_id",
    "name",
    "outcome",
    "http_status",
    "attempts",
    "error_code",
    "error_message",
    "reason",
    "request_id",
    "elapsed",
)


@click.command("report")
@click.argument("path", metavar="REPORT|JOURNAL")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: the human summary; json: the report document; csv: one row per server.",
)
@click.option(
    "--plot",
    "plot_path",
    metavar="PNG|SVG",
    help="Also draw the run (calls/s per project against --rate, cumulative outcomes, "
    "throttles, batches, deadline, halt) to this image; needs bulkstop[plot].",
)
@log_format_option
def report(path: str, fmt: str, plot_path: str | None) -> None:
    """Show what a run did: outcomes, per project, the most common errors, the slowest requests.

    A journal (*.journal.jsonl) reads as the report its run implies, even when the run was
    killed before writing one: servers sent a request without an outcome show as failed
    (state unknown: resume to find out), the rest as not_attempted.

    \b
    Examples:
      bulkstop report bulkstop-report-20261128T020000Z.json
      bulkstop report run.json --format csv > run.csv
      bulkstop report run.journal.jsonl        # where did the killed run get to?
      bulkstop report run.json --plot run.png  # the run as a picture
    """
    try:
        text = _load_and_render(path, RENDERERS[fmt], table=fmt == "table")
        if plot_path is not None:
            plot_run(read_report(path), plot_path, source=path)
    except BulkstopError as exc:
        fail(exc)
    click.echo(cli_words(text) if fmt == "table" else text, nl=False)
    if plot_path is not None:
        log.say("plot", f"plot: {plot_path}", path=plot_path)


def _load_and_render(path: str, render: Callable[[Report], str], *, table: bool) -> str:
    if not _is_journal(path):
        return render(read_report(path))
    state = read_journal(path)
    text = render(journal_report(state))
    if not table:
        return text
    status = "ended" if state.ended else "did not end (killed or still running)"
    notes = [f"journal {path}: {state.parts} part(s), the last {status}"]
    if state.torn:
        notes.append("  a torn last line was ignored")
    if state.unfinished:
        notes.append(
            f"  {len(state.unfinished)} server(s) unfinished: "
            f"bulkstop {state.action.verb} --resume {path}"
        )
    return "\n".join(notes) + "\n" + text


def _is_journal(path: str) -> bool:
    """True when the file's first line is a journal header (a report is one JSON document)."""
    try:
        with Path(path).open("rb") as fh:
            first = fh.readline()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=path) from None
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("schema") == JOURNAL_SCHEMA


def render_table(report: Report) -> str:
    """The run's summary, then its slowest requests."""
    lines = [render_summary(report)]
    timed = sorted(
        (s for s in report.servers if s.elapsed is not None),
        key=lambda s: s.elapsed or 0.0,
        reverse=True,
    )[:SUMMARY_TOP]
    if timed:
        lines.append("  slowest requests:")
        lines.extend(
            f"    {s.elapsed or 0.0:>8.3f}s  {s.id}  {s.name or '-'}  {s.outcome.value}"
            f"{f' ({s.attempts} attempts)' if s.attempts > 1 else ''}"
            for s in timed
        )
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    """The report document (summaries recomputed from the servers)."""
    return json.dumps(report.to_dict(), indent=1) + "\n"


def render_csv(report: Report) -> str:
    """One row per server, with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in report.servers:
        writer.writerow(
            (
                s.id,
                s.project_id,
                s.name,
                s.outcome.value,
                s.http_status,
                s.attempts,
                s.error.code if s.error else None,
                s.error.message if s.error else None,
                s.reason,
                s.request_id,
                None if s.elapsed is None else round(s.elapsed, 4),
            )
        )
    return out.getvalue()


RENDERERS: Final[dict[str, Callable[[Report], str]]] = {
    "table": render_table,
    "json": render_json,
    "csv": render_csv,
}
