"""The step registry is the one list of checklist steps, in root-cause order."""

from __future__ import annotations

from bot import jobs
from bot.codes import CATALOG
from bot.evidence import KUBE_NEEDS
from bot.steps import BY_NAME, MODES, STEPS, steps_of


def test_each_step_once_with_its_codes():
    assert len(BY_NAME) == len(STEPS)
    assert {code.step for code in CATALOG.values()} == set(BY_NAME)
    assert all(mode <= set(BY_NAME) for mode in MODES.values())


def test_the_slack_checklist_lists_the_steps_in_the_registry_order():
    for mode in MODES:
        listed = [step.name for step in steps_of(mode) if step.listed]
        assert list(jobs._states({}, mode)) == listed
    assert list(jobs._states({}, "all")) == [
        "cluster", "dns", "route", "nsg", "firewall", "egress", "probe", "snat", "resources",
        "disk", "advisor",
    ]  # fmt: skip
    # The pod's own policies: a step of its own, before the DNS path, only for a --pod.
    with_pod = list(jobs._states({}, "persistent", "web/api-0"))
    assert with_pod[:4] == ["cluster", "netpol", "dns", "route"]


def test_steps_needing_only_azure_are_the_path_advisor_and_disk():
    azure_only = [step.name for step in STEPS if not step.needs & KUBE_NEEDS]
    assert azure_only == ["cluster", "route", "nsg", "firewall", "egress", "disk", "advisor"]
