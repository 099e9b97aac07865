"""The sandbox's Slack Web API driven by the real `slack_sdk.WebClient`.

These pin what the bot relies on: answers shaped as Slack's (`ok`, `error`, `ts`,
`message`), threads read back with metadata, edits that keep their history, the three-step
external file upload, modals, auth errors, rate limiting retried by slack_sdk's own
handler, and Block Kit limits. The workspace model (`sandbox.slack`) is checked alongside.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bot.sandbox.server import Sandbox
from bot.sandbox.slack import BOT_ID, BOT_USER_ID, TEAM_ID
from bot.sandbox.world import World, load_world, parse_world

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "lb-healthy.yaml"
CHANNEL = "C0AKSOPS01"
TS = r"^\d{10}\.\d{6}$"
METADATA = {"event_type": "aks_egress_message", "event_payload": {"incident": "i-1", "name": "x"}}


def png(width: int = 3, height: int = 2) -> bytes:
    """A valid, tiny RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(WORLD)


@pytest.fixture(scope="module")
def sandbox(world: World) -> Iterator[Sandbox]:
    with Sandbox(world) as running:
        yield running


@pytest.fixture
def slack(sandbox: Sandbox) -> WebClient:
    sandbox.reset_log()
    return WebClient(token="xoxb-test", base_url=sandbox.slack_url)


def error_of(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value


# --- identity and auth --------------------------------------------------------------------


def test_auth_test_answers_the_bot_identity(sandbox: Sandbox, slack: WebClient) -> None:
    assert sandbox.slack_url.startswith("http://127.0.0.1:")
    assert sandbox.slack_url.endswith("/api/")
    answer = slack.auth_test()
    assert answer.status_code == 200
    assert answer["ok"] is True
    assert (answer["user_id"], answer["bot_id"], answer["team_id"]) == (
        BOT_USER_ID,
        BOT_ID,
        TEAM_ID,
    )
    (call,) = sandbox.slack.calls()
    assert (call.method, call.token, call.status) == ("auth.test", "xoxb-test", 200)
    assert call.response["user_id"] == BOT_USER_ID


def test_bad_or_missing_tokens_and_unknown_methods(sandbox: Sandbox) -> None:
    bogus = WebClient(token="not-a-slack-token", base_url=sandbox.slack_url)
    assert error_of(bogus.auth_test).response["error"] == "invalid_auth"
    anonymous = WebClient(base_url=sandbox.slack_url)
    assert error_of(anonymous.auth_test).response["error"] == "not_authed"
    client = WebClient(token="xoxb-test", base_url=sandbox.slack_url)
    unknown = error_of(lambda: client.api_call("chat.frobnicate")).response
    assert (unknown.status_code, unknown["error"]) == (404, "unknown_method")


# --- messages -----------------------------------------------------------------------------


def test_post_then_update_keeps_the_edit_history(sandbox: Sandbox, slack: WebClient) -> None:
    posted = slack.chat_postMessage(
        channel=CHANNEL,
        text="Checking egress for web-prod-weu…",
        blocks=[section("*Checking* egress")],
        metadata=METADATA,
        unfurl_links=False,
        unfurl_media=False,
    )
    assert posted["channel"] == CHANNEL
    assert posted["ts"] == posted["message"]["ts"]
    assert posted["message"]["bot_id"] == BOT_ID
    assert posted["message"]["metadata"] == METADATA
    second = slack.chat_postMessage(channel=CHANNEL, text="later")
    assert float(second["ts"]) > float(posted["ts"])
    ts = posted["ts"]

    updated = slack.chat_update(channel=CHANNEL, ts=ts, text="Done", blocks=[section("*Done*")])
    assert (updated["ts"], updated["text"]) == (ts, "Done")
    assert updated["message"]["edited"]["user"] == BOT_USER_ID
    slack.chat_update(channel=CHANNEL, ts=ts, text="Done, text only")  # blocks removed

    (current,) = sandbox.slack.thread(CHANNEL, ts)
    assert current["text"] == "Done, text only"
    assert "blocks" not in current
    assert current["metadata"] == METADATA  # retained when not sent
    history = sandbox.slack.history(CHANNEL, ts)
    assert [v["text"] for v in history] == ["Checking egress for web-prod-weu…", "Done"]
    assert history[1]["blocks"] == [section("*Done*")]

    missing = error_of(lambda: slack.chat_update(channel=CHANNEL, ts="1000000000.000001", text="x"))
    assert missing.response["error"] == "message_not_found"
    calls = sandbox.slack.calls("chat.update")
    assert calls[0].args["blocks"] == [section("*Done*")]
    assert calls[-1].response == {"ok": False, "error": "message_not_found"}


def test_thread_replies_come_back_in_order_with_metadata(
    sandbox: Sandbox, slack: WebClient
) -> None:
    root = sandbox.slack.user_message(CHANNEL, "<@U0AKSBOT01> check web-prod-weu")
    first = slack.chat_postMessage(channel=CHANNEL, thread_ts=root, text="1", metadata=METADATA)
    second = slack.chat_postMessage(channel=CHANNEL, thread_ts=root, text="2")
    slack.chat_update(channel=CHANNEL, ts=first["ts"], text="1 (updated)")

    replies = slack.conversations_replies(channel=CHANNEL, ts=root, include_all_metadata=True)
    messages = replies["messages"]
    assert [m["ts"] for m in messages] == [root, first["ts"], second["ts"]]
    assert messages[0]["reply_count"] == 2
    assert messages[0]["thread_ts"] == root
    assert all(m["thread_ts"] == root for m in messages[1:])
    assert messages[1]["parent_user_id"] == "U0AKSUSER1"
    assert messages[1]["text"] == "1 (updated)"
    assert messages[1]["metadata"] == METADATA
    assert replies["has_more"] is False

    plain = slack.conversations_replies(channel=CHANNEL, ts=root)
    assert all("metadata" not in m for m in plain["messages"])
    assert sandbox.slack.thread(CHANNEL, root) == messages
    roots = [m["ts"] for m in sandbox.slack.messages(CHANNEL)]
    everything = [m["ts"] for m in sandbox.slack.messages(CHANNEL, replies=True)]
    assert root in roots and first["ts"] not in roots and first["ts"] in everything

    paged = slack.conversations_replies(channel=CHANNEL, ts=root, limit=2)
    assert paged["has_more"] is True
    rest = slack.conversations_replies(
        channel=CHANNEL, ts=root, limit=2, cursor=paged["response_metadata"]["next_cursor"]
    )
    assert [m["ts"] for m in rest["messages"]] == [root, second["ts"]]

    gone = error_of(lambda: slack.conversations_replies(channel=CHANNEL, ts="1000000000.000009"))
    assert gone.response["error"] == "thread_not_found"


def test_post_ephemeral(sandbox: Sandbox, slack: WebClient) -> None:
    root = slack.chat_postMessage(channel=CHANNEL, text="root")["ts"]
    answer = slack.chat_postEphemeral(
        channel=CHANNEL, user="U0AKSUSER1", thread_ts=root, text="only you", blocks=[]
    )
    assert answer.data.keys() == {"ok", "message_ts"}
    assert float(answer["message_ts"]) > float(root)
    shown = sandbox.slack.ephemerals(CHANNEL)[-1]
    assert (shown["user"], shown["thread_ts"], shown["text"]) == ("U0AKSUSER1", root, "only you")
    assert len(sandbox.slack.thread(CHANNEL, root)) == 1  # never part of the thread


def test_form_encoded_arguments_are_parsed(sandbox: Sandbox, slack: WebClient) -> None:
    """Slack's documented encoding: blocks and metadata as JSON strings in a form body."""
    answer = slack.api_call(
        "chat.postMessage",
        params={
            "channel": CHANNEL,
            "text": "form",
            "blocks": json.dumps([section("form")]),
            "metadata": json.dumps(METADATA),
        },
    )
    message = sandbox.slack.thread(CHANNEL, answer["ts"])[0]
    assert message["blocks"] == [section("form")]
    assert message["metadata"] == METADATA


def test_usergroup_members(sandbox: Sandbox, slack: WebClient) -> None:
    sandbox.slack.set_usergroup("S0ONCALL01", ["U0AKSUSER1", "W0AKSUSER2"])
    members = slack.usergroups_users_list(usergroup="S0ONCALL01")
    assert members.data == {"ok": True, "users": ["U0AKSUSER1", "W0AKSUSER2"]}
    unknown = error_of(lambda: slack.usergroups_users_list(usergroup="S0NOSUCH01"))
    assert unknown.response["error"] == "no_such_subteam"
    missing = error_of(lambda: slack.api_call("usergroups.users.list"))
    assert missing.response["error"] == "invalid_arguments"
    with pytest.raises(ValueError):
        sandbox.slack.set_usergroup("@oncall", [])


# --- validation ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_arguments_slack_validates(slack: WebClient) -> None:
    too_many = error_of(
        lambda: slack.chat_postMessage(channel=CHANNEL, text="x", blocks=[{"type": "divider"}] * 51)
    ).response
    assert too_many["error"] == "invalid_blocks"
    assert too_many["errors"] == ["must be less than 51 items [json-pointer:/blocks]"]
    assert too_many["response_metadata"]["messages"][0].startswith("[ERROR] ")
    slack.chat_postMessage(channel=CHANNEL, text="x", blocks=[{"type": "divider"}] * 50)

    untyped = error_of(lambda: slack.chat_postMessage(channel=CHANNEL, blocks=[{"text": "x"}]))
    assert untyped.response["error"] == "invalid_blocks"
    long_text = error_of(lambda: slack.chat_postMessage(channel=CHANNEL, text="x" * 40_001))
    assert long_text.response["error"] == "msg_too_long"
    nowhere = error_of(lambda: slack.chat_postMessage(channel="#not-an-id", text="x"))
    assert nowhere.response["error"] == "channel_not_found"
    empty = error_of(lambda: slack.chat_postMessage(channel=CHANNEL))
    assert empty.response["error"] == "no_text"
    bad_meta = error_of(
        lambda: slack.chat_postMessage(channel=CHANNEL, text="x", metadata={"event_type": "y"})
    )
    assert bad_meta.response["error"] == "invalid_metadata_schema"


# --- files --------------------------------------------------------------------------------


def test_files_upload_v2_shares_the_png_in_the_thread(sandbox: Sandbox, slack: WebClient) -> None:
    root = slack.chat_postMessage(channel=CHANNEL, text="report")["ts"]
    image = png()
    answer = slack.files_upload_v2(
        channel=CHANNEL,
        thread_ts=root,
        content=image,
        filename="chart.png",
        title="SNAT ports",
        initial_comment="SNAT port use, last 24 h",
    )
    file_id = answer["file"]["id"]
    assert answer["file"]["name"] == "chart.png"
    assert answer["file"]["mimetype"] == "image/png"
    assert (answer["file"]["original_w"], answer["file"]["original_h"]) == (3, 2)

    assert [c.method for c in sandbox.slack.calls()] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    upload = sandbox.slack.calls("upload")[0]
    assert (upload.status, upload.response, upload.args) == (200, f"OK - {len(image)}", image)

    (stored,) = [f for f in sandbox.slack.files() if f["id"] == file_id]
    assert stored["content"] == image
    assert stored["content"].startswith(b"\x89PNG\r\n\x1a\n")
    assert stored["title"] == "SNAT ports"

    thread = sandbox.slack.thread(CHANNEL, root)
    assert len(thread) == 2
    share = thread[1]
    assert share["text"] == "SNAT port use, last 24 h"
    assert share["thread_ts"] == root
    assert [f["id"] for f in share["files"]] == [file_id]


def test_upload_completion_checks_the_file(slack: WebClient) -> None:
    reserved = slack.files_getUploadURLExternal(filename="never.png", length=10)
    assert reserved["upload_url"].startswith("http://127.0.0.1:")
    unsent = error_of(
        lambda: slack.files_completeUploadExternal(
            files=[{"id": reserved["file_id"]}], channel_id=CHANNEL
        )
    )
    assert unsent.response["error"] == "file_not_found"


# --- views --------------------------------------------------------------------------------


def test_views_open_and_update(sandbox: Sandbox, slack: WebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "check",
        "title": {"type": "plain_text", "text": "Check egress"},
        "blocks": [section("Which cluster?")],
    }
    opened = slack.views_open(trigger_id="111.222.valid", view=view)["view"]
    assert opened["id"].startswith("V")
    assert (opened["callback_id"], opened["blocks"]) == ("check", view["blocks"])
    reused = error_of(lambda: slack.views_open(trigger_id="111.222.valid", view=view))
    assert reused.response["error"] == "exchanged_trigger_id"

    changed = copy.deepcopy(view)
    changed["blocks"] = [section("Checking…")]
    updated = slack.views_update(view_id=opened["id"], view=changed, hash=opened["hash"])
    assert updated["view"]["blocks"] == changed["blocks"]
    stale = error_of(
        lambda: slack.views_update(view_id=opened["id"], view=changed, hash=opened["hash"])
    )
    assert stale.response["error"] == "hash_conflict"
    assert any(v["id"] == opened["id"] for v in sandbox.slack.views())


# --- rate limiting --------------------------------------------------------------------------


def test_ratelimited_post_is_retried_after_retry_after(world: World) -> None:
    data = copy.deepcopy(world.data)
    data["faults"] = {
        "rules": [
            {
                "api": "slack",
                "method": "POST",
                "pathContains": "chat.postMessage",
                "status": 429,
                "headers": {"Retry-After": "1"},
                "times": 1,
            },
        ]
    }
    with Sandbox(parse_world(data, "ratelimited")) as sandbox:
        client = WebClient(
            token="xoxb-test",
            base_url=sandbox.slack_url,
            retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
        )
        answer = client.chat_postMessage(channel=CHANNEL, text="after a pause")
        assert answer["ok"] is True
        first, second = sandbox.calls("slack")
        assert (first.status, first.response) == (429, {"ok": False, "error": "ratelimited"})
        assert second.status == 200
        assert second.started - first.ended >= 1.0
        assert len(sandbox.slack.messages(CHANNEL)) == 1

        # Without a retry handler slack_sdk raises, with Slack's body and header.
        sandbox.faults.add({"api": "slack", "pathContains": "postEphemeral", "status": 429})
        plain = WebClient(token="xoxb-test", base_url=sandbox.slack_url)
        limited = error_of(lambda: plain.chat_postEphemeral(channel=CHANNEL, user="U1X", text="x"))
        assert limited.response.status_code == 429
        assert limited.response["error"] == "ratelimited"
        assert limited.response.headers["Retry-After"] == "1"


# --- Socket Mode --------------------------------------------------------------------------


def test_socket_mode_needs_an_app_level_token(sandbox: Sandbox, slack: WebClient) -> None:
    refused = error_of(lambda: slack.apps_connections_open(app_token="xoxb-not-an-app-token"))
    assert refused.response["error"] == "not_allowed_token_type"
    app = WebClient(token="xapp-1-A0AKSAPP01-1-secret", base_url=sandbox.slack_url)
    assert app.apps_connections_open(app_token=app.token)["url"].startswith("ws://127.0.0.1:")
    misuse = error_of(lambda: app.chat_postMessage(channel=CHANNEL, text="x"))
    assert misuse.response["error"] == "not_allowed_token_type"


def test_socket_mode_envelopes_are_acknowledged_by_a_real_client(sandbox: Sandbox) -> None:
    web = WebClient(token="xoxb-test", base_url=sandbox.slack_url)
    client = SocketModeClient(app_token="xapp-1-A0AKSAPP01-1-secret", web_client=web)
    seen: list[dict] = []

    def answer(client: SocketModeClient, request: SocketModeRequest) -> None:
        seen.append({"type": request.type, "payload": request.payload})
        reply = (
            {"text": f"got {request.payload.get('text')}"}
            if request.type == "slash_commands"
            else None
        )
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id, reply))

    client.socket_mode_request_listeners.append(answer)
    client.connect()
    try:
        ack = sandbox.socket_mode.deliver(
            "slash_commands",
            {"command": "/aks-egress", "text": "help", "channel_id": CHANNEL, "user_id": "U1"},
            accepts_response_payload=True,
        )
        assert ack["payload"] == {"text": "got help"}
        event = {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}
        ack = sandbox.socket_mode.deliver("events_api", event, retry_attempt=1)
        assert "payload" not in ack or not ack["payload"]
        assert [s["type"] for s in seen] == ["slash_commands", "events_api"]
        # a used ticket does not open a second connection
        url = WebClient(token="xapp-1-x", base_url=sandbox.slack_url).apps_connections_open(
            app_token="xapp-1-x"
        )["url"]
        with connect(url):
            pass
        with pytest.raises(InvalidStatus):
            connect(url)
    finally:
        client.close()
