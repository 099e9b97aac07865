"""The destination policy end to end: the CLI, the engine and the sandbox's probe pods.

The world's `dns` map is what names resolve to inside the cluster; the probe container
judges those addresses, so a name pointed at the metadata service (or at a mix of public
and internal addresses) is refused in the report, and curl never connects.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import WORLDS

WORLD = WORLDS / "lb-healthy.yaml"
ALIAS = "web-prod-weu"


@pytest.fixture(scope="module")
def base() -> dict:
    data = yaml.safe_load(WORLD.read_text())
    data.setdefault("faults", {})["probeSeconds"] = 0.05
    return data


def _world(tmp_path: Path, data: dict, **changes) -> str:
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump({**data, **changes}))
    return str(path)


def _codes(report: dict) -> dict[str, dict]:
    return {f["code"]: f for f in report["findings"]}


@pytest.mark.parametrize(
    "addresses", [["169.254.169.254"], ["140.82.121.6", "10.20.0.4"], ["127.0.0.1"]]
)
def test_a_name_resolving_inside_the_cluster_to_an_internal_address_is_refused(
    run_check, tmp_path, base, addresses
):
    world = _world(tmp_path, base, dns={"api.github.com": addresses})
    code, report = run_check(ALIAS, "--endpoint", "https://api.github.com", "--world", world)
    assert code == 0, report
    found = _codes(report)
    assert "PROBE_OK" not in found
    refused = found["PROBE_REFUSED"]
    assert refused["severity"] == "warning"
    assert addresses[-1] in refused["detail"]
    assert "cannot be allowed" in refused["detail"] or "allowPrivatePrefixes" in refused["detail"]


def test_an_operator_allow_list_lets_a_private_endpoint_be_probed(run_check, tmp_path, base):
    world = _world(
        tmp_path,
        base,
        dns={"api.github.com": ["10.20.0.4"]},
        clusterConfig={ALIAS: {"allowPrivatePrefixes": ["10.20.0.0/24"]}},
    )
    code, report = run_check(ALIAS, "--endpoint", "https://api.github.com", "--world", world)
    assert code == 0, report
    assert "PROBE_OK" in _codes(report) and "PROBE_REFUSED" not in _codes(report)


def test_the_clusters_own_addresses_stay_refused_even_when_allow_listed(run_check, tmp_path, base):
    world = _world(tmp_path, base, clusterConfig={ALIAS: {"allowPrivatePrefixes": ["10.0.0.0/8"]}})
    # 10.224.0.0/16 is the node subnet, 10.0.0.0/16 the service CIDR.
    for url in ("https://10.224.0.4", "https://10.0.0.1"):
        code, report = run_check(ALIAS, "--endpoint", url, "--world", world)
        assert code == 0, report
        assert "PROBE_REFUSED" in _codes(report) and "PROBE_OK" not in _codes(report), url
    fqdn = "https://aks-web-prod-weu-dns-5k2m8q1x.hcp.westeurope.azmk8s.io"
    code, report = run_check(ALIAS, "--endpoint", fqdn, "--world", world)
    assert "inside the cluster" in _codes(report)["PROBE_REFUSED"]["detail"]


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("http://169.254.169.254/metadata/instance", "link-local"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "not a valid host"),
        ("https://kubernetes.default.svc", "not a valid host|inside the cluster"),
        ("telnet://140.82.121.6:10250", "telnet"),
        ("https://10.1.2.3", "allowPrivatePrefixes"),
    ],
)
def test_the_cli_refuses_before_anything_runs(run_check, endpoint, says):
    import re

    code, err = run_check(ALIAS, "--endpoint", endpoint, "--world", str(WORLD))
    assert code == 2
    assert re.search(says, str(err)), err


def test_the_bypass_refuses_what_the_probe_refuses(capsys):
    from bot.cli import main

    world = WORLDS / "udr-firewall-bypass.yaml"
    alias = next(iter(yaml.safe_load(world.read_text())["clusters"]))
    argv = ["bypass", alias, "--endpoint", "http://169.254.169.254/", "--plan", "--json"]
    assert main([*argv, "--world", str(world)]) in (0, 1)
    out = capsys.readouterr().out
    plan = json.loads(out)["plan"]
    assert plan["feasible"] is False and "link-local" in plan["reason"]
