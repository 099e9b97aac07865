"""The intermittent worlds (tests/worlds/intermittent/) through the real CLI, in-process.

Each entry of intermittent/expected.yaml runs `aks-egress check ALIAS [--endpoint URL]
[--mode MODE] --world FILE --json`, or `aks-egress snat ALIAS --world FILE --json` when it
says `command: snat`, and must give its rootCause, mustInclude and none of mustExclude.
Further tests recompute the SNAT fixes from each world's own numbers with snat.py's pure
helpers, check the dynamic-allocation band against Azure's documented table, and check
the evidence that says which SNAT_NO_DATA and which Advisor recommendations.

"""

from __future__ import annotations

import json
import math
from functools import cache

import pytest
import yaml

from bot import armid
from bot.cli import main
from bot.codes import CATALOG
from bot.collect.probe import ProbeSettings
from bot.engine import CheckRequest, Engine
from bot.evidence import surge_nodes
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from handlers import snat_capacity
from tests.helpers import WORLDS, assert_expected, expected_worlds

INTERMITTENT = WORLDS / "intermittent"
EXPECTED = expected_worlds(INTERMITTENT / "expected.yaml")

# Checklist steps each way of running may report (finding-codes.md, bot/codes.py steps).
PERSISTENT_STEPS = {"route", "nsg", "firewall", "egress", "probe"}
INTERMITTENT_STEPS = {"snat", "resources", "disk", "advisor"}
SNAT_COMMAND_STEPS = {"cluster", "snat", "access"}  # SNAT/NATGW findings plus cluster info

# Azure's default allocation (allocatedOutboundPorts 0): largest pool size → ports per IP.
DOCUMENTED_BANDS = ((50, 1024), (100, 512), (200, 256), (400, 128), (800, 64), (1000, 32))

# Worlds whose SNAT fix is recomputed here (managed outbound IPs, a load-balancer change).
FIX_WORLDS = sorted(
    w
    for w in EXPECTED
    if w.startswith(("snat-band-", "snat-high-fixed-", "snat-exhausted-fixed-"))
    and "prefix" not in w
)
BAND_WORLDS = sorted(w for w in EXPECTED if w.startswith("snat-band-"))


def _param(world: str):
    return pytest.param(world, id=world.removesuffix(".yaml"))


@cache
def _world(world: str) -> dict:
    return yaml.safe_load((INTERMITTENT / world).read_text())


_REPORTS: dict[str, tuple[int, dict | str]] = {}


@pytest.fixture
def report(run_check, capsys):
    """The CLI's JSON report for a world as its expected.yaml entry runs it (memoized)."""

    def run(world: str) -> dict:
        if world not in _REPORTS:
            spec = EXPECTED[world]
            path = str(INTERMITTENT / world)
            if spec.get("command") == "snat":
                code = main(["snat", spec["alias"], "--world", path, "--json"])
                out, err = capsys.readouterr()
                _REPORTS[world] = (code, json.loads(out) if code == 0 else err)
            else:
                argv = [spec["alias"], "--world", path, "--mode", spec.get("mode") or "all"]
                if spec.get("endpoint"):
                    argv += ["--endpoint", spec["endpoint"]]
                _REPORTS[world] = run_check(*argv)
        code, result = _REPORTS[world]
        assert code == 0, result
        assert isinstance(result, dict)
        return result

    return run


def _finding(result: dict, code: str) -> dict:
    found = [f for f in result["findings"] if f["code"] == code]
    assert len(found) == 1, f"want one {code}; got {[f['code'] for f in result['findings']]}"
    return found[0]


# -- the expected outcome of every world -------------------------------------------------


def test_every_world_has_an_expected_entry():
    worlds = {p.name for p in INTERMITTENT.glob("*.yaml")} - {"expected.yaml"}
    assert worlds == set(EXPECTED)


@pytest.mark.parametrize("world", [_param(w) for w in sorted(EXPECTED)])
def test_world_gives_expected_findings(world, report):
    spec = EXPECTED[world]
    result = report(world)
    codes = assert_expected(result, spec)
    steps = {c: CATALOG[c].step for c in codes}
    if spec.get("command") == "snat":
        extra = {c for c, s in steps.items() if s not in SNAT_COMMAND_STEPS}
        assert not extra, f"`snat` reports more than SNAT and cluster info: {extra}"
        assert result["endpoint"] is None
    elif spec.get("mode") == "persistent":
        extra = {c for c, s in steps.items() if s in INTERMITTENT_STEPS}
        assert not extra, f"--mode persistent reports intermittent codes {extra}"
    elif spec.get("mode") == "intermittent":
        extra = {c for c, s in steps.items() if s in PERSISTENT_STEPS}
        assert not extra, f"--mode intermittent reports persistent codes {extra}"
    for f in result["findings"]:
        assert f["severity"] in ("error", "warning", "info", "ok")
        assert f["title"] and isinstance(f["evidence"], dict)


# -- the fix is the computed one ---------------------------------------------------------


def _cluster(data: dict) -> dict:
    (cluster_id,) = data["clusters"].values()
    return next(r for r in data["arm"] if armid.same(r["id"], cluster_id))


def _outbound_addresses(data: dict, lb: dict) -> int:
    """Addresses of the frontends the outbound rules use (a prefix counts its range)."""
    props = lb["properties"]
    used = {
        armid.key(ref["id"])
        for rule in props.get("outboundRules") or []
        for ref in rule["properties"]["frontendIPConfigurations"]
    }
    arm = {armid.key(r["id"]): r for r in data["arm"]}
    count = 0
    for frontend in props["frontendIPConfigurations"]:
        fp = frontend["properties"]
        if armid.key(frontend["id"]) not in used:
            continue
        if fp.get("publicIPPrefix"):
            count += 2 ** (
                32 - arm[armid.key(fp["publicIPPrefix"]["id"])]["properties"]["prefixLength"]
            )
        elif fp.get("publicIPAddress"):
            count += 1
    return count


def _lb_numbers(world: str) -> dict:
    """The world's own numbers: pools, setting, outbound IPs, the peak used ports."""
    data = _world(world)
    cluster = _cluster(data)
    props = cluster["properties"]
    profile = props["networkProfile"]["loadBalancerProfile"]
    pools = props["agentPoolProfiles"]
    lb = next(r for r in data["arm"] if r["type"] == "Microsoft.Network/loadBalancers")
    metrics = {armid.key(k): v for k, v in data["metrics"].items()}[armid.key(lb["id"])]
    used = [m for m in metrics if m["name"] == "UsedSnatPorts"]
    per_time: dict[str, float] = {}
    for m in used:
        for ts in m["timeseries"]:
            for p in ts["data"]:
                per_time[p["timeStamp"]] = per_time.get(p["timeStamp"], 0) + p["maximum"]
    rid = armid.ArmId.parse(cluster["id"])
    return {
        "update": f"az aks update --resource-group {rid.resource_group} --name {rid.name}",
        "setting": int(profile.get("allocatedOutboundPorts") or 0),
        "nodes_now": sum(p["count"] for p in pools),
        "nodes_with_surge": sum(
            p["count"] + surge_nodes((p.get("upgradeSettings") or {}).get("maxSurge"), p["count"])
            for p in pools
        ),
        "ips": _outbound_addresses(data, lb),
        "peak": max(p["maximum"] for m in used for ts in m["timeseries"] for p in ts["data"]),
        "total_peak": max(per_time.values()),
    }


@pytest.mark.parametrize("world", [_param(w) for w in FIX_WORLDS])
def test_lb_fix_is_the_computed_command(world, report):
    n = _lb_numbers(world)
    plan = snat_capacity.capacity(
        n["peak"], n["nodes_with_surge"], n["ips"], n["setting"], n["total_peak"]
    )
    assert plan.kind in ("ip-count", "ports"), plan
    if plan.kind == "ip-count":
        command = f"{n['update']} --load-balancer-managed-outbound-ip-count {plan.ips}"
    else:
        more = plan.ips > n["ips"]
        command = n["update"] + (
            f" --load-balancer-managed-outbound-ip-count {plan.ips}" if more else ""
        )
        command += f" --load-balancer-outbound-ports {plan.ports}"
    assert snat_capacity.fits(plan.ports or 0, n["nodes_with_surge"], plan.ips)
    result = report(world)
    [found] = [f for f in result["findings"] if f["code"] in ("SNAT_HIGH", "SNAT_EXHAUSTED")]
    assert command in found["fix"], found["fix"]
    assert found["evidence"]["plan"]["kind"] == plan.kind


def test_fixed_fixes_name_ports_and_ips(report):
    """The two fixed-allocation worlds: one more ports only, one more ports and a second IP."""
    high = _finding(report("snat-high-fixed-4096.yaml"), "SNAT_HIGH")["fix"][0]
    assert "--load-balancer-outbound-ports" in high
    assert "--load-balancer-managed-outbound-ip-count" not in high
    exhausted = _finding(report("snat-exhausted-fixed-2048-needs-ips.yaml"), "SNAT_EXHAUSTED")
    assert (
        "--load-balancer-managed-outbound-ip-count 2 --load-balancer-outbound-ports"
        in (exhausted["fix"][0])
    )


def test_natgw_fix_is_the_computed_ip_count(report):
    world = "natgw-snat-failed.yaml"
    data = _world(world)
    cluster = _cluster(data)
    natgw = next(r for r in data["arm"] if r["type"] == "Microsoft.Network/natGateways")
    metrics = {armid.key(k): v for k, v in data["metrics"].items()}[armid.key(natgw["id"])]
    [total] = [m for m in metrics if m["name"] == "TotalConnectionCount"]
    per_time: dict[str, float] = {}
    for ts in total["timeseries"]:
        for p in ts["data"]:
            per_time[p["timeStamp"]] = per_time.get(p["timeStamp"], 0) + p["total"]
    today = len(natgw["properties"]["publicIpAddresses"])
    wanted = max(
        math.ceil(today * 100 / (100 - snat_capacity.HEADROOM_PERCENT)),
        snat_capacity.natgw_ips_for(max(per_time.values())),
    )
    rid = armid.ArmId.parse(cluster["id"])
    command = (
        f"az aks update --resource-group {rid.resource_group} --name {rid.name} "
        f"--nat-gateway-managed-outbound-ip-count {min(wanted, snat_capacity.NATGW_MAX_IPS)}"
    )
    assert command in _finding(report(world), "NATGW_SNAT_FAILED")["fix"]


# -- the dynamic-allocation band ---------------------------------------------------------


def _documented(nodes: int, ips: int) -> int:
    ports = next(p for upper, p in DOCUMENTED_BANDS if nodes <= upper)
    return min(ports * ips, 1024)


@pytest.mark.parametrize("world", [_param(w) for w in BAND_WORLDS])
def test_band_allocation_is_azures_table(world, report):
    n = _lb_numbers(world)
    expected = _documented(n["nodes_now"], n["ips"])
    found = _finding(report(world), "SNAT_HIGH")
    assert found["evidence"]["expectedPerNode"] == expected
    busiest = found["evidence"]["nodes"][0]
    assert busiest["allocatedFrom"] == "model"
    assert busiest["allocated"] == expected
    assert busiest["used"] == n["peak"]
    assert 75 <= busiest["percent"] < 80


# -- evidence that says which ------------------------------------------------------------


@pytest.mark.parametrize(
    ("world", "why"),
    [
        ("snat-no-data-no-outbound-ips.yaml", "no outbound IPs"),
        ("snat-no-data-no-metrics.yaml", "no metrics"),
    ],
)
def test_snat_no_data_says_why(world, why, report):
    assert _finding(report(world), "SNAT_NO_DATA")["evidence"]["why"] == why


def test_advisor_lists_only_the_node_resource_group_recommendation(report):
    world = "advisor-node-resource-group.yaml"
    node_rg = _cluster(_world(world))["properties"]["nodeResourceGroup"]
    recs = _world(world)["advisor"]
    groups = [
        armid.ArmId.parse(r["properties"]["resourceMetadata"]["resourceId"]).resource_group
        for r in recs
    ]
    wanted = [r["id"] for r, g in zip(recs, groups, strict=True) if g.lower() == node_rg.lower()]
    assert len(wanted) == 1
    found = _finding(report(world), "ADVISOR_RECOMMENDATION")
    assert [e["id"] for e in found["evidence"]["recommendations"]] == wanted


def test_osdisk_finding_names_the_throttled_node(report):
    found = _finding(report("osdisk-iops-high.yaml"), "OSDISK_IO_HIGH")
    [peak] = found["evidence"]["peaks"]
    assert peak["node"] == "aks-nodepool1-47318820-vmss000001"


def test_daily_summary_counts_the_prefix_addresses(capsys):
    world = INTERMITTENT / "snat-band-101-200-prefix-30.yaml"
    assert main(["snat-summary", "--world", str(world), "--json"]) == 0
    [cluster] = json.loads(capsys.readouterr().out)["clusters"]
    assert cluster["outboundIps"] == 4
    assert cluster["allocatedPerNode"] == 1024
    assert [f["code"] for f in cluster["findings"]] == ["SNAT_HIGH"]


def test_vm_sizes_are_read_once_per_region_for_many_checks():
    """Resource SKUs are large and slow to list: a runtime (a worker) keeps a region's list
    for hours, so a second check of the cluster reads it from memory."""
    with Sandbox(INTERMITTENT / "osdisk-not-ephemeral-fits.yaml") as sandbox:
        runtime = attach(sandbox, ProbeSettings())
        alias, cid = runtime.cluster_id("logs-prod")
        reports = [Engine(runtime).check(CheckRequest(alias, cid, None)) for _ in range(2)]
        runtime.clients.close()
        skus = [c for c in sandbox.calls("arm") if c.path.endswith("/Microsoft.Compute/skus")]
    assert len(skus) == 1 and skus[0].query.get("$filter") == "location eq 'westeurope'"
    for report in reports:
        [info] = [f for f in report.findings if f.code == "OSDISK_NOT_EPHEMERAL"]
        assert info.evidence["pools"][0]["placement"] == "ResourceDisk"
