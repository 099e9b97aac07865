"""The destination policy and the stricter endpoint parser: where the probe may aim."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.collect.probe import RESOLVE_SCRIPT, ProbeSettings, probe_command, probe_pod
from bot.destination import (
    REFUSED_EXIT,
    REFUSED_MARK,
    DestinationPolicy,
    PolicyConfig,
    judge,
    parse_prefixes,
    probe_rules,
)
from bot.endpoint import EndpointError, parse_endpoint


@pytest.mark.parametrize(
    "text",
    [
        "http://0xa9.0xfe.0xa9.0xfe/latest/meta-data",  # 169.254.169.254 in hex
        "http://0251.0376.0251.0376/",  # in octal
        "http://2852039166/",  # as one integer
        "http://127.1/",  # short form of 127.0.0.1
        "http://169.254.169.254./",  # trailing dot: not a dotted quad
        "https://api.contoso.com/x/[1-1000000]",  # curl URL globbing
        "https://api.contoso.com/{a,b}",
        "https://[::1]/",
        "https://%31%32%37.0.0.1/",
    ],
)
def test_the_parser_refuses_other_spellings_of_addresses_and_globs(text):
    with pytest.raises(EndpointError) as refused:
        parse_endpoint(text)
    assert str(refused.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://168.63.129.16/", "168.63.129.16"),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://0.0.0.0/", "0.0.0.0/8"),
        ("https://kubernetes.default.svc", "inside the cluster"),
        ("https://api.payments.svc.cluster.local", "inside the cluster"),
        ("https://metadata.azure.internal", "inside the cluster"),
        ("telnet://10.244.1.5:10250", "telnet"),
    ],
)
def test_always_denied_destinations_are_refused_and_say_why(url, says):
    refusal = judge(parse_endpoint(url), DestinationPolicy())
    assert refusal is not None and says in str(refusal)
    assert "cannot be allowed" in str(refusal) or "aks-egress.yaml" in str(refusal)


def test_private_ranges_need_the_operators_allow_list():
    endpoint = parse_endpoint("telnet://10.50.1.4:5432")
    refusal = judge(endpoint, DestinationPolicy())
    assert refusal and "allowPrivatePrefixes" in str(refusal) and "10.0.0.0/8" in str(refusal)
    allowed = PolicyConfig(allow_private=parse_prefixes(["10.50.0.0/16"])).policy()
    assert judge(endpoint, allowed) is None
    assert judge(parse_endpoint("https://100.64.0.1"), allowed) is not None


def test_the_private_allowance_can_be_limited_to_user_groups():
    config = PolicyConfig(parse_prefixes(["10.50.0.0/16"]), ("S0123ABCDE",))
    endpoint = parse_endpoint("https://10.50.1.4")
    assert judge(endpoint, config.policy(in_groups=True)) is None
    assert judge(endpoint, config.policy(in_groups=False)) is not None


def test_the_clusters_own_ranges_win_over_an_allow_list():
    cluster = {
        "properties": {
            "fqdn": "aks-x.hcp.westeurope.azmk8s.io",
            "networkProfile": {"podCidrs": ["10.244.0.0/16"], "serviceCidr": "10.0.0.0/16"},
        }
    }
    subnets = [{"properties": {"addressPrefix": "10.224.0.0/16"}}]
    policy = PolicyConfig(parse_prefixes(["10.0.0.0/8"])).policy().with_cluster(cluster, subnets)
    for ip, why in (("10.244.3.3", "pod CIDR"), ("10.0.0.1", "service"), ("10.224.0.4", "subnet")):
        refusal = judge(parse_endpoint(f"https://{ip}"), policy)
        assert refusal and why in str(refusal), ip
    assert judge(parse_endpoint("https://10.9.0.1"), policy) is None
    assert judge(parse_endpoint("https://aks-x.hcp.westeurope.azmk8s.io"), policy)


def test_a_name_with_any_internal_address_is_refused():
    endpoint = parse_endpoint("https://api.contoso.com")
    public = ipaddress.IPv4Address("20.50.1.10")
    assert judge(endpoint, DestinationPolicy(), [public]) is None
    mixed = [public, ipaddress.IPv4Address("169.254.169.254")]
    assert "link-local" in str(judge(endpoint, DestinationPolicy(), mixed))


def test_every_probe_runs_hardened_curl_through_the_resolving_script():
    settings = ProbeSettings()
    rules = probe_rules(DestinationPolicy())
    command = probe_command("https://api.contoso.com/x", rules, settings)
    assert command[:3] == ["/bin/sh", "-c", RESOLVE_SCRIPT]
    assert command[4:6] == ["api.contoso.com", "443"]
    curl = command[command.index("--") + 1 :]
    assert curl[:5] == ["--globoff", "--proto", "=http,https,telnet", "--max-redirs", "0"]
    assert curl[-2:] == ["--url", "https://api.contoso.com/x"]
    # The URL is an argument of the script, never part of its text.
    assert "api.contoso.com" not in RESOLVE_SCRIPT
    pod = probe_pod("https://h.example.com/?sig=SECRET", None, "r1", settings, rules)
    assert "SECRET" not in str(pod["metadata"]["annotations"])


def _fake_tools(tmp_path: Path) -> dict[str, str]:
    """getent answering FAKE_ADDRS, and a curl that prints its arguments."""
    (tmp_path / "getent").write_text(
        '#!/bin/sh\n[ -n "$FAKE_ADDRS" ] || exit 2\n'
        'for a in $FAKE_ADDRS; do echo "$a STREAM $2"; echo "$a DGRAM"; done\n'
    )
    (tmp_path / "curl").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    for tool in ("getent", "curl"):
        (tmp_path / tool).chmod(0o755)
    return {"PATH": f"{tmp_path}:{os.environ['PATH']}"}


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        ("20.50.1.10 20.50.1.11", None),
        ("10.50.1.4", None),  # allow-listed
        ("20.50.1.10 169.254.169.254", "169.254.169.254=169.254.0.0/16"),
        ("10.1.2.3", "10.1.2.3=10.0.0.0/8"),
        ("10.244.0.9", "10.244.0.9=10.244.0.0/16"),  # the pod CIDR beats the allow-list
    ],
)
def test_the_probe_container_judges_what_the_name_resolves_to(tmp_path, addresses, refused):
    cluster = {"properties": {"networkProfile": {"podCidr": "10.244.0.0/16"}}}
    policy = PolicyConfig(parse_prefixes(["10.50.0.0/16", "10.244.0.0/16"])).policy()
    rules = probe_rules(policy.with_cluster(cluster))
    command = probe_command("https://api.contoso.com", rules, ProbeSettings())
    env = _fake_tools(tmp_path) | {"FAKE_ADDRS": addresses}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=20)
    if refused:
        assert done.returncode == REFUSED_EXIT
        assert done.stdout.startswith(REFUSED_MARK) and refused in done.stdout
    else:
        assert done.returncode == 0, done.stderr
        pinned = ",".join(addresses.split())
        assert done.stdout.splitlines()[:2] == ["--resolve", f"api.contoso.com:443:{pinned}"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_a_name_that_does_not_resolve_in_the_cluster_is_curls_exit_6(tmp_path):
    command = probe_command("https://nowhere.contoso.com", [], ProbeSettings())
    env = _fake_tools(tmp_path) | {"FAKE_ADDRS": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 6
    assert '"exitcode":6' in done.stdout and "Could not resolve host" in done.stderr
