"""The daily SNAT chart plots what decides: each busy node against its own allocation."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from datetime import timedelta

import pytest

from bot import chart
from bot.cli import main
from tests.helpers import WORLDS

PNG = b"\x89PNG\r\n\x1a\n"


def summary_of(world: str) -> dict:
    """What `aks-egress snat-summary --world WORLD` prints."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["snat-summary", "--world", str(WORLDS / world)]) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def snat_high() -> dict:
    return summary_of("lb-snat-high-and-pressure.yaml")


def test_lines_are_the_busiest_nodes_share_of_their_own_ports(snat_high):
    spec = chart.spec(snat_high, "Europe/Amsterdam")
    (panel,) = spec.panels
    (cluster,) = snat_high["clusters"]
    assert spec.thresholds == (75.0, 100.0)
    assert len(panel.lines) == 3 and panel.band and panel.band.label == "other 9 nodes"
    busiest = panel.lines[0]
    assert busiest.label.startswith("aks-apps-")
    # The title's figure is the plotted peak, and the summary's: not the cluster-wide sum.
    plotted = max(p for line in panel.lines for p in line.percents)
    assert plotted == panel.peak == cluster["peakUsedPct"] > 75
    assert re.search(r"peak (\d+) %", panel.title).group(1) == f"{plotted:.0f}"
    summed = max(p["used"] / p["allocated"] * 100 for p in cluster["series"])
    assert summed < 30 < plotted  # what the old chart drew
    assert max(panel.band.high) < min(max(line.percents) for line in panel.lines)
    # Times are the channel's: Amsterdam is UTC+1 in November.
    assert busiest.times[0].utcoffset() == timedelta(hours=1)
    assert chart.render(spec).startswith(PNG)


def test_failed_connections_are_marked_on_their_node_at_their_time():
    data = summary_of("intermittent/snat-exhausted-failed-connections.yaml")
    spec = chart.spec(data, "UTC")
    (panel,) = spec.panels
    assert (
        panel.failures
        and sum(f.count for f in panel.failures) == data["clusters"][0]["failedConnections"]
    )
    lines = {line.label: dict(zip(line.times, line.percents, strict=True)) for line in panel.lines}
    for mark in panel.failures:
        assert lines[mark.node][mark.time] == mark.percent
    assert "failed connections" in panel.title


def test_several_clusters_share_one_figure(snat_high):
    two = {"clusters": [*snat_high["clusters"], {"alias": "canary", "error": "cannot read"}]}
    spec = chart.spec(two, "UTC")
    assert [p.alias for p in spec.panels] == ["shop-prod"]
    assert spec.notes == ("canary: cannot read",)
    assert chart.render(spec).startswith(PNG)


def test_a_nat_gateway_is_one_line_of_its_shared_ports_with_its_failures():
    data = summary_of("natgw-managed-snat-failed.yaml")
    (panel,) = chart.spec(data, "Europe/Dublin").panels
    (line,) = panel.lines
    assert "NAT gateway's ports" in panel.title and "2,137 failed" in panel.title
    assert sum(f.count for f in panel.failures) == data["clusters"][0]["failedConnections"]
    on_line = dict(zip(line.times, line.percents, strict=True))
    assert all(on_line[f.time] == f.percent for f in panel.failures)


def test_a_quiet_node_that_failed_is_drawn_so_its_failure_shows():
    from handlers.snat import Backend
    from handlers.snat_daily import node_series

    def node(name: str, percent: float, failed: float = 0) -> Backend:
        backend = Backend(
            ip=name, node=name, pool="apps", percents={"2026-11-27T06:00:00Z": percent}
        )
        if failed:
            backend.failed_at = {"2026-11-27T06:00:00Z": failed}
        return backend

    nodes = [node("a", 90), node("b", 80), node("c", 70), node("d", 60), node("e", 5, failed=3)]
    lines, band = node_series(nodes)
    assert [n["node"] for n in lines] == ["a", "b", "c", "e"]
    assert lines[-1]["failed"] == [{"timeStamp": "2026-11-27T06:00:00Z", "count": 3}]
    assert band == [{"timeStamp": "2026-11-27T06:00:00Z", "low": 60, "high": 60, "nodes": 1}]


def test_many_clusters_stay_readable_the_worst_as_panels_the_rest_named(snat_high):
    import copy

    clusters = []
    for index in range(12):
        twin = copy.deepcopy(snat_high["clusters"][0])
        twin["alias"] = f"shop-{index:02d}"
        for line in twin["nodeSeries"]:
            for point in line["points"]:
                point["percent"] = round(point["percent"] * (1 - index / 20), 1)
        clusters.append(twin)
    spec = chart.spec({"clusters": clusters[::-1]}, "UTC")
    assert [p.alias for p in spec.panels] == [f"shop-{i:02d}" for i in range(chart.MAX_PANELS)]
    (note,) = spec.notes
    assert note.startswith("4 more, none above ") and "shop-11" in note
