"""The ``bulkstop`` command line: parse options, call the library, print, exit.

Exit codes: 0 nothing failed; 1 at least one server ``failed``/``not_found``; 2 bad usage or
input; 3 authentication, configuration or endpoint failure; 4 refused or stopped by a safety
rail; 5 the report or journal could not be written; 130 interrupted. Errors are one line on
stderr, never a traceback.

Modules: :mod:`.options` (the options ``stop`` and ``start`` share), :mod:`.act` (the
``stop`` and ``start`` commands: options → one call of :mod:`bulkstop.api`), :mod:`.recovery`
(``--journal``, ``--resume``'s recorded command lines, ``--resume-unfinished``),
:mod:`.report_cmd` (``bulkstop report``), :mod:`.demo`, :mod:`.log` (``--log-format``),
:mod:`.unattended` (metrics and notifications at the end of a run). A
:class:`~bulkstop.errors.ParameterError` is shown with the flags instead of the library's
parameter names (:func:`.options.flag_of`).

Commands are imported when they are run, not when the group is built: ``bulkstop stop`` never
imports the mock cloud (``aiohttp.web`` and the whole server) that ``demo`` and ``mock-cloud`` need.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn

import click

from bulkstop.cli import log
from bulkstop.cli.console import exit_now, interrupted

#: Command name → ``module:attribute`` of its click command, imported on first use.
COMMANDS: Final = {
    "stop": "bulkstop.cli.act:stop",
    "start": "bulkstop.cli.act:start",
    "report": "bulkstop.cli.report_cmd:report",
    "demo": "bulkstop.cli.demo:demo",
    "mock-cloud": "bulkstop.mockcloud.cli:mock_cloud",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported only when they are looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's main; with ``--log-format json``, its usage errors are JSON lines too."""
        argv = list(sys.argv[1:] if args is None else args)
        log.set_format(log.detect(argv))
        if not (standalone_mode and log.is_json()):
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            log.event(
                "usage_error", level="error", message=exc.format_message(), exit_code=exc.exit_code
            )
            sys.exit(exc.exit_code)
        except click.Abort:
            log.event("aborted", level="error", message="aborted", exit_code=1)
            sys.exit(1)
        sys.exit(0)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; Ctrl-C before a run owns the signals (an ID file that is a FIFO
        waiting for its writer, a prompt) is exit 130 and one line, not click's "Aborted!"."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="bulkstop")
@log.log_format_option
def main() -> None:
    """Stop many OpenStack / Huawei Cloud servers at once: safely, fast, and on the record.

    \b
    Quick look:
      bulkstop demo                               rehearse against a built-in mock cloud
      bulkstop stop --tag nightly-stop --dry-run  what would be stopped
      bulkstop stop --tag nightly-stop --yes      stop them, report to ./bulkstop-report-*.json

    \b
    Shell completion (bash; zsh and fish alike with zsh_source / fish_source):
      eval "$(_BULKSTOP_COMPLETE=bash_source bulkstop)"
    """


def run() -> NoReturn:
    """The ``bulkstop`` script and ``python -m bulkstop``: :func:`main`, then
    :func:`~bulkstop.cli.console.exit_now` (tests call :func:`main` through click's runner)."""
    try:
        main(prog_name="bulkstop")
    except SystemExit as done:
        exit_now(done.code)
    exit_now(0)
