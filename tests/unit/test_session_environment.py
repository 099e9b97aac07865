"""The Azure clients' shared session reads the environment once per origin, and still
honours what requests takes from it: the proxy variables with NO_PROXY, and the CA bundle
variables (bot/collect/clients.py EnvironmentOnce)."""

from __future__ import annotations

import requests

from bot.collect.clients import EnvironmentOnce

ARM = "https://management.azure.com/subscriptions/s/resourceGroups/g?api-version=1"
PROXY = "http://proxy.corp.example:3128"


def settings(session: EnvironmentOnce, url: str, verify: object = True) -> dict:
    return session.merge_environment_settings(url, {}, False, verify, None)


def test_proxies_and_no_proxy_from_the_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "westeurope.metrics.monitor.azure.com,127.0.0.1")
    session = EnvironmentOnce()
    assert settings(session, ARM)["proxies"]["https"] == PROXY
    assert (
        "https"
        not in settings(session, "https://westeurope.metrics.monitor.azure.com/x")["proxies"]
    )
    assert "https" not in settings(session, "https://127.0.0.1:8443/x")["proxies"]


def test_read_once_per_origin(monkeypatch):
    """A proxy set after the first request to an origin is not seen: read once."""
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    session = EnvironmentOnce()
    assert "https" not in settings(session, ARM)["proxies"]
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    assert "https" not in settings(session, ARM + "&again=1")["proxies"]


def test_ca_bundle_from_the_environment_only_where_none_is_given(monkeypatch, tmp_path):
    bundle = tmp_path / "corp-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = EnvironmentOnce()
    assert settings(session, ARM)["verify"] == str(bundle)
    assert settings(session, ARM, verify="/etc/sandbox-ca.pem")["verify"] == "/etc/sandbox-ca.pem"
    assert settings(session, ARM, verify=False)["verify"] is False


def test_no_netrc(monkeypatch, tmp_path):
    """~/.netrc's basic auth would replace the bearer token of every Azure request."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine management.azure.com login user password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    request = EnvironmentOnce().prepare_request(
        requests.Request("GET", ARM, headers={"Authorization": "Bearer t"})
    )
    assert request.headers["Authorization"] == "Bearer t"
