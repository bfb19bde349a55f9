"""The command-line side of recovery: ``--journal``, ``--resume`` and ``start --from-report``.

``--resume JOURNAL`` repeats the interrupted run's options: the command line of each part of
the run is recorded in its journal, re-read here, and every option not given now takes its
recorded value (the selection always comes from the journal itself).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import click
from click.core import ParameterSource

from bulkstop.cli.options import (
    SECRET_URL_FLAGS,
    SELECTION_FLAGS,
    default_report_path,
    refuse_selection,
)
from bulkstop.errors import UsageError
from bulkstop.models import INTERRUPTED, Action, Outcome
from bulkstop.record.journal import JournalState, journal_path_for, read_journal
from bulkstop.record.notify import redact_url
from bulkstop.record.report import Report, read_report
from bulkstop.record.resume import recorded_projects, resume_selector, undo_selector
from bulkstop.runner import RunRequest
from bulkstop.select.selector import Selector

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
    """The current command's arguments after its name (empty outside a RecordedCommand), with
    the URLs of :data:`~bulkstop.cli.options.SECRET_URL_FLAGS` redacted."""
    args = list(click.get_current_context().meta.get(_ARGV_KEY, ()))
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


def journal_path(action: Action, params: dict[str, Any], report_path: str) -> str:
    """The journal a run keeps: the resumed one, ``--journal``, or one beside the report."""
    if params["resume"]:
        return str(params["resume"])
    if params["journal_path"]:
        return str(params["journal_path"])
    return journal_path_for(default_report_path(action) if report_path == "-" else report_path)


def resume_hint(request: RunRequest, report: Report) -> str | None:
    """How to finish a halted run, or one that left servers ``not_attempted``, when it kept a
    journal."""
    if request.journal_path is None or request.options.dry_run:
        return None
    if report.halted_by is None and not any(
        s.outcome is Outcome.NOT_ATTEMPTED for s in report.servers
    ):
        return None
    path, verb = request.journal_path, request.options.action.verb
    halted = report.halted_by or ""
    if halted.startswith(("canary", "max-errors")):
        # The rail fired for a reason: finishing blindly would walk past it.
        return (
            f"journal: {path}\n{halted.split(':')[0]} halted the run: look at the failures "
            f"first (bulkstop report {request.report_path}); then, if it is safe, finish with: "
            f"bulkstop {verb} --resume {path}"
        )
    return f"journal: {path}\nto finish: bulkstop {verb} --resume {path}"


def unfinished_journal(action: Action, params: dict[str, Any]) -> str | None:
    """``--resume-unfinished``: the journal to continue, or None to start a new run.

    A journal continues when its run did not end (killed) or ended interrupted with servers
    left; then the selection options given now are dropped — the journal has the servers — and
    it must have been started by this same command line. A run that ended otherwise (finished,
    or halted by a rail) is over: this one starts afresh with its own rails.
    """
    if not (params["report_path"] or params["journal_path"]) or params["report_path"] == "-":
        raise UsageError(
            "--resume-unfinished needs a fixed --report PATH or --journal PATH to find the run by"
        )
    path = journal_path(action, params, params["report_path"] or "-")
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed:
    """A run to finish: its journal, the servers it has left, and where they live."""

    state: JournalState
    selector: Selector
    projects: tuple[str, ...]
    #: The recorded ``--stop-type`` (the ``stop`` command passes it outside ``params``).
    stop_type: str | None


def resume_run(action: Action, params: dict[str, Any]) -> Resumed:
    """Read ``--resume``'s journal and fill ``params`` in place with the recorded options.

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
    return Resumed(
        state=state,
        selector=resume_selector(
            state, protect_tags=params["protect_tags"], include_locked=params["include_locked"]
        ),
        projects=recorded_projects(state),
        stop_type=state.options.get("stop_type"),
    )


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


def from_report(params: dict[str, Any]) -> tuple[Selector, tuple[str, ...]]:
    """``start --from-report``: the servers that stop run stopped (see :func:`undo_selector`)."""
    path = str(params["from_report"])
    refuse_selection(params, source="--from-report")
    return undo_selector(
        read_report(path),
        source=path,
        protect_tags=params["protect_tags"],
        include_locked=params["include_locked"],
    )
