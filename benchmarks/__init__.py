"""bulkstop's benchmarks: throughput, rate fidelity, throttling, scale and peers, against the
mock cloud in its own process. Run them all with ``python -m benchmarks`` (see README.md)."""
