"""Unit tests of the request journal's read-back helpers."""

from __future__ import annotations

from bulkstop.mockcloud.journal import RequestRecord, accepted, peak


def record(t: float, **fields: object) -> RequestRecord:
    options: dict[str, object] = {
        "wall": 0.0,
        "method": "GET",
        "path": "/",
        "kind": "get",
        "status": 200,
    }
    options.update(fields)
    return RequestRecord(t=t, **options)  # type: ignore[arg-type]


class TestAccepted:
    """Counts 2xx actions per server, nothing else."""

    def test_counts_only_accepted_actions_of_the_kind(self) -> None:
        records = [
            record(0, kind="action", action="os-stop", server_id="a", status=202),
            record(1, kind="action", action="os-stop", server_id="a", status=409),
            record(2, kind="action", action="os-stop", server_id="b", status=204),
            record(3, kind="action", action="os-stop", server_id="b", status=None),
            record(4, kind="action", action="os-start", server_id="c", status=202),
            record(5, kind="get", server_id="d"),
        ]
        assert accepted(records) == {"a": 1, "b": 1}
        assert accepted(records, "os-start") == {"c": 1}


class TestPeak:
    """The busiest window, per project or overall."""

    def test_paced_client_peaks_at_its_rate(self) -> None:
        records = [record(i * 0.25, project_id="p") for i in range(20)]
        assert peak(records, project_id="p") == 4

    def test_burst_and_projects(self) -> None:
        records = [record(10.0, project_id="p") for _ in range(3)]
        records += [record(10.5, project_id="q"), record(11.0, project_id="p")]
        assert peak(records, project_id="p") == 3
        assert peak(records) == 4
        assert peak(records, project_id="p", window=1.01) == 4
        assert peak([], project_id="p") == 0
