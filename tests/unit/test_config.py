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
    ],
)
def test_mistakes_name_the_key_and_what_to_do(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert message in str(error.value) and "aks-egress.yaml" in str(error.value)
