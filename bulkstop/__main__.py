"""``python -m bulkstop``: the same command line as the ``bulkstop`` script."""

from bulkstop.cli import main

main(prog_name="bulkstop")
