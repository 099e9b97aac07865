import ipaddress

import pytest

from bot.endpoint import EndpointError, MapResolver, parse_endpoint


@pytest.mark.parametrize(
    ("text", "url", "port", "protocol"),
    [
        ("https://api.contoso.com/v1", "https://api.contoso.com/v1", 443, "Https"),
        ("https://API.contoso.com", "https://api.contoso.com", 443, "Https"),
        ("http://files.example.org", "http://files.example.org", 80, "Http"),
        ("https://api.contoso.com:8443/x?y=1", "https://api.contoso.com:8443/x?y=1", 8443, "Https"),
        ("api.contoso.com", "https://api.contoso.com", 443, "Https"),
        ("api.contoso.com:80", "http://api.contoso.com", 80, "Http"),
        ("db.contoso.com:5432", "telnet://db.contoso.com:5432", 5432, "Tcp"),
        ("telnet://db.contoso.com:5432", "telnet://db.contoso.com:5432", 5432, "Tcp"),
        ("20.50.1.10", "https://20.50.1.10", 443, "Https"),
        ("20.50.1.10:9000", "telnet://20.50.1.10:9000", 9000, "Tcp"),
    ],
)
def test_accepted_forms(text, url, port, protocol):
    endpoint = parse_endpoint(text)
    assert (endpoint.url, endpoint.port, endpoint.firewall_protocol) == (url, port, protocol)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("ftp://files.example.org", "scheme"),
        ("https://user:pw@api.contoso.com", "credentials"),
        ("https://api.contoso.com; rm -rf /", "shell"),
        ("https://$(id).example.com", "shell"),
        ("api.contoso.com:99999", "port"),
        ("https://api.contoso.com:0", "port"),
        ("telnet://db.contoso.com", "needs a port"),
        ("https://-bad-.example.com", "not a valid host"),
        ("https://localhost", "not a valid host"),
        ("https://[::1]/", "not a valid host|IPv6"),
    ],
)
def test_rejected_forms_say_why(text, says):
    with pytest.raises(EndpointError, match=says):
        parse_endpoint(text)


def test_map_resolver_is_case_insensitive_and_unknown_names_do_not_resolve():
    resolver = MapResolver({"API.contoso.com": ["20.50.1.10"], "gone.example": []})
    assert resolver.resolve("api.contoso.com.") == [ipaddress.IPv4Address("20.50.1.10")]
    assert resolver.resolve("gone.example") == []
    assert resolver.resolve("nothere.example") == []
    assert resolver.resolve("10.0.0.1") == [ipaddress.IPv4Address("10.0.0.1")]
