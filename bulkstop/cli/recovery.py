"""The command-line side of recovery: ``--journal``, ``--resume`` and ``--resume-unfinished``
(resuming and undoing themselves are :func:`bulkstop.api.resume` and :func:`bulkstop.api.undo`).

``--resume JOURNAL`` repeats the interrupted run's options as they were typed: the command line
of each part of the run is recorded in its journal, re-read here, and every option not given
now takes its recorded value (so a relative ``--deadline 25m`` is again 25 minutes); the
selection always comes from the journal itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

import click
from click.core import ParameterSource

from bulkstop.api import RunResult
from bulkstop.cli.options import SECRET_URL_FLAGS, SELECTION_FLAGS, refuse_selection
from bulkstop.errors import UsageError
from bulkstop.models import INTERRUPTED, Action
from bulkstop.record.journal import JournalState, journal_path_for, read_journal
from bulkstop.redaction import redact, redact_url

F = TypeVar("F", bound=Callable[..., Any])

#: Where :class:`RecordedCommand` keeps the command line in ``click.Context.meta``.
_ARGV_KEY: Final = "bulkstop.argv"
#: Options a resumed run never takes from the record: the selection, the journal itself, and
#: the ones that must be chosen anew (confirmation, output, a dry run).
_NOT_REPEATED: Final = frozenset(
    {
        *SELECTION_FLAGS,
        "protect_tags",
        "include_locked",
        "plan_max_age",
        "dry_run",
        "yes",
        "quiet",
        "report_path",
        "journal_path",
        "resume",
        "resume_unfinished",
        # Chosen anew each time: a resumed run notifies only if the URL is given again (the
        # journal holds it redacted), and logs as it is told now.
        "notify_urls",
        "pushgateway",
    }
)


class RecordedCommand(click.Command):
    """A click command that keeps its command line, for the journal (see :func:`command_line`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV_KEY] = tuple(args)
        return super().parse_args(ctx, args)


def command_line() -> tuple[str, ...]:
    """The current command's arguments after its name (empty outside a RecordedCommand), as the
    journal records them: credentials in any URL (``--endpoint``) masked, and the URLs of
    :data:`~bulkstop.cli.options.SECRET_URL_FLAGS` cut to their host."""
    args = [redact(arg) for arg in click.get_current_context().meta.get(_ARGV_KEY, ())]
    for n, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag not in SECRET_URL_FLAGS:
            continue
        if eq:
            args[n] = f"{flag}={redact_url(value)}"
        elif n + 1 < len(args):
            args[n + 1] = redact_url(args[n + 1])
    return tuple(args)


def recovery_options(f: F) -> F:
    """``--journal``, ``--resume`` and ``--resume-unfinished``, shared by ``stop`` and ``start``."""
    f = click.option(
        "--resume-unfinished",
        is_flag=True,
        help="For schedulers that retry: if the journal at --journal (or beside --report) "
        "belongs to a run that did not finish (killed, or interrupted with servers left), "
        "continue that run as --resume would; otherwise start this one.",
    )(f)
    f = click.option(
        "--resume",
        metavar="JOURNAL",
        help="Finish the interrupted run recorded in JOURNAL: servers with a final outcome "
        "are left alone, servers sent a request are re-read first, the rest are sent; same "
        "servers and options (unless given now); the report covers the whole run.",
    )(f)
    return click.option(
        "--journal",
        "journal_path",
        metavar="PATH",
        help="Where to record the run as it happens, for --resume (default: beside the "
        "report, named after it with .journal.jsonl).",
    )(f)


def resume_hint(result: RunResult, verb: str) -> str | None:
    """How to finish a halted run, or one that left servers ``not_attempted``, when it kept a
    journal."""
    if not result.resumable:
        return None
    path, halted = result.journal_path, result.report.halted_by or ""
    if halted.startswith(("canary", "max-errors")):
        # The rail fired for a reason: finishing blindly would walk past it.
        return (
            f"journal: {path}\n{halted.split(':')[0]} halted the run: look at the failures "
            f"first (bulkstop report {result.report_path}); then, if it is safe, finish with: "
            f"bulkstop {verb} --resume {path}"
        )
    return f"journal: {path}\nto finish: bulkstop {verb} --resume {path}"


def unfinished_journal(params: dict[str, Any]) -> str | None:
    """``--resume-unfinished``: the journal to continue (for ``--resume``), or None to start a
    new run.

    A journal continues when its run did not end (killed) or ended interrupted with servers
    left; then the selection options given now are dropped — the journal has the servers — and
    it must have been started by this same command line. A run that ended otherwise (finished,
    or halted by a rail) is over: this one starts afresh with its own rails.
    """
    report, journal = params["report_path"], params["journal_path"]
    if not (report or journal) or report == "-":
        raise UsageError(
            "--resume-unfinished needs a fixed --report PATH or --journal PATH to find the run by"
        )
    path = str(journal or journal_path_for(report))
    if not os.path.exists(path):
        return None
    state = read_journal(path)
    if state.ended and not (state.halted_by == INTERRUPTED and state.unfinished):
        return None
    now = command_line()
    if state.commands and state.commands[0] != now:
        raise UsageError(
            f"{path} was started by another command line ({' '.join(state.commands[0])}): "
            f"continue it with --resume {path}, or choose another --report"
        )
    for name in (*SELECTION_FLAGS, "journal_path"):
        value = params.get(name)
        params[name] = () if isinstance(value, tuple) else (False if value is True else None)
    return path


def read_resumed(action: Action, params: dict[str, Any]) -> JournalState:
    """Read ``--resume``'s journal and fill ``params`` in place with the options recorded on
    its command lines (and its report path), for the options not given now.

    Raises UsageError for options that cannot go with ``--resume``, a journal of another
    action, or a record that cannot be re-read; InputError for a file that is not a journal.
    """
    path = str(params["resume"])
    refuse_selection(
        params, source="--resume", extra={"dry_run": "--dry-run", "journal_path": "--journal"}
    )
    state = read_journal(path)
    if state.action is not action:
        raise UsageError(
            f"{path} is the journal of a {state.action.verb} run: "
            f"continue it with bulkstop {state.action.verb} --resume"
        )
    params.update(_recorded_options(state, params))
    if not params["report_path"]:
        params["report_path"] = state.report_path
    return state


def _recorded_options(state: JournalState, params: dict[str, Any]) -> dict[str, Any]:
    """The options given on the recorded command lines (later parts win) and not given now."""
    ctx = click.get_current_context()
    recorded: dict[str, Any] = {}
    for args in state.commands:
        try:
            part = ctx.command.make_context(ctx.info_name, list(args))
        except click.ClickException as exc:
            raise UsageError(
                f"cannot re-read the options recorded in {state.path} ({' '.join(args)}): "
                f"{exc.format_message()}"
            ) from None
        recorded.update(
            (name, value)
            for name, value in part.params.items()
            if part.get_parameter_source(name) is ParameterSource.COMMANDLINE
        )
    return {
        name: value
        for name, value in recorded.items()
        if name in params
        and name not in _NOT_REPEATED
        and ctx.get_parameter_source(name) in (None, ParameterSource.DEFAULT)
    }
