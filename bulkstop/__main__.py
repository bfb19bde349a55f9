"""``python -m bulkstop``: the same command line as the ``bulkstop`` script."""

from bulkstop.cli import run

run()
