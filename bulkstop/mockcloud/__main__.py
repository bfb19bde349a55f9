"""``python -m bulkstop.mockcloud``: the same command as ``bulkstop mock-cloud``."""

from .cli import mock_cloud

mock_cloud(prog_name="python -m bulkstop.mockcloud")
