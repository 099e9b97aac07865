"""What several test files share: where the worlds and fixtures are, how a report meets an
expected.yaml entry, and a handler's evidence built straight from a world file (ARM bodies
from `arm`, `metrics` as `Series` with lower-cased dimension names, nodes from
`kubernetes`), for the handlers' unit tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from bot import armid
from bot.evidence import AzureEvidence, KubeEvidence, NodePool, Series
from tests.fix_policy import assert_fixes_narrow

ROOT = Path(__file__).resolve().parent.parent
WORLDS = ROOT / "tests" / "worlds"
FIXTURES = ROOT / "tests" / "fixtures"


def expected_worlds(path: Path) -> dict[str, dict]:
    return yaml.safe_load(path.read_text())


def check_argv(spec: dict, world: Path) -> list[str]:
    """The CLI arguments an expected.yaml entry runs its world with: the alias, the endpoint,
    the entry's `args` (e.g. `--pod NS/NAME`) and the world."""
    args = [*spec.get("args", []), "--world", str(world)]
    return [spec["alias"], "--endpoint", spec["endpoint"], *args]


def assert_expected(report: dict, spec: dict) -> set[str]:
    """A report meets an expected.yaml entry: root cause, required and excluded codes, and
    every finding has the contract's fields. Returns the codes reported."""
    codes = {f["code"] for f in report["findings"]}
    assert report["rootCause"] == spec["rootCause"], sorted(codes)
    missing = set(spec["mustInclude"]) - codes
    assert not missing, f"missing {missing}; got {sorted(codes)}"
    wrong = codes & set(spec["mustExclude"])
    assert not wrong, f"must not report {wrong}; got {sorted(codes)}"
    for finding in report["findings"]:
        assert finding["severity"] in ("error", "warning", "info", "ok")
        assert finding["title"] and isinstance(finding["evidence"], dict)
    assert_fixes_narrow(report)
    return codes


EXPECTED = yaml.safe_load((WORLDS / "expected.yaml").read_text())


# -- evidence from a world file ---------------------------------------------------------


def load_world(name: str) -> dict:
    return yaml.safe_load((WORLDS / name).read_text())


def node_pools(cluster: dict) -> list[NodePool]:
    return [
        NodePool(
            name=p["name"],
            subnet_id=p.get("vnetSubnetID"),
            count=int(p.get("count") or 0),
            max_count=p.get("maxCount") if p.get("enableAutoScaling") else None,
            max_surge=(p.get("upgradeSettings") or {}).get("maxSurge"),
            mode=p.get("mode"),
            os_disk_type=p.get("osDiskType"),
        )
        for p in (cluster.get("properties") or {}).get("agentPoolProfiles") or []
    ]


def to_series(metrics: dict | None) -> dict[str, list[Series]]:
    """A world's `metrics` as the collector hands them over: Series by resource id key."""
    return {
        armid.key(resource_id): [
            Series(
                metric=metric["name"],
                dimensions={k.lower(): str(v) for k, v in (ts.get("dimensions") or {}).items()},
                points=tuple(ts.get("data") or ()),
            )
            for metric in metrics_list
            for ts in metric.get("timeseries") or []
        ]
        for resource_id, metrics_list in (metrics or {}).items()
    }


def world_evidence(world: dict | str) -> tuple[AzureEvidence, KubeEvidence | None]:
    if isinstance(world, str):
        world = load_world(world)
    alias, cluster_id = next(iter(world["clusters"].items()))
    arm = world["arm"]

    def of(kind: str) -> list[dict]:
        return [r for r in arm if r["type"].lower() == kind.lower()]

    cluster = next(r for r in arm if armid.same(r["id"], cluster_id))
    ev = AzureEvidence(alias=alias, cluster_id=cluster_id, cluster=cluster)
    ev.pools = node_pools(cluster)
    if ev.outbound_type == "loadBalancer":
        ev.load_balancer = next(iter(of("Microsoft.Network/loadBalancers")), None)
    ev.public_ips = {armid.key(r["id"]): r for r in of("Microsoft.Network/publicIPAddresses")}
    ev.public_ip_prefixes = {
        armid.key(r["id"]): r for r in of("Microsoft.Network/publicIPPrefixes")
    }
    ev.nat_gateways = {armid.key(r["id"]): r for r in of("Microsoft.Network/natGateways")}
    ev.vmss = of("Microsoft.Compute/virtualMachineScaleSets")
    ev.metrics = to_series(world.get("metrics"))
    ev.advisor = world.get("advisor") or []
    part = next(iter((world.get("kubernetes") or {}).values()), None)
    kube = KubeEvidence(how="world", nodes=part.get("nodes") or []) if part else None
    return ev, kube


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def by_code(findings, code: str):
    [found] = [f for f in findings if f.code == code]
    return found


# -- the CLI in a fresh process, and what it imported ------------------------------------

HEAVY = ("azure", "kubernetes", "slack_sdk", "slack_bolt", "pydantic", "redis", "rq", "bot.sandbox")
PROBE = f"""
import sys
from bot import cli
try:
    cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({{m.split('.')[0] if not m.startswith('bot.') else m for m in sys.modules
               if m.startswith({HEAVY!r})}})
print('HEAVY', heavy, 'EXIT', code, file=sys.stderr)
"""


def run_cli_in_fresh_process(*argv: str) -> subprocess.CompletedProcess[str]:
    """`aks-egress ARGV` in a new interpreter; stderr ends with the heavy modules it loaded."""
    return subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
