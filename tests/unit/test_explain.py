"""handlers/explain.py: a probe's failure names the finding that causes it."""

from __future__ import annotations

from bot.codes import finding
from handlers.explain import explain


def _probe(code: str, inside: str | None = None):
    return finding(code, "probe", evidence={"inside": inside} if inside else {})


def test_a_timeout_inside_the_pod_is_explained_by_its_egress_policy_a_fresh_probe_is_not():
    """The pod's NetworkPolicy drops its SYN; a fresh probe pod, selected by no policy, is not
    affected by it (world pod/cilium-tofqdns-dns-rule-without-l7.yaml)."""
    deny = finding("NETPOL_EGRESS_DENY", "isolated", about_endpoint=True)
    inside, fresh = _probe("PROBE_TIMEOUT", "web/api-1"), _probe("PROBE_TIMEOUT")
    out = explain([deny, inside, fresh])
    assert out[1].evidence["explainedBy"] == [{"code": "NETPOL_EGRESS_DENY", "detail": "isolated"}]
    assert "explainedBy" not in out[2].evidence


def test_a_dns_failure_is_explained_by_the_pod_policy_inside_and_by_a_blocked_server_anywhere():
    policy = finding("NETPOL_DNS_DENY", "no dns")
    server = finding("DNS_SERVER_BLOCKED", "server", about_endpoint=True)
    other_zone = finding("DNS_SERVER_BLOCKED", "other zone")
    inside, fresh = _probe("PROBE_DNS_FAILURE", "web/api-1"), _probe("PROBE_DNS_FAILURE")
    out = explain([policy, server, other_zone, inside, fresh])
    assert [c["code"] for c in out[3].evidence["explainedBy"]] == [
        "NETPOL_DNS_DENY",
        "DNS_SERVER_BLOCKED",
    ]
    assert [c["detail"] for c in out[4].evidence["explainedBy"]] == ["server"]
    assert explain([_probe("PROBE_OK")])[0].evidence == {}
