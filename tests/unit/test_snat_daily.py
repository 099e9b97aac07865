"""handlers/snat_daily.py: the daily summary's numbers for one cluster and the series its
chart draws, from the public worlds' evidence and from hand-built backends."""

from __future__ import annotations

from handlers import snat_daily
from handlers.snat import Backend
from tests.helpers import world_evidence


def test_summary_of_the_shop_world():
    ev, kube = world_evidence("lb-snat-high-and-pressure.yaml")
    summary = snat_daily.summarize(ev, kube)
    assert summary["alias"] == "shop-prod"
    assert summary["peakUsedPct"] == 80.3
    assert summary["failedConnections"] == 0
    assert summary["topNodes"][:2] == [
        "aks-apps-42917306-vmss000003",
        "aks-apps-42917306-vmss000006",
    ]
    assert len(summary["topNodes"]) == 5
    assert summary["allocatedPerNode"] == 1024
    assert summary["nodes"] == 12
    assert summary["outboundIps"] == 1
    assert [f["code"] for f in summary["findings"]] == ["SNAT_HIGH"]
    assert summary["findings"][0]["fix"], "a cluster over 75 % carries its computed fix"
    assert [p["timeStamp"] for p in summary["series"]] == [
        "2026-11-26T12:00:00Z",
        "2026-11-26T18:00:00Z",
        "2026-11-27T00:00:00Z",
        "2026-11-27T06:00:00Z",
    ]
    assert summary["series"][-1] == {
        "timeStamp": "2026-11-27T06:00:00Z",
        "used": 3091,
        "allocated": 12 * 1024,
    }


def test_summary_of_the_natgw_world():
    ev, kube = world_evidence("natgw-managed-snat-failed.yaml")
    summary = snat_daily.summarize(ev, kube)
    assert summary["failedConnections"] == 2137
    assert summary["outboundIps"] == 2
    assert summary["topNodes"] == []
    assert summary["peakUsedPct"] == round(64_018 / (2 * 64_512) * 100, 1)
    assert [f["code"] for f in summary["findings"]] == ["NATGW_SNAT_FAILED", "NATGW_PACKET_DROPS"]
    assert len(summary["series"]) == 24


def backend(name: str, percents: dict[str, float], failed_at: dict[str, float] | None = None):
    return Backend(
        ip=f"10.0.0.{len(name)}",
        node=name,
        pool="apps",
        percents=percents,
        failed_at=failed_at or {},
        failed=sum((failed_at or {}).values()),
    )


def test_node_series_draws_the_busiest_and_every_failure_and_bands_the_rest():
    t1, t2 = "2026-12-06T00:00:00Z", "2026-12-06T06:00:00Z"
    busy = backend("busy", {t1: 90.04, t2: 70.0})
    failing = backend("failing", {t1: 10.0, t2: 12.0}, {t2: 3})
    calm = [backend(f"calm{n}", {t1: 20.0 + n, t2: 30.0 - n}) for n in range(3)]
    top, band = snat_daily.node_series([calm[0], failing, busy, calm[1], calm[2]], lines=1)
    assert [t["node"] for t in top] == ["busy", "failing"]
    assert top[0]["points"] == [
        {"timeStamp": t1, "percent": 90.0},
        {"timeStamp": t2, "percent": 70.0},
    ]
    assert top[1]["failed"] == [{"timeStamp": t2, "count": 3}]
    assert band == [
        {"timeStamp": t1, "low": 20.0, "high": 22.0, "nodes": 3},
        {"timeStamp": t2, "low": 28.0, "high": 30.0, "nodes": 3},
    ]


def test_metrics_not_read_give_no_numbers():
    for name in ("lb-snat-high-and-pressure.yaml", "natgw-managed-snat-failed.yaml"):
        ev, kube = world_evidence(name)
        ev.metrics = None
        summary = snat_daily.summarize(ev, kube)
        assert summary["findings"] == []
        assert summary["peakUsedPct"] is None
        assert summary["series"] == []
        assert summary["outboundIps"] and summary["alias"] == ev.alias
