"""bot/slack/authorization.py: who may use a cluster from Slack (the channel, and where the
configuration names user groups, membership of one), asked of the sandbox's Slack Web API
through the real slack_sdk client; an error from Slack authorizes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.directory import Directory
from bot.endpoint import parse_endpoint
from bot.sandbox.server import Sandbox
from bot.sandbox.world import load_world
from bot.slack.authorization import Authorization
from tests.unit.test_config import CLUSTER, load

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "lb-healthy.yaml"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(load_world(WORLD)) as running:
        running.slack.set_usergroup("S0SRE00001", ["U0ALICE"])
        running.slack.set_usergroup("S0NET00001", ["U0NETOPS"])
        yield running


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    config = load(
        tmp_path,
        f"clusters:\n  prod:\n{CLUSTER}    channels: [C0PROD]\n    userGroups: [S0SRE00001]\n"
        "    allowPrivatePrefixes: [10.50.0.0/16]\n    allowPrivateUserGroups: [S0NET00001]\n"
        f"  dev:\n{CLUSTER}    channels: [C0PROD, C0DEV]\n"
        f"  broken:\n{CLUSTER}    channels: [C0PROD]\n    userGroups: [S0GONE0001]\n",
    )
    return Directory.from_config(config)


def authorization(sandbox: Sandbox, directory: Directory, ttl_s: float = 60) -> Authorization:
    return Authorization(directory, WebClient(token="xoxb-t", base_url=sandbox.slack_url), ttl_s)


def test_the_channel_decides_and_says_only_what_it_may_see(sandbox, directory) -> None:
    auth = authorization(sandbox, directory)
    assert auth.refusal("dev", "C0DEV", "U0ANYONE") is None
    refused = auth.refusal("prod", "C0DEV", "U0ALICE")
    assert refused is not None and "this channel may not check 'prod'" in refused
    assert refused.endswith("Clusters this channel may check: dev")
    unknown = auth.refusal("nosuch", "C0DEV", "U0ALICE")
    assert unknown is not None and unknown.startswith("this channel may not check 'nosuch'")


def test_user_groups_are_asked_of_slack(sandbox, directory) -> None:
    auth = authorization(sandbox, directory)
    assert auth.refusal("prod", "C0PROD", "U0ALICE") is None
    refused = auth.refusal("prod", "C0PROD", "U0BOB")
    assert refused is not None and refused.startswith(
        "only members of the user groups `S0SRE00001`"
    )
    assert auth.in_any("U0ALICE", ("S0NET00001", "S0SRE00001"))
    assert not auth.in_any("U0BOB", ("S0SRE00001",))


def test_an_error_from_slack_authorizes_nothing(sandbox, directory) -> None:
    auth = authorization(sandbox, directory)
    refused = auth.refusal("broken", "C0PROD", "U0ALICE")
    assert refused is not None and "cannot check whether you are in the user groups" in refused
    assert "Slack said: " in refused
    with pytest.raises(SlackApiError):
        auth.in_any("U0ALICE", ("S0GONE0001",))


def test_private_destinations_are_for_the_allow_private_groups(sandbox, directory) -> None:
    auth = authorization(sandbox, directory)
    private = parse_endpoint("https://10.50.1.7/")
    assert auth.destination("prod", "U0NETOPS", private) == (None, True)
    refused, in_groups = auth.destination("prod", "U0ALICE", private)
    assert refused is not None and "10.50.1.7" in refused and not in_groups
    assert (
        auth.destination("prod", "U0ALICE", parse_endpoint("https://api.contoso.com/"))[0] is None
    )


def test_membership_is_remembered_for_the_ttl(sandbox, directory) -> None:
    auth = authorization(sandbox, directory, ttl_s=0.3)
    assert auth.refusal("prod", "C0PROD", "U0CAROL") is not None
    sandbox.slack.set_usergroup("S0SRE00001", ["U0ALICE", "U0CAROL"])
    assert auth.refusal("prod", "C0PROD", "U0CAROL") is not None, "still the remembered list"
    time.sleep(0.4)
    assert auth.refusal("prod", "C0PROD", "U0CAROL") is None
