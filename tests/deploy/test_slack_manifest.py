"""deploy/slack: both app manifests are valid Slack manifests and declare exactly the slash
commands, events, interactivity and scopes the code uses.

"Used" is computed from the code: Bolt listener decorators (`@app.command`, `@app.event`,
`@app.action`, `@app.view`, ...) and calls of slack_sdk WebClient methods, mapped to scopes
through deploy/slack/scopes.yaml. A new call or listener changes what is required, so this
test fails until the manifests (and, for a new method, the table) follow.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.web.base_client import BaseClient

from bot.slack.http import EVENTS_PATH

ROOT = Path(__file__).resolve().parents[2]
SLACK = ROOT / "deploy" / "slack"
SCHEMA = ROOT / "tests" / "fixtures" / "slack" / "manifest" / "manifest.schema.1.0.0.json"
MANIFESTS = {"socket": SLACK / "manifest.yaml", "http": SLACK / "manifest-http.yaml"}
TABLE = yaml.safe_load((SLACK / "scopes.yaml").read_text())
# Bolt listeners whose requests arrive through Interactivity & Shortcuts.
INTERACTIVE = {"action", "view", "view_submission", "view_closed", "shortcut", "options"}
LISTENERS = INTERACTIVE | {"command", "event", "message"}


def code_files() -> list[Path]:
    """The bot's own code. Not the sandbox (a fake Slack, serving the API) nor the demo,
    which reads the sandbox's state to print it: neither talks to a real workspace."""
    return [
        p
        for p in sorted((ROOT / "bot").rglob("*.py"))
        if "sandbox" not in p.parts and p.name != "demo.py"
    ]


def web_api_methods() -> set[str]:
    """slack_sdk WebClient's Web API methods (chat_postMessage, files_upload_v2, ...)."""
    base = set(dir(BaseClient))
    return {
        m
        for m in dir(WebClient)
        if "_" in m and not m.startswith("_") and m not in base and callable(getattr(WebClient, m))
    }


def _constants(tree: ast.Module) -> dict[str, str]:
    return {
        t.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for t in node.targets
        if isinstance(t, ast.Name) and isinstance(node.value.value, str)
    }


def used() -> dict[str, set[str]]:
    """What the code uses: Web API methods (as slack_sdk names), listeners by kind."""
    methods = web_api_methods()
    found: dict[str, set[str]] = {"calls": set()} | {kind: set() for kind in LISTENERS}
    for path in code_files():
        tree = ast.parse(path.read_text())
        constants = _constants(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in methods:
                    found["calls"].add(node.func.attr)
                if node.func.attr == "api_call" and node.args:
                    arg = node.args[0]
                    assert isinstance(arg, ast.Constant), f"{path}: api_call with a variable"
                    found["calls"].add(arg.value.replace(".", "_", 1))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for deco in node.decorator_list:
                    if not (
                        isinstance(deco, ast.Call)
                        and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr in LISTENERS
                        and isinstance(deco.func.value, ast.Name)
                        and deco.func.value.id == "app"
                    ):
                        continue
                    arg = deco.args[0] if deco.args else None
                    if isinstance(arg, ast.Constant):
                        value = arg.value
                    elif isinstance(arg, ast.Name) and arg.id in constants:
                        value = constants[arg.id]
                    else:
                        value = ast.unparse(arg) if arg else ""
                    found[deco.func.attr].add(value)
    return found


def api_method(sdk_name: str) -> str:
    """chat_postMessage -> chat.postMessage, usergroups_users_list -> usergroups.users.list:
    the name slack_sdk's method itself passes to api_call."""
    source = inspect.getsource(getattr(WebClient, sdk_name))
    called = re.search(r"api_call\(\s*\"([\w.]+)\"", source)
    assert called, f"slack_sdk's WebClient.{sdk_name} names no Web API method"
    return called.group(1)


def required() -> dict[str, set[str]]:
    code = used()
    unknown = []
    scopes: set[str] = set()
    for call in code["calls"]:
        web_methods = TABLE["helpers"].get(call) or [api_method(call)]
        for m in web_methods:
            if m not in TABLE["methods"]:
                unknown.append(f"{call} -> {m}")
                continue
            scopes |= set(TABLE["methods"][m])
    assert not unknown, f"Slack methods with no entry in deploy/slack/scopes.yaml: {unknown}"
    for event in code["event"]:
        assert event in TABLE["events"], f"event {event!r}: add its scope to scopes.yaml"
        scopes |= set(TABLE["events"][event])
    if code["command"]:
        scopes |= set(TABLE["commands"])
    return {
        "scopes": scopes,
        "events": code["event"],
        "commands": code["command"],
        "interactive": {k for k in INTERACTIVE if code[k]},
    }


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA.read_text())


def load(kind: str) -> dict:
    return yaml.safe_load(MANIFESTS[kind].read_text())


@pytest.mark.parametrize("kind", MANIFESTS)
def test_manifest_matches_slacks_schema(kind, schema):
    jsonschema.Draft7Validator(schema).validate(load(kind))


def test_the_scan_sees_the_code():
    code = used()
    assert {"chat_postMessage", "chat_update"} <= code["calls"], code["calls"]
    assert code["command"] and code["event"] and code["action"]


@pytest.mark.parametrize("kind", MANIFESTS)
def test_manifest_declares_exactly_what_the_code_uses(kind):
    manifest = load(kind)
    need = required()
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user or optional scopes"
    assert len(scopes["bot"]) == len(set(scopes["bot"]))
    assert set(scopes["bot"]) == need["scopes"], (
        f"missing {sorted(need['scopes'] - set(scopes['bot']))}, "
        f"unused {sorted(set(scopes['bot']) - need['scopes'])}"
    )
    events = manifest["settings"]["event_subscriptions"]
    assert set(events["bot_events"]) == need["events"]
    assert not events.get("user_events")
    commands = manifest["features"]["slash_commands"]
    assert {c["command"] for c in commands} == need["commands"]
    interactivity = manifest["settings"].get("interactivity", {})
    assert interactivity.get("is_enabled", False) == bool(need["interactive"])
    for absent in ("shortcuts", "unfurl_domains", "workflow_steps"):
        assert absent not in manifest["features"]


def test_socket_mode_manifest_has_no_public_endpoint():
    manifest = load("socket")
    assert manifest["settings"]["socket_mode_enabled"] is True
    text = MANIFESTS["socket"].read_text()
    body = yaml.safe_dump(manifest)
    assert "request_url" not in body and "url:" not in body, text


def test_http_manifest_sends_everything_to_the_events_path():
    manifest = load("http")
    assert manifest["settings"]["socket_mode_enabled"] is False
    urls = [c["url"] for c in manifest["features"]["slash_commands"]]
    urls += [
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
    ]
    for url in urls:
        assert url.startswith("https://") and url.endswith(EVENTS_PATH), url


def test_both_manifests_agree_except_for_transport():
    socket, http = load("socket"), load("http")
    for m in (socket, http):
        m["settings"].pop("socket_mode_enabled")
        m["settings"]["event_subscriptions"].pop("request_url", None)
        m["settings"]["interactivity"].pop("request_url", None)
        for c in m["features"]["slash_commands"]:
            c.pop("url", None)
    assert socket == http


def test_every_table_entry_is_still_used():
    """A method or event no longer called drops out of scopes.yaml too."""
    code = used()
    called = set()
    for call in code["calls"]:
        called |= set(TABLE["helpers"].get(call) or [api_method(call)])
    stale = set(TABLE["methods"]) - called - {"auth.test"}  # auth.test: Bolt's own
    assert not stale, f"scopes.yaml lists methods the code no longer calls: {sorted(stale)}"
    assert set(TABLE["events"]) == code["event"]
