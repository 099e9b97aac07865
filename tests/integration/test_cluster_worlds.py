"""The worlds under tests/worlds/cluster/ give their expected root cause and codes through the CLI.

Each world is the minimal healthy loadBalancer cluster of lb-healthy.yaml plus the Kubernetes
side one case needs: probe outcomes (curl exit codes and write-outs taken from the real curl
fixtures), probe pods that never run (podStatus, a 403 on pod create or on the pod log), the
user's own pod (`pod:` in cluster/expected.yaml, passed as --pod), node conditions and
metrics, and the root-cause order between path findings, the probe and node resources.
"""

from __future__ import annotations

import pytest

from tests.helpers import WORLDS, assert_expected, expected_worlds

CLUSTER = WORLDS / "cluster"
EXPECTED = expected_worlds(CLUSTER / "expected.yaml")


@pytest.mark.parametrize("world", sorted(EXPECTED))
def test_cluster_world_gives_expected_findings(world, run_check):
    spec = EXPECTED[world]
    argv = [spec["alias"], "--endpoint", spec["endpoint"], "--world", str(CLUSTER / world)]
    if spec.get("pod"):
        argv += ["--pod", spec["pod"]]
    code, report = run_check(*argv)
    assert code == 0, report
    assert isinstance(report, dict)
    assert_expected(report, spec)


def test_every_world_has_an_expected_entry():
    worlds = {p.name for p in CLUSTER.glob("*.yaml")} - {"expected.yaml"}
    assert worlds == set(EXPECTED)


REQUIRED_CODES = {
    "PROBE_OK",
    "PROBE_DNS_FAILURE",
    "PROBE_PROXY_FAILURE",
    "PROBE_CONNECT_REFUSED",
    "PROBE_TIMEOUT",
    "PROBE_TLS_FAILURE",
    "PROBE_CONNECTION_RESET",
    "PROBE_FIREWALL_DENY_HTTP",
    "PROBE_HTTP_GATEWAY_ERROR",
    "PROBE_HTTP_CLIENT_ERROR",
    "PROBE_HTTP_SERVER_ERROR",
    "PROBE_FAILED_TO_RUN",
    "POD_NOT_RUNNING",
    "NODE_NOT_READY",
    "NODE_PRESSURE",
    "NODE_CPU_HIGH",
    "NODE_MEMORY_HIGH",
    "POD_NEAR_LIMIT",
    "POD_OOMKILLED",
    "METRICS_UNAVAILABLE",
}


def test_worlds_cover_every_cluster_side_code():
    covered = {code for spec in EXPECTED.values() for code in spec["mustInclude"]}
    assert not REQUIRED_CODES - covered, sorted(REQUIRED_CODES - covered)
