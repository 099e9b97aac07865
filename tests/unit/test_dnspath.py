"""CoreDNS's coredns-custom: which upstreams the cluster depends on, per zone
(https://learn.microsoft.com/azure/aks/coredns-custom)."""

from __future__ import annotations

from ipaddress import IPv4Address

from handlers.dnspath import forward_targets


def test_forward_targets_per_zone_with_schemes_ports_and_tls():
    config_map = {
        "data": {
            "contoso.server": (
                "contoso.com:53 {\n    errors\n    cache 30\n"
                "    forward . 10.50.0.4 dns://10.50.0.5:5353 # on-premises\n}\n"
            ),
            "upstream.override": "forward . tls://1.1.1.1 8.8.8.8 {\n  max_fails 3\n}\n",
            "azure.server": "azure.local:53 {\n  forward . dc01.contoso.local\n}\n",
            "corp.override": "forward corp.contoso.com. 10.60.0.4\n",
        }
    }
    found = {(str(s.address), s.port, s.zone) for s in forward_targets(config_map)}
    assert found == {
        ("10.50.0.4", 53, "contoso.com"),
        ("10.50.0.5", 5353, "contoso.com"),
        ("8.8.8.8", 53, "."),
        ("10.60.0.4", 53, "corp.contoso.com"),
    }
    assert forward_targets(None) == []
    assert forward_targets({"data": {"log.override": "log"}}) == []


def test_a_server_listed_twice_counts_once():
    config_map = {"data": {"a.server": "x.io { forward . 10.1.1.1 10.1.1.1 }"}}
    servers = forward_targets(config_map)
    assert [s.address for s in servers] == [IPv4Address("10.1.1.1")]
    assert servers[0].source == "coredns-custom (a.server)"


def test_a_vnet_dns_server_that_is_the_firewall_without_dns_proxy_is_blocked():
    """The VNet's DNS server is the firewall's private IP, as the DNS proxy setup asks, but
    the proxy is off: "When enabled, the firewall listens on port 53"
    (https://learn.microsoft.com/azure/firewall/dns-settings)."""
    from bot import armid
    from handlers import dnspath
    from tests.unit.test_firewall import VNET, evidence

    ev = evidence("10.0.0.4")
    ev.vnets[armid.key(VNET)]["properties"]["dhcpOptions"] = {"dnsServers": ["10.0.0.4"]}
    [blocked] = dnspath.check(ev, None)
    assert blocked.code == "DNS_SERVER_BLOCKED" and blocked.resource == ev.firewalls[0]["id"]
    assert "DNS proxy is off" in blocked.detail
    assert blocked.fix == [
        "az network firewall update --resource-group rg-hub --name afw-hub --enable-dns-proxy true"
    ]
    ev.firewalls[0]["properties"]["additionalProperties"] = {"Network.DNS.EnableProxy": "true"}
    assert dnspath.check(ev, None) == []
