"""bot/directory.py: which clusters exist under which alias, which channels may use each,
and where `--pod` may point, from the configuration file (or open, for a world)."""

from __future__ import annotations

from bot.directory import Directory
from tests.unit.test_config import CLUSTER, load


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


def test_a_world_without_configuration_is_open_to_every_channel():
    directory = Directory.open({"demo": "/subscriptions/s/resourceGroups/rg/providers/x/y/c"})
    assert directory.allowed("demo", "C-any") and not directory.allowed("other", "C-any")
    assert directory.visible("C-any") == ["demo"]
    assert directory.pod_refusal("demo", "any-namespace/pod") is None
    assert directory.pod_refusal("demo", None) is None
    assert directory.policy("demo").allow_private == ()
