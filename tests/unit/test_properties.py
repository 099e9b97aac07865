"""Property-based tests of everything that reads hostile text: the URL and host parser, the
destination policy, the command and mention parsers, Slack payloads and the world loader
(values in fixes: tests/unit/test_shellsafe.py).
No exception escapes, nothing reaches a shell, and every refusal explains itself."""

from __future__ import annotations

import copy
import io
import ipaddress
import json
import shlex
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.collect.probe import ProbeSettings, probe_command
from bot.destination import (
    ALWAYS_DENIED,
    PRIVATE,
    DestinationPolicy,
    judge,
    judge_address,
    parse_prefixes,
    probe_rules,
)
from bot.endpoint import Endpoint, EndpointError, parse_endpoint
from bot.sandbox import probes as emulator
from bot.sandbox.world import WorldError, load_world, parse_world
from bot.slack.commands import Check, Probe, UsageError, parse_mention, parse_slash
from tests.helpers import WORLDS

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

octet = st.integers(0, 255)
dotted = st.builds(lambda *o: ".".join(map(str, o)), octet, octet, octet, octet)
addresses = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostname = st.lists(label, min_size=1, max_size=4).map(".".join)
# Other spellings of addresses: hex, octal, integer, short forms.
odd_host = st.one_of(
    st.builds(lambda *o: ".".join(hex(x) for x in o), octet, octet, octet, octet),
    st.builds(lambda *o: ".".join(f"0{x:o}" for x in o), octet, octet, octet, octet),
    st.integers(0, 2**32 - 1).map(str),
    st.builds(lambda a, b: f"{a}.{b}", octet, st.integers(0, 2**24 - 1)),
)
url_text = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https", "telnet", "ftp", "HTTPS", "file", "gopher"]),
    st.one_of(hostname, dotted, odd_host, st.text(max_size=20)),
    st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}")),
    st.text(max_size=30).map(lambda t: "/" + t),
)
any_endpoint_text = st.one_of(url_text, st.text(max_size=80))


def _safe_endpoint(endpoint: Endpoint) -> None:
    assert 0 < endpoint.port < 65536
    assert endpoint.scheme in ("http", "https", "telnet")
    assert not any(c.isspace() or c in "`$;|<>\"'\\[]{}" for c in endpoint.url)
    assert endpoint.url.isascii() and endpoint.url.isprintable()
    try:
        ipaddress.IPv4Address(endpoint.host)
    except ValueError:  # a name: never a numeric spelling of an address
        last = endpoint.host.rstrip(".").rsplit(".", 1)[-1]
        assert not last.isdigit() and not last.lower().startswith("0x")
    assert shlex.split(shlex.quote(endpoint.url)) == [endpoint.url]


@QUICK
@given(any_endpoint_text)
def test_the_parser_answers_every_text_with_an_endpoint_or_a_reason(text):
    try:
        endpoint = parse_endpoint(text)
    except EndpointError as exc:
        assert str(exc).strip()
        return
    _safe_endpoint(endpoint)


@QUICK
@given(odd_host, st.sampled_from(["http", "https"]))
def test_other_spellings_of_addresses_never_pass(host, scheme):
    try:
        endpoint = parse_endpoint(f"{scheme}://{host}/")
    except EndpointError:
        return
    # only a genuine dotted quad may pass (e.g. "1.2.3.4" written as "1.2.3.4")
    assert str(ipaddress.IPv4Address(endpoint.host)) == endpoint.host


@QUICK
@given(addresses, st.lists(st.sampled_from(["10.0.0.0/8", "192.168.0.0/16", "0.0.0.0/0"])))
def test_the_policy_refuses_what_it_must_and_says_why(address, allowed):
    policy = DestinationPolicy(allow_private=parse_prefixes(allowed))
    refusal = judge(parse_endpoint(f"https://{address}/"), policy)
    always = any(address in net for net, _ in ALWAYS_DENIED)
    private = any(address in net for net, _ in PRIVATE)
    allow_listed = any(address in net for net in policy.allow_private)
    assert (refusal is not None) == (always or (private and not allow_listed))
    if refusal:
        assert refusal.reason.strip() and refusal.remedy.strip()
        assert str(address) in refusal.reason


@QUICK
@given(st.lists(addresses, min_size=1, max_size=5))
def test_a_name_is_refused_when_any_of_its_addresses_is(found):
    endpoint = parse_endpoint("https://api.contoso.com")
    refusal = judge(endpoint, DestinationPolicy(), found)
    assert (refusal is None) == all(judge_address(a, DestinationPolicy()) is None for a in found)


@QUICK
@given(addresses, st.lists(st.sampled_from(["10.50.0.0/16", "100.64.0.0/10", "10.0.0.0/8"])))
def test_the_probe_containers_rules_agree_with_the_policy(address, allowed):
    """What the pod applies (first-match rules, as the sandbox's emulation of the script
    reads them) refuses exactly what the policy refuses."""
    cluster = {"properties": {"networkProfile": {"podCidr": "10.244.0.0/16"}}}
    policy = DestinationPolicy(allow_private=parse_prefixes(allowed)).with_cluster(cluster)
    verdict = emulator._verdict(str(address), probe_rules(policy))
    assert verdict.startswith("deny:") == (judge_address(address, policy) is not None)


@QUICK
@given(any_endpoint_text)
def test_the_probe_command_carries_the_url_as_one_argument(text):
    try:
        endpoint = parse_endpoint(text)
    except EndpointError:
        return
    command = probe_command(endpoint.url, probe_rules(DestinationPolicy()), ProbeSettings())
    assert command[-1] == endpoint.url and endpoint.host not in command[2]


words = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "check",
                "probe",
                "recheck",
                "snat",
                "summary",
                "help",
                "clusters",
                "--pod",
                "web/api-1",
                "prod-weu",
                "<@U0BOT>",
                "'",
                '"',
                "\\",
            ]
        ),
        any_endpoint_text,
        st.builds(lambda a, b: f"<{a}|{b}>", url_text, url_text),
    ),
    max_size=6,
).map(" ".join)


@QUICK
@given(words)
def test_the_command_parsers_answer_or_explain(text):
    for parse in (parse_slash, parse_mention):
        try:
            parsed = parse(text)
        except UsageError as exc:
            assert str(exc).strip()
            continue
        endpoint = getattr(parsed, "endpoint", None)
        if endpoint is not None:
            _safe_endpoint(endpoint)
        if isinstance(parsed, Check):
            assert parsed.pod is None or "/" in parsed.pod
        if isinstance(parsed, Probe):
            assert parsed.endpoint is not None


# -- Slack payloads through the real HTTP handler -------------------------------------------

SECRET = "property-secret"
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
payload = st.fixed_dictionaries(
    {"type": st.sampled_from(["block_actions", "view_submission", "event_callback", "x"])},
    optional={
        "user": st.one_of(json_value, st.fixed_dictionaries({"id": st.text(max_size=12)})),
        "channel": st.one_of(json_value, st.fixed_dictionaries({"id": st.text(max_size=12)})),
        "actions": st.lists(
            st.fixed_dictionaries(
                {
                    "action_id": st.sampled_from(
                        ["rerun", "probe_endpoint", "show_evidence", "mark_resolved", "other"]
                    ),
                    "value": st.one_of(st.text(max_size=30), json_value),
                }
            ),
            max_size=2,
        ),
        "view": st.fixed_dictionaries(
            {
                "type": st.just("modal"),
                "callback_id": st.sampled_from(["probe_endpoint_modal", "x"]),
                "private_metadata": st.text(max_size=40),
                "state": json_value,
            }
        ),
        "event": json_value,
        "trigger_id": st.text(max_size=10),
    },
)


@pytest.fixture(scope="module")
def wsgi(tmp_path_factory):
    import redis

    from bot.admission import queue_on
    from bot.directory import Directory
    from bot.health import Probes
    from bot.redisserver import RedisServer
    from bot.sandbox.server import Sandbox
    from bot.slack.app import AppDeps, build_app
    from bot.slack.http import wsgi_app
    from bot.store import Store

    with RedisServer() as server, Sandbox(WORLDS / "nsg-subnet-deny.yaml") as sandbox:
        store = Store.from_url(server.url)
        queue = queue_on(redis.Redis.from_url(server.url))
        deps = AppDeps(Directory.open(sandbox.world.clusters), store, queue)
        client = WebClient(token="xoxb-prop", base_url=sandbox.slack_url)
        probes = Probes(redis=lambda: None, slack=None)
        yield wsgi_app(build_app(client, SECRET, deps), probes, SECRET)


def _call(app: Any, body: bytes, content_type: str, signed: bool = True) -> tuple[str, bytes]:
    ts = str(int(time.time()))
    signature = SignatureVerifier(SECRET if signed else "x").generate_signature(
        timestamp=ts, body=body.decode("utf-8", "replace")
    )
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": ts,
        "HTTP_X_SLACK_SIGNATURE": signature,
        "SERVER_NAME": "x",
        "SERVER_PORT": "1",
        "wsgi.url_scheme": "http",
    }
    seen: list[str] = []
    out = b"".join(app(environ, lambda status, headers, *_: seen.append(status)))
    return seen[0], out


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload)
def test_no_slack_payload_gets_a_traceback_out(wsgi, body):
    form = urllib.parse.urlencode({"payload": json.dumps(body)}).encode()
    status, out = _call(wsgi, form, "application/x-www-form-urlencoded")
    assert status[:3] in ("200", "400", "401", "404", "500") and b"Traceback" not in out
    status, _ = _call(wsgi, form, "application/x-www-form-urlencoded", signed=False)
    assert status.startswith("401")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_any_bytes_are_answered(wsgi, body):
    status, out = _call(wsgi, body, "application/x-www-form-urlencoded")
    assert status[:3] in ("200", "400", "401", "404", "500") and b"Traceback" not in out


# -- the world loader ------------------------------------------------------------------------

BASE = yaml.safe_load((WORLDS / "lb-healthy.yaml").read_text())
TOP_KEYS = sorted(BASE)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(TOP_KEYS), json_value)
def test_a_broken_world_is_refused_with_a_reason(key, value):
    data = copy.deepcopy(BASE)
    data[key] = value
    try:
        parse_world(data)
    except WorldError as exc:
        assert str(exc).strip() and "Traceback" not in str(exc)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_any_world_text_loads_or_says_why(tmp_path_factory, text):
    path = Path(tmp_path_factory.mktemp("w")) / "world.yaml"
    path.write_text(text)
    try:
        load_world(path)
    except WorldError as exc:
        assert str(exc).strip()
