"""handlers/rootcause.py: the root cause is the first error along the packet's path."""

from __future__ import annotations

from bot.codes import CATALOG, finding
from bot.model import Finding, Severity
from bot.steps import STEP_ORDER
from handlers.rootcause import order, root_cause


def test_the_first_error_along_the_path_is_the_root_cause_whatever_the_list_order():
    probe = finding("PROBE_TIMEOUT", "no answer")
    nsg = finding("NSG_OUTBOUND_DENY", "denied")
    route = finding("ROUTE_DEFAULT_MISSING", "no default route")
    assert root_cause([probe, nsg, route]) == "ROUTE_DEFAULT_MISSING"
    assert root_cause([probe, nsg]) == "NSG_OUTBOUND_DENY"
    assert root_cause([nsg, probe]) == "NSG_OUTBOUND_DENY"


def test_warnings_and_infos_are_never_the_root_cause():
    findings = [finding("AZURE_ACCESS_DENIED", "403"), finding("OUTBOUND_TYPE", "lb")]
    assert root_cause(findings) is None
    assert root_cause([]) is None


def test_within_a_step_the_endpoint_beats_aks_own_required_egress():
    required = finding("NSG_REQUIRED_EGRESS_DENY", "AKS's own egress denied")
    endpoint = finding("NSG_OUTBOUND_DENY", "the endpoint denied", about_endpoint=True)
    assert CATALOG[required.code].step == CATALOG[endpoint.code].step
    assert root_cause([required, endpoint]) == "NSG_OUTBOUND_DENY"


def test_order_follows_the_steps_and_keeps_each_steps_own_order():
    codes = ["PROBE_OK", "NSG_REQUIRED_EGRESS_DENY", "OUTBOUND_TYPE", "NSG_OUTBOUND_DENY"]
    ordered = [f.code for f in order([finding(c, c) for c in codes])]
    assert ordered == ["OUTBOUND_TYPE", "NSG_REQUIRED_EGRESS_DENY", "NSG_OUTBOUND_DENY", "PROBE_OK"]
    steps = [STEP_ORDER[CATALOG[c].step] for c in ordered]
    assert steps == sorted(steps)


def test_every_catalog_error_can_be_the_root_cause():
    for code in (c for c, entry in CATALOG.items() if entry.severity == Severity.ERROR):
        lone: Finding = finding(code, "")
        assert root_cause([lone, finding("PROBE_OK", "")]) == code
