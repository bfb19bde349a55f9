"""A picture of a run from its report's ``timeline`` (``bulkstop report RUN.json --plot``).

Three panels over the run's seconds: compute calls per second per project against ``--rate``;
cumulative outcomes; throttle answers per project (each one puts its project on hold). Every
panel marks the canary and wave batches, the deadline and the halt. Uses matplotlib (the
``bulkstop[plot]`` extra), imported only here and only when drawing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bulkstop.errors import InputError, UsageError
from bulkstop.record.report import Report
from bulkstop.record.timeline import series
from bulkstop.timespec import parse_moment

#: Figure size in inches and resolution: 1200 x 900 pixels.
FIGSIZE: Final = (12.0, 9.0)
DPI: Final = 100
#: The panels' titles, top to bottom.
PANELS: Final = (
    "compute calls per second, per project",
    "cumulative outcomes",
    "throttle answers per second, per project (shaded: holds)",
)
MISSING: Final = "drawing a run needs matplotlib: pip install 'bulkstop[plot]'"


def plot_run(report: Report, path: str, *, source: str = "report") -> tuple[str, ...]:
    """Draw ``report`` to ``path`` (PNG or SVG by its suffix); returns the panels' titles.

    Raises UsageError when matplotlib is missing, InputError when the report has no timeline.
    """
    timeline = report.timeline
    if not timeline or not isinstance(timeline.get("projects"), dict):
        raise InputError(
            "the report has no timeline to draw (written by an older bulkstop, or a journal)",
            source=source,
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise UsageError(MISSING) from None

    projects: Mapping[str, Any] = timeline["projects"]
    events = [e for e in timeline.get("events") or () if isinstance(e, dict)]
    width = float(timeline.get("interval") or 1)
    length = 1 + max(
        [
            int(s)
            for p in projects.values()
            for counts in (p.get("calls", {}), p.get("throttles", {}), *p["outcomes"].values())
            for s in counts
        ]
        + [int(float(e.get("t", 0)) // width) for e in events]
        + [0]
    )
    axis = Axis(length=length, width=width)
    figure, axes = pyplot.subplots(3, 1, sharex=True, figsize=FIGSIZE, dpi=DPI)
    try:
        calls_ax, outcomes_ax, throttles_ax = axes
        _draw_calls(calls_ax, projects, axis, report.options.get("rate"))
        _draw_outcomes(outcomes_ax, projects, axis, report)
        _draw_throttles(throttles_ax, projects, axis)
        for ax, title in zip(axes, PANELS, strict=True):
            ax.set_title(title)
            _mark(ax, events, _deadline_second(report, timeline))
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper right", fontsize="small")
        calls_ax.set_ylabel("calls/s")
        outcomes_ax.set_ylabel("servers")
        throttles_ax.set_ylabel("throttles/s")
        throttles_ax.set_xlabel("seconds since the run started")
        halted = f", halted: {report.halted_by}" if report.halted_by else ""
        figure.suptitle(f"bulkstop {report.action}, {len(report.servers)} servers{halted}")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)
    return PANELS


@dataclass(frozen=True, slots=True, kw_only=True)
class Axis:
    """The time axis: ``length`` buckets of ``width`` seconds."""

    length: int
    width: float

    @property
    def starts(self) -> list[float]:
        """Each bucket's start, in seconds since the run started."""
        return [n * self.width for n in range(self.length)]

    def per_second(self, counts: Mapping[str, Any]) -> list[float]:
        """A sparse per-bucket count as a dense rate per second."""
        return [n / self.width for n in series(counts, length=self.length)]


def _draw_calls(ax: Any, projects: Mapping[str, Any], axis: Axis, rate: Any) -> None:
    for pid, data in projects.items():
        counts = axis.per_second(data.get("calls", {}))
        ax.plot(axis.starts, counts, drawstyle="steps-post", label=pid, alpha=0.8)
    if rate:
        ax.axhline(rate, color="red", linestyle="--", label=f"rate {rate}/s (per project)")


def _draw_outcomes(ax: Any, projects: Mapping[str, Any], axis: Axis, report: Report) -> None:
    length = axis.length
    totals: dict[str, list[int]] = {}
    for data in projects.values():
        for outcome, counts in data.get("outcomes", {}).items():
            dense = series(counts, length=length)
            before = totals.get(outcome, [0] * length)
            totals[outcome] = [a + b for a, b in zip(before, dense, strict=True)]
    # Servers a halt left without a request get their outcome only in the report: at the end.
    for outcome, n in report.outcomes.items():
        dense = totals.setdefault(outcome, [0] * length)
        dense[-1] += max(n - sum(dense), 0)
    for outcome, dense in sorted(totals.items()):
        ax.plot(axis.starts, list(itertools.accumulate(dense)), label=outcome)


def _draw_throttles(ax: Any, projects: Mapping[str, Any], axis: Axis) -> None:
    """Stacked bars per project; each hold shaded from its bucket for its Retry-After."""
    bottom = [0.0] * axis.length
    for pid, data in projects.items():
        counts = axis.per_second(data.get("throttles", {}))
        bars = ax.bar(
            axis.starts, counts, bottom=bottom, label=pid, align="edge", width=0.9 * axis.width
        )
        bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
        color = bars.patches[0].get_facecolor() if bars.patches else None
        for bucket, hold in (data.get("holds") or {}).items():
            start = int(bucket) * axis.width
            ax.axvspan(start, start + float(hold), alpha=0.15, color=color)


def _deadline_second(report: Report, timeline: Mapping[str, Any]) -> float | None:
    deadline = (report.options.get("rails") or {}).get("deadline")
    if not deadline or not timeline.get("started_at"):
        return None
    try:
        start = parse_moment(str(timeline["started_at"]))
        return (parse_moment(str(deadline)) - start).total_seconds()
    except ValueError:
        return None


def _mark(ax: Any, events: list[dict[str, Any]], deadline: float | None) -> None:
    """Vertical lines: batches (canary, waves), the deadline, the halt."""
    for e in events:
        t = float(e.get("t", 0))
        if e.get("event") == "batch":
            name = "canary" if e.get("canary") else f"wave {e.get('wave') or 'rest'}"
            ax.axvline(t, color="grey", linestyle=":")
            ax.annotate(
                name,
                (t, 1),
                xycoords=("data", "axes fraction"),
                fontsize="small",
                rotation=90,
                va="top",
            )
        elif e.get("event") == "halt":
            ax.axvline(t, color="red", linewidth=2)
            ax.annotate(
                f"halt: {str(e.get('reason'))[:40]}",
                (t, 0.5),
                xycoords=("data", "axes fraction"),
                color="red",
                fontsize="small",
            )
    if deadline is not None:
        ax.axvline(deadline, color="orange", linestyle="--")
        ax.annotate(
            "deadline",
            (deadline, 0.9),
            xycoords=("data", "axes fraction"),
            color="orange",
            fontsize="small",
        )
