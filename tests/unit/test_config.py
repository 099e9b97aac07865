"""The cluster configuration file: what it grants, and clear errors for what it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ClusterConfig, ConfigError
from bot.directory import Directory

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "    subscription: s\n    resourceGroup: rg\n    name: aks\n"


def load(tmp_path: Path, text: str) -> ClusterConfig:
    path = tmp_path / "aks-egress.yaml"
    path.write_text(text)
    return ClusterConfig.load(path)


def test_the_example_configuration_loads():
    config = ClusterConfig.load(ROOT / "aks-egress.example.yaml")
    assert config.clusters["prod-weu"].channels == ("C0123456789",)
    assert config.summaries[0].timezone == "Europe/Amsterdam"


def test_channels_and_user_groups_reach_the_directory(tmp_path):
    config = load(
        tmp_path,
        f"clusters:\n  prod:\n{CLUSTER}    channels: [C1, C2]\n    userGroups: [S0SRE0001]\n"
        f"  dev:\n{CLUSTER}",
    )
    directory = Directory.from_config(config)
    assert directory.user_groups == {"prod": ("S0SRE0001",), "dev": ()}
    assert directory.allowed("prod", "C2") and not directory.allowed("prod", "C3")
    assert not directory.allowed("dev", "C1"), "no channels listed: no channel may"
    assert directory.visible("C1") == ["prod"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"clusters:\n  prod:\n{CLUSTER}    userGroups: ['@sre']\n", "Copy group ID"),
        ("clusters:\n  prod:\n    name: aks\n", "missing subscription, resourceGroup"),
        ("summaries:\n  C1: {time: '25:00'}\n", "is not HH:MM"),
        ("summaries:\n  C1: {timezone: Mars/Olympus}\n", "unknown 'Mars/Olympus'"),
        ("clusters: [unclosed\n", "cannot read the configuration"),
        (f"clusters:\n  prod:\n{CLUSTER}    allowPrivatePrefixes: [10.0.0/33]\n", "IPv4 prefix"),
        (f"clusters:\n  prod:\n{CLUSTER}    allowPrivateUserGroups: [sre]\n", "user group ID"),
        (f"clusters:\n  prod:\n{CLUSTER}    telnetPorts: [5432, 99999]\n", "port numbers"),
    ],
)
def test_mistakes_name_the_key_and_what_to_do(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert message in str(error.value) and "aks-egress.yaml" in str(error.value)


def test_the_destination_policy_and_pod_namespaces_reach_the_directory(tmp_path):
    config = load(
        tmp_path,
        f"clusters:\n  prod:\n{CLUSTER}    allowPrivatePrefixes: [10.50.0.0/16]\n"
        "    allowPrivateUserGroups: [S0NET0001]\n    telnetPorts: [5432]\n"
        "    podNamespaces: [payments]\n"
        f"  dev:\n{CLUSTER}",
    )
    directory = Directory.from_config(config)
    policy = directory.policy("prod")
    assert [str(p) for p in policy.allow_private] == ["10.50.0.0/16"]
    assert policy.allow_private_user_groups == ("S0NET0001",)
    assert policy.telnet_ports == frozenset({5432})
    assert directory.pod_refusal("prod", "payments/api-1") is None
    assert "podNamespaces" in (directory.pod_refusal("prod", "kube-system/x") or "")
    assert directory.pod_refusal("dev", "payments/api-1"), "none listed: --pod refused"
