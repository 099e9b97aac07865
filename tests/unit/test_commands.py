"""bot/slack/commands.py: what users type, parsed, and a clear UsageError for the rest."""

from __future__ import annotations

import pytest

from bot.slack.commands import (
    Check,
    Clusters,
    Help,
    Probe,
    Recheck,
    Snat,
    Timeline,
    UsageError,
    parse_mention,
    parse_slash,
)


def test_check_with_url_and_pod():
    parsed = parse_slash("check prod-weu https://api.contoso.com --pod payments/api-7d9c")
    assert isinstance(parsed, Check)
    assert parsed.alias == "prod-weu" and parsed.pod == "payments/api-7d9c"
    assert parsed.endpoint is not None and parsed.endpoint.url == "https://api.contoso.com"


def test_check_without_url_and_the_pod_anywhere():
    assert parse_slash("check --pod ns/p prod-weu") == Check("prod-weu", None, "ns/p")
    assert parse_slash("CHECK prod-weu") == Check("prod-weu", None, None)


def test_slack_wrapped_links_are_unwrapped():
    parsed = parse_slash("check prod <https://api.contoso.com|api.contoso.com>")
    assert isinstance(parsed, Check) and parsed.endpoint is not None
    assert parsed.endpoint.host == "api.contoso.com"
    probe = parse_mention("<@U0BOT> probe <https://db.contoso.com:8443>")
    assert isinstance(probe, Probe) and probe.endpoint.port == 8443


@pytest.mark.parametrize("text", ["", "help", "HELP me"])
def test_help(text):
    assert parse_slash(text) == Help()


def test_clusters():
    assert parse_slash("clusters") == Clusters()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("frobnicate", "unknown command"),
        ("check", "name the cluster"),
        ("check prod https://x.test extra", "unexpected 'extra'"),
        ("check prod --pod", "--pod needs NAMESPACE/NAME"),
        ("check prod --pod Bad/Name", "give NAMESPACE/NAME"),
        ("check prod --pod ns/p;rm", "give NAMESPACE/NAME"),
        ("check '$(id)'", "is not a cluster alias"),
        ("check prod ftp://x.test", "ftp"),
        ("check prod 'unterminated", "cannot read the command"),
    ],
)
def test_bad_slash_commands_say_what_is_wrong(text, says):
    with pytest.raises(UsageError) as error:
        parse_slash(text)
    assert says in str(error.value)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("<@U0BOT> recheck", Recheck()),
        ("<@U0BOT> rerun", Recheck()),
        ("re-run", Recheck()),
        ("<@U0BOT> snat", Snat()),
        ("<@U0BOT> summary", Timeline()),
        ("<@U0BOT>", Help()),
        ("<@U0BOT> help", Help()),
    ],
)
def test_mentions(text, command):
    assert parse_mention(text) == command


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("<@U0BOT> probe", "takes one URL"),
        ("<@U0BOT> probe https://a.test https://b.test", "takes one URL"),
        ("<@U0BOT> dance", "unknown request"),
    ],
)
def test_bad_mentions_say_what_is_wrong(text, says):
    with pytest.raises(UsageError) as error:
        parse_mention(text)
    assert says in str(error.value)
