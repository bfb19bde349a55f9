"""The run's metrics in Prometheus' format: for node_exporter's textfile collector, or a push.

Everything is built with ``prometheus_client`` (nothing of the text format is written here).
Every sample carries the ``action`` label and the operator's ``--metrics-label`` pairs:

==========================================  ==================================================
metric                                      value
==========================================  ==================================================
``bulkstop_servers{project,outcome}``       servers that ended with each outcome
``bulkstop_requests{project}``              compute API requests sent
``bulkstop_throttled_answers{project}``     throttle answers (429, overLimit, APIG.0308)
``bulkstop_retries{project}``               action requests sent again (attempts beyond one)
``bulkstop_run_duration_seconds``           from the command's start to its end
``bulkstop_halted{rail}``                   1 with the rail that halted or refused the run, else
                                            0 with ``rail="none"``
``bulkstop_exit_code``                      the command's exit code (0, 1, 2, 3, 4, 5, 130)
``bulkstop_last_run_timestamp_seconds``     when this run ended
``bulkstop_last_success_timestamp_seconds`` when the last run that exited 0 ended
==========================================  ==================================================

A run that does not exit 0 keeps the previous success time: the file's is read back before it
is replaced, and a push (``pushadd``, which replaces only the metrics it sends) leaves it out.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, pushadd_to_gateway, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from bulkstop.errors import EXIT_OK
from bulkstop.record.runend import RunEnd

#: The Pushgateway job name.
JOB: Final = "bulkstop"
#: Seconds a push may take.
PUSH_TIMEOUT: Final = 10.0
LAST_SUCCESS: Final = "bulkstop_last_success_timestamp_seconds"


# eq=False: a registry keys its collectors by identity (a report is not hashable).
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RunMetrics:
    """A run's metrics, ready to be collected by a ``prometheus_client`` registry."""

    end: RunEnd
    #: Extra labels on every sample (``--metrics-label KEY=VALUE``).
    labels: Mapping[str, str] = field(default_factory=dict)
    #: The success time to report when this run is not a success (carried over), or None.
    previous_success: float | None = None

    @property
    def constant_labels(self) -> dict[str, str]:
        """The labels every sample carries (also the Pushgateway's grouping key)."""
        return {"action": self.end.action, **self.labels}

    def collect(self) -> Iterator[Metric]:
        """The metric families (the ``prometheus_client`` Collector protocol)."""
        const = self.constant_labels
        names, values = list(const), list(const.values())

        def family(name: str, doc: str, *extra: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*names, *extra])

        end, report = self.end, self.end.report
        servers = family("bulkstop_servers", "Servers by final outcome.", "project", "outcome")
        requests = family("bulkstop_requests", "Compute API requests sent.", "project")
        throttles = family(
            "bulkstop_throttled_answers", "Throttle answers from the cloud.", "project"
        )
        retries = family("bulkstop_retries", "Action requests sent again.", "project")
        if report is not None:
            per: collections.Counter[tuple[str, str]] = collections.Counter()
            again: collections.Counter[str] = collections.Counter()
            for s in report.servers:
                per[s.project_id, s.outcome.value] += 1
                again[s.project_id] += max(s.attempts - 1, 0)
            for (project, outcome), n in sorted(per.items()):
                servers.add_metric([*values, project, outcome], n)
            for project, n in sorted(report.requests.items()):
                requests.add_metric([*values, project], n)
            for project, n in sorted(again.items()):
                retries.add_metric([*values, project], n)
            for project, n in sorted(_throttles(report.timeline).items()):
                throttles.add_metric([*values, project], n)
        yield from (servers, requests, throttles, retries)

        duration = family("bulkstop_run_duration_seconds", "Seconds the run took.")
        duration.add_metric(values, end.duration)
        halted = family("bulkstop_halted", "1 if a rail halted or refused the run.", "rail")
        halted.add_metric([*values, end.rail], 0 if end.rail == "none" else 1)
        code = family("bulkstop_exit_code", "The exit code of the run.")
        code.add_metric(values, end.exit_code)
        last = family("bulkstop_last_run_timestamp_seconds", "When the last run ended.")
        last.add_metric(values, end.finished_at.timestamp())
        yield from (duration, halted, code, last)

        success = self.success_time
        if success is not None:
            ok = family(LAST_SUCCESS, "When the last run that exited 0 ended.")
            ok.add_metric(values, success)
            yield ok

    @property
    def success_time(self) -> float | None:
        """This run's end if it succeeded, else the carried-over success time."""
        if self.end.exit_code == EXIT_OK:
            return self.end.finished_at.timestamp()
        return self.previous_success

    def registry(self) -> CollectorRegistry:
        """A registry holding only these metrics."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


def _throttles(timeline: Mapping[str, object] | None) -> dict[str, int]:
    projects = (timeline or {}).get("projects")
    if not isinstance(projects, dict):
        return {}
    return {
        pid: sum(int(n) for n in (data.get("throttles") or {}).values())
        for pid, data in projects.items()
        if isinstance(data, dict)
    }


def previous_success(path: str, labels: Mapping[str, str]) -> float | None:
    """The success time in an existing metrics file for these labels, or None (no file, none
    in it, or not readable as Prometheus text)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for metric in text_string_to_metric_families(text):
            for sample in metric.samples:
                if sample.name == LAST_SUCCESS and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def write_metrics_file(path: str, metrics: RunMetrics) -> None:
    """Write the metrics atomically (temporary file + rename) for the textfile collector.

    The previous success time in ``path`` is carried over when this run is not a success.
    Raises OSError when the file cannot be written.
    """
    if metrics.end.exit_code != EXIT_OK and metrics.previous_success is None:
        carried = previous_success(path, metrics.constant_labels)
        metrics = RunMetrics(end=metrics.end, labels=metrics.labels, previous_success=carried)
    write_to_textfile(os.fspath(path), metrics.registry())


def push_metrics(gateway: str, metrics: RunMetrics, *, timeout: float = PUSH_TIMEOUT) -> None:
    """Push with ``pushadd`` (job ``bulkstop``, grouped by the constant labels): metrics this
    run does not send — the success time of a failed run — keep their previous value.

    Raises OSError (URLError included) when the gateway cannot be reached or refuses.
    """
    carried = RunMetrics(end=metrics.end, labels=metrics.labels, previous_success=None)
    pushadd_to_gateway(
        gateway,
        job=JOB,
        registry=carried.registry(),
        grouping_key=carried.constant_labels,
        timeout=timeout,
    )
