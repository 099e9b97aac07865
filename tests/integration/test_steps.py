"""The step registry drives the work: a mode makes only the reads its steps need, and each
batch of steps is judged as soon as its evidence is in (bot/steps.py)."""

from __future__ import annotations

import json

import pytest

from bot.cli import main
from bot.codes import CATALOG
from bot.collect.probe import ProbeSettings
from bot.engine import CheckRequest, Engine
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from bot.steps import MODES
from tests.helpers import WORLDS

SNAT_WORLDS = [
    ("lb-snat-high-and-pressure.yaml", "shop-prod"),
    ("natgw-managed-snat-failed.yaml", "checkout-prod"),
]


@pytest.fixture
def run_cli(capsys):
    """`aks-egress ... --json` in-process; the report."""

    def run(*argv: str) -> dict:
        code = main([*argv, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    return run


@pytest.mark.parametrize(("world", "alias"), SNAT_WORLDS)
def test_snat_makes_only_the_reads_its_steps_need(world, alias, run_cli):
    full = run_cli("check", alias, "--world", str(WORLDS / world))
    snat = run_cli("snat", alias, "--world", str(WORLDS / world))
    # The cluster and its load balancer or NAT gateways, their IPs and SNAT metrics; the
    # node list (backends to nodes). Not the path, the pods, metrics.k8s.io or Advisor.
    assert snat["stats"]["armCalls"] <= 8 < full["stats"]["armCalls"], (snat, full)
    assert snat["stats"]["k8sCalls"] == 1 < full["stats"]["k8sCalls"]

    def judged(report: dict) -> list[tuple[str, str]]:
        return [
            (f["code"], f["detail"])
            for f in report["findings"]
            if CATALOG[f["code"]].step in MODES["snat"] - {"access"}
        ]

    assert judged(snat) == judged(full)
    assert {CATALOG[f["code"]].step for f in snat["findings"]} <= MODES["snat"]


def test_azure_steps_are_judged_before_the_cluster_is_read():
    """Advisor and the OS disk need only Azure: they come with the path's steps, in the
    first batch, while the probe still runs; the DNS path needs CoreDNS's config map, so it
    waits for the cluster side."""
    batches: list[tuple[str, ...]] = []
    with Sandbox(WORLDS / "lb-snat-high-and-pressure.yaml") as sandbox:
        runtime = attach(sandbox, ProbeSettings())
        alias, cid = runtime.cluster_id("shop-prod")
        Engine(runtime).check(
            CheckRequest(alias, cid, None), on_steps=lambda names, _: batches.append(names)
        )
        runtime.clients.close()
    assert batches == [
        ("cluster", "route", "nsg", "firewall", "egress", "disk", "advisor"),
        ("dns", "probe", "snat", "resources", "access"),
    ]
