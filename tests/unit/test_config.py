"""The cluster configuration file: what it grants, and clear errors for what it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ClusterConfig, ConfigError

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
