"""The package version: the one place it is written (``pyproject.toml`` reads it from here).

A literal, not ``importlib.metadata.version()``: that scans every installed distribution and
pulls in the ``email`` package, ~50 ms of every run's start-up on a small machine.
"""

__version__ = "0.1.0"
