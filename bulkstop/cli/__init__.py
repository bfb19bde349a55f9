"""The ``bulkstop`` command line: parse options, call the library, print, exit.

Exit codes: 0 nothing failed; 1 at least one server ``failed``/``not_found``; 2 bad usage or
input; 3 authentication, configuration or endpoint failure; 4 refused or stopped by a safety
rail; 130 interrupted. Errors are one line on stderr, never a traceback.

Modules: :mod:`.options` (the options ``stop`` and ``start`` share), :mod:`.act` (the
``stop`` and ``start`` commands and the run they drive), :mod:`.recovery` (``--journal``,
``--resume``, ``--from-report``), :mod:`.report_cmd` (``bulkstop report``).
"""

from __future__ import annotations

import click

from ..demo import demo
from ..mockcloud.cli import mock_cloud
from .act import start, stop
from .report_cmd import report


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="bulkstop")
def main() -> None:
    """Stop many OpenStack / Huawei Cloud servers at once: safely, fast, and on the record.

    \b
    Quick look:
      bulkstop demo                               rehearse against a built-in mock cloud
      bulkstop stop --tag nightly-stop --dry-run  what would be stopped
      bulkstop stop --tag nightly-stop --yes      stop them, report to ./bulkstop-report-*.json
    """


main.add_command(stop)
main.add_command(start)
main.add_command(report)
main.add_command(demo)
main.add_command(mock_cloud)
