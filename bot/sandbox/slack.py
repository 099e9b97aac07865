"""The Slack Web API of one workspace, as the bot's real `slack_sdk.WebClient` sees it.

`SlackApi(request)` answers `/api/<method>` the way slack.com does: HTTP 200 with
`{"ok": true, ...}` or `{"ok": false, "error": "..."}` (plus `errors` / `response_metadata`
where Slack sends them), `warning`s for charset mistakes, HTTP 404 `unknown_method`, and HTTP
429 `ratelimited` with `Retry-After` when a world fault says so (server.py applies faults).
Arguments are read from the query string and the body, form-encoded (how slack_sdk sends
read methods, with JSON-encoded `blocks` / `metadata` / `files` strings and booleans as
"1"/"0"), JSON (how it sends chat.* and views.*) or multipart. The token comes from
`Authorization: Bearer`, or a `token` form/query argument; JSON bodies cannot carry it.

Methods: api.test, auth.test, chat.postMessage, chat.update, chat.delete,
chat.postEphemeral, conversations.replies, conversations.history,
files.getUploadURLExternal, the upload itself (`POST /upload/v1/<key>`, raw or multipart,
answered "OK - <length>"), files.completeUploadExternal, views.open, views.update,
views.publish, usergroups.users.list, and apps.connections.open (app-level `xapp-` tokens
only, which no other method takes), whose URL leads to the Socket Mode server of
socket_mode.py. Shapes follow the fixtures in /work/shared/fixtures/slack.

The workspace is a model tests can query: `thread(channel, ts)`, `messages(channel)`,
`history(channel, ts)` (a message's earlier versions), `ephemerals()`, `files()` (with the
uploaded bytes), `views()`, `calls()` (the shared request log, read as Slack calls),
`user_message(...)` to post as a human (the root an app_mention replies under), and
`set_usergroup(id, users)` to say who is in a user group. Timestamps
are deterministic: the world's `now` in seconds, then +100 µs per message.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import mimetypes
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

from bot.model import Json
from bot.sandbox.wire import Request, Response

TEAM_ID = "T0AKSEGRS"
TEAM_NAME = "aks-egress sandbox"
TEAM_DOMAIN = "aks-egress-sandbox"
BOT_USER_ID = "U0AKSBOT01"
BOT_ID = "B0AKSBOT01"
BOT_NAME = "aks-egress"
APP_ID = "A0AKSAPP01"
USER_ID = "U0AKSUSER1"  # whose `xoxp-` tokens act, and the default human poster
USER_NAME = "oncall"

MAX_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_ATTACHMENTS = 100

_JSON = {"Content-Type": "application/json; charset=utf-8"}
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}
_API = "/api/"
_UPLOAD = "/upload/v1/"
_FILES = "/files-pri/"
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USERGROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_TRIGGER = re.compile(r"^[^.\s]+\.[^.\s]+\.[^.\s]+$")
_BLOCK_TYPES = {
    "actions",
    "context",
    "context_actions",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
}
_STATUS_ERRORS = {
    401: "not_authed",
    403: "not_allowed_token_type",
    404: "unknown_method",
    408: "request_timeout",
    429: "ratelimited",
    500: "internal_error",
    503: "service_unavailable",
}


class SlackError(Exception):
    """An `{"ok": false}` answer."""

    def __init__(self, error: str, messages: list[str] | None = None, **extra: Any) -> None:
        super().__init__(error)
        self.error, self.messages, self.extra = error, messages, extra

    def body(self) -> Json:
        body: Json = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in self.messages]}
        return body


@dataclass(frozen=True)
class SlackCall:
    """One request to the emulator, read from the shared request log."""

    method: str  # "chat.postMessage"; "upload" for the POST to an upload_url
    args: Any  # the arguments (query and body merged); bytes for an upload
    token: str | None
    status: int
    response: Any


@dataclass(frozen=True)
class Identity:
    user: str
    bot_id: str | None
    app_level: bool = False  # an `xapp-` token: good for apps.connections.open only


@dataclass
class _Message:
    channel: str
    ts: str
    user: str
    bot_id: str | None
    text: str
    blocks: list[Any] | None = None
    attachments: list[Any] | None = None
    metadata: Json | None = None
    thread_ts: str | None = None  # set on replies (the parent's ts)
    broadcast: bool = False
    files: list[str] | None = None  # file ids of a file share
    edited: Json | None = None
    tombstone: bool = False
    history: list[Json] = field(default_factory=list)

    def version(self) -> Json:
        return copy.deepcopy(
            {
                "text": self.text,
                "blocks": self.blocks,
                "attachments": self.attachments,
                "metadata": self.metadata,
                "edited": self.edited,
            }
        )


@dataclass
class _File:
    id: str
    key: str
    name: str
    length: int
    created: int
    user: str
    alt_txt: str | None = None
    snippet_type: str | None = None
    title: str | None = None
    content: bytes | None = None
    shares: list[tuple[str, str, str | None]] = field(default_factory=list)  # ch, ts, thread


class SlackApi:
    """The emulated Slack Web API of one workspace (one per Sandbox)."""

    api = "slack"
    # The bot token's scopes, sent as X-OAuth-Scopes; None sends no header (tests set it).
    bot_scopes: tuple[str, ...] | None = None

    def __init__(
        self, now: datetime, log: Callable[[], list[Any]], socket_url: Callable[[], str]
    ) -> None:
        self.origin = ""  # http://127.0.0.1:PORT, set by the Sandbox once it listens
        self._socket_url = socket_url  # a new Socket Mode URL (socket_mode.py)
        self._epoch = int(now.timestamp())
        self._log = log
        self._lock = threading.Lock()
        self._ticks = itertools.count(1)
        self._ids = itertools.count(1)
        self._messages: dict[str, list[_Message]] = {}  # channel -> in ts order
        self._ephemerals: list[Json] = []
        self._files: dict[str, _File] = {}
        self._uploads: dict[str, str] = {}  # upload key -> file id
        self._views: dict[str, Json] = {}
        self._home: dict[str, str] = {}  # user -> view id
        self._triggers: set[str] = set()
        self._usergroups: dict[str, list[str]] = {}  # user group id -> member user ids
        self._methods: dict[str, Callable[[Json, Identity], Json]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroup_users,
            "apps.connections.open": self._connections_open,
        }

    # --- HTTP --------------------------------------------------------------------------

    def parse(self, path: str, raw: bytes, content_type: str) -> Any:
        """The body server.py hands to `__call__`: bytes for uploads, else the arguments."""
        if path.startswith(_UPLOAD):
            return raw
        if not raw:
            return None
        kind = content_type.lower()
        if "application/json" in kind:
            return json.loads(raw)
        if "multipart/form-data" in kind:
            return _multipart(raw, content_type)
        if "x-www-form-urlencoded" in kind or not kind:
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        return raw

    def error(self, status: int, request: Request) -> Response:
        """Slack's answer for a malformed body (400: still HTTP 200) or an injected fault."""
        if status == 400:
            json_body = "json" in (request.headers.get("Content-Type") or "").lower()
            body = {"ok": False, "error": "invalid_json" if json_body else "invalid_form_data"}
            return Response(200, dict(_JSON), body)
        headers = dict(_JSON)
        if status == 429:
            headers["Retry-After"] = "1"
        error = _STATUS_ERRORS.get(status, "fatal_error" if status >= 500 else "invalid_request")
        return Response(status, headers, {"ok": False, "error": error})

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path.startswith(_UPLOAD):
            return self._upload(request)
        if path.startswith(_FILES):
            return self._download(request)
        method = path[len(_API) :] if path.startswith(_API) else ""
        if method == "api.test":
            return Response(200, dict(_JSON), self._api_test(_args(request)))
        handler = self._methods.get(method)
        if handler is None:
            body = {"ok": False, "error": "unknown_method", "req_method": method or path}
            return Response(404, dict(_JSON), body)
        try:
            if isinstance(request.body, (list, str, int, float)):
                raise SlackError("json_not_object")
            who = _identity(request)
            if who.app_level != (method == "apps.connections.open"):
                raise SlackError("not_allowed_token_type")
            body = handler(_args(request), who)
        except SlackError as exc:
            body = exc.body()
        warnings = _charset_warnings(request)
        if warnings:
            body["warning"] = ",".join(warnings)
            body.setdefault("response_metadata", {})["warnings"] = warnings
        headers = dict(_JSON)
        if self.bot_scopes is not None and (_identity_token(request) or "").startswith("xoxb-"):
            headers["X-OAuth-Scopes"] = ",".join(self.bot_scopes)  # as Slack sends it
        return Response(200, headers, body)

    # --- queries for tests and the demo --------------------------------------------------

    def thread(self, channel: str, ts: str) -> list[Json]:
        """The parent (if it exists) then its replies, as they read now (with metadata)."""
        with self._lock:
            parent = self._find(channel, ts)
            root = (parent.thread_ts or parent.ts) if parent else ts
            items = [m for m in self._messages.get(channel, []) if m.ts == root]
            items += self._replies_of(channel, root)
            return [self._render(m) for m in items]

    def messages(self, channel: str, replies: bool = False) -> list[Json]:
        """The channel's top-level messages (and broadcast replies), oldest first, as they
        read now; with `replies`, every message including thread replies, in ts order."""
        with self._lock:
            return [
                self._render(m)
                for m in self._messages.get(channel, [])
                if replies or not m.thread_ts or m.broadcast
            ]

    def history(self, channel: str, ts: str) -> list[Json]:
        """A message's earlier versions, oldest first ({text, blocks, attachments,
        metadata, edited}); the current one is what `thread`/`messages` show."""
        with self._lock:
            message = self._find(channel, ts)
            if message is None:
                raise KeyError(f"no message {ts} in {channel}")
            return copy.deepcopy(message.history)

    def ephemerals(self, channel: str | None = None) -> list[Json]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if channel in (None, e["channel"])]

    def files(self) -> list[Json]:
        """Every file reserved with getUploadURLExternal: Slack's file object plus
        `content` (the uploaded bytes, None before the upload) and `length` (declared)."""
        with self._lock:
            return [
                {**self._file_object(f), "content": f.content, "length": f.length}
                for f in self._files.values()
            ]

    def views(self) -> list[Json]:
        with self._lock:
            return [copy.deepcopy(v) for v in self._views.values()]

    def calls(self, method: str | None = None) -> list[SlackCall]:
        """The requests the emulator answered (faults included), oldest first."""
        calls = []
        for record in self._log():
            name = record.path[len(_API) :] if record.path.startswith(_API) else "upload"
            if record.path.startswith(_FILES):
                name = "download"
            if method not in (None, name):
                continue
            args: Any = dict(record.query)
            if isinstance(record.body, dict):
                args.update(record.body)
            elif record.body is not None:
                args = record.body
            calls.append(SlackCall(name, args, record.token, record.status, record.response))
        return calls

    def user_message(
        self,
        channel: str,
        text: str,
        user: str = USER_ID,
        thread_ts: str | None = None,
        blocks: list[Any] | None = None,
    ) -> str:
        """Post as a human (no API call, nothing logged); returns the message's ts."""
        if not _CHANNEL.match(channel):
            raise ValueError(f"not a channel id: {channel!r}")
        with self._lock:
            ts = self._tick()
            parent = self._find(channel, thread_ts) if thread_ts else None
            root = (parent.thread_ts or parent.ts) if parent else thread_ts
            self._add(_Message(channel, ts, user, None, text, blocks, thread_ts=root))
            return ts

    def set_usergroup(self, usergroup: str, users: list[str]) -> None:
        """Create or replace a user group (an `S…` id) with these members."""
        if not _USERGROUP.match(usergroup):
            raise ValueError(f"not a user group id: {usergroup!r}")
        with self._lock:
            self._usergroups[usergroup] = list(users)

    # --- methods ---------------------------------------------------------------------------

    def _api_test(self, args: Json) -> Json:
        args = {k: v for k, v in args.items() if k != "token"}
        if args.get("error"):
            return {"ok": False, "error": args["error"], "args": args}
        return {"ok": True, "args": args}

    def _auth_test(self, args: Json, who: Identity) -> Json:
        body: Json = {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME if who.bot_id else USER_NAME,
            "team_id": TEAM_ID,
            "user_id": who.user,
        }
        if who.bot_id:
            body["bot_id"] = who.bot_id
        body["is_enterprise_install"] = False
        return body

    def _post_message(self, args: Json, who: Identity) -> Json:
        channel = _channel(args)
        text, blocks, attachments = _content(args)
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        metadata = _metadata(args) or None
        thread_ts = _str(args, "thread_ts")
        with self._lock:
            if thread_ts:
                parent = self._find(channel, thread_ts)
                thread_ts = (parent.thread_ts or parent.ts) if parent else thread_ts
            message = _Message(
                channel,
                self._tick(),
                who.user,
                who.bot_id,
                text,
                blocks,
                attachments,
                metadata,
                thread_ts=thread_ts,
                broadcast=bool(thread_ts) and _flag(args.get("reply_broadcast")),
            )
            self._add(message)
            return {
                "ok": True,
                "channel": channel,
                "ts": message.ts,
                "message": self._render(message),
            }

    def _update(self, args: Json, who: Identity) -> Json:
        channel = _channel(args)
        ts = _str(args, "ts")
        if not ts:
            raise SlackError("message_not_found")
        text, blocks, attachments = _content(args)
        metadata = _metadata(args)
        with self._lock:
            message = self._find(channel, ts)
            if message is None or message.tombstone:
                raise SlackError("message_not_found")
            if message.user != who.user:
                raise SlackError("cant_update_message")
            new_text = text if "text" in args else message.text
            # Current Slack: blocks left out are kept only when text is left out too.
            kept = None if "text" in args else message.blocks
            new_blocks = blocks if "blocks" in args else kept
            new_attachments = attachments if "attachments" in args else message.attachments
            if not new_text and not new_blocks and not new_attachments:
                raise SlackError("no_text")
            message.history.append(message.version())
            message.text, message.blocks, message.attachments = (
                new_text,
                new_blocks,
                new_attachments,
            )
            if metadata is not None:
                message.metadata = metadata or None  # {} removes it
            message.edited = {"user": who.user, "ts": self._tick()}
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "text": message.text,
                "message": self._render(message),
            }

    def _delete(self, args: Json, who: Identity) -> Json:
        channel = _channel(args)
        ts = _str(args, "ts")
        with self._lock:
            message = self._find(channel, ts) if ts else None
            if message is None or message.tombstone:
                raise SlackError("message_not_found")
            if message.user != who.user:
                raise SlackError("cant_delete_message")
            if self._replies_of(channel, message.ts) and not message.thread_ts:
                message.history.append(message.version())
                message.tombstone = True
                message.text, message.blocks, message.attachments = (
                    "This message was deleted.",
                    None,
                    None,
                )
                message.metadata = message.files = None
            else:
                self._messages[channel].remove(message)
            return {"ok": True, "channel": channel, "ts": ts}

    def _post_ephemeral(self, args: Json, who: Identity) -> Json:
        channel = _channel(args)
        user = _str(args, "user")
        if not user or not _USER.match(user):
            raise SlackError("user_not_in_channel")
        text, blocks, attachments = _content(args)
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        with self._lock:
            ts = self._tick()
            self._ephemerals.append(
                {
                    "channel": channel,
                    "user": user,
                    "message_ts": ts,
                    "thread_ts": _str(args, "thread_ts"),
                    "text": text,
                    "blocks": blocks,
                    "attachments": attachments,
                    "sender": who.user,
                }
            )
        return {"ok": True, "message_ts": ts}

    def _replies(self, args: Json, who: Identity) -> Json:
        channel = _channel(args)
        ts = _str(args, "ts")
        if not ts:
            raise SlackError("invalid_arguments", ["missing required field: ts"])
        limit = _limit(args, 1000)
        metadata = _flag(args.get("include_all_metadata"))
        with self._lock:
            parent = self._find(channel, ts)
            if parent is None:
                raise SlackError("thread_not_found")
            root = self._find(channel, parent.thread_ts) if parent.thread_ts else parent
            if root is None:  # a reply whose parent is gone: only itself
                return {"ok": True, "messages": [self._render(parent, metadata)], "has_more": False}
            replies = _window(self._replies_of(channel, root.ts), args)
            start = _cursor(args)
            if start:
                replies = [r for r in replies if float(r.ts) >= float(start)]
            page = replies[: max(limit - 1, 1)]  # the parent heads every page, as on Slack
            rest = replies[len(page) :]
            body: Json = {
                "ok": True,
                "messages": [self._render(m, metadata) for m in [root, *page]],
                "has_more": bool(rest),
            }
            if rest:
                body["response_metadata"] = {"next_cursor": _next_cursor(rest[0].ts)}
            return body

    def _history(self, args: Json, who: Identity) -> Json:
        channel = _channel(args)
        limit = _limit(args, 100)
        metadata = _flag(args.get("include_all_metadata"))
        with self._lock:
            visible = [m for m in self._messages.get(channel, []) if not m.thread_ts or m.broadcast]
            visible = _window(visible, args)[::-1]
            start = _cursor(args)
            if start:
                visible = [m for m in visible if float(m.ts) <= float(start)]
            page, rest = visible[:limit], visible[limit:]
            body: Json = {
                "ok": True,
                "messages": [self._render(m, metadata) for m in page],
                "has_more": bool(rest),
                "pin_count": 0,
                "channel_actions_ts": None,
                "channel_actions_count": 0,
            }
            if rest:
                body["response_metadata"] = {"next_cursor": _next_cursor(rest[0].ts)}
            return body

    def _upload_url(self, args: Json, who: Identity) -> Json:
        filename = _str(args, "filename")
        if not filename:
            raise SlackError("invalid_arguments", ["missing required field: filename"])
        if args.get("length") in (None, ""):
            raise SlackError("invalid_arguments", ["missing required field: length"])
        try:
            length = int(args["length"])
        except (TypeError, ValueError):
            raise SlackError(
                "invalid_arguments", ["expected an integer [json-pointer:/length]"]
            ) from None
        if length <= 0:
            raise SlackError("missing_argument")
        alt_txt = _str(args, "alt_txt")
        if alt_txt and len(alt_txt) > 1000:
            raise SlackError("alt_txt_too_large")
        with self._lock:
            n = next(self._ids)
            file_id = f"F0AKS{n:06d}"
            key = base64.urlsafe_b64encode(f"{TEAM_ID}:{file_id}:{n}".encode()).decode()
            key = key.rstrip("=")
            self._files[file_id] = _File(
                file_id,
                key,
                filename,
                length,
                self._epoch,
                who.user,
                alt_txt,
                _str(args, "snippet_type"),
            )
            self._uploads[key] = file_id
        return {"ok": True, "upload_url": f"{self.origin}{_UPLOAD}{key}", "file_id": file_id}

    def _upload(self, request: Request) -> Response:
        """`POST upload_url`: slack_sdk sends the raw bytes (urllib labels them form data)."""
        if request.method != "POST":
            return Response(405, dict(_TEXT), "Method Not Allowed")
        key = request.path[len(_UPLOAD) :]
        data = request.body if isinstance(request.body, bytes) else b""
        content_type = request.headers.get("Content-Type") or ""
        if "multipart/form-data" in content_type.lower():
            parts = _multipart(data, content_type)
            files = [v for v in parts.values() if isinstance(v, bytes)]
            data = files[0] if files else b""
        with self._lock:
            file_id = self._uploads.get(key)
            if file_id is None:
                return Response(404, dict(_TEXT), "Not Found")
            self._files[file_id].content = data
        return Response(200, dict(_TEXT), f"OK - {len(data)}")

    def _download(self, request: Request) -> Response:
        """`GET url_private`: the file's bytes, for a bearer of any valid token."""
        token = _identity_token(request)
        file_id = request.path[len(_FILES) :].split("/")[0].split("-")[-1]
        with self._lock:
            file = self._files.get(file_id)
            if not token or file is None or file.content is None:
                return Response(404, dict(_TEXT), "Not Found")
            mimetype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            return Response(200, {"Content-Type": mimetype}, file.content)

    def _complete_upload(self, args: Json, who: Identity) -> Json:
        items = _json_arg(args, "files", "invalid_arguments")
        if not isinstance(items, list) or not items:
            raise SlackError("invalid_arguments", ["missing required field: files"])
        if not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
            raise SlackError("invalid_arguments", ["missing required field: id"])
        channel_id = _str(args, "channel_id")
        if channel_id and not _CHANNEL.match(channel_id):
            raise SlackError("channel_not_found")
        channels = [c.strip() for c in (_str(args, "channels") or "").split(",") if c.strip()]
        if any(not _CHANNEL.match(c) for c in channels):
            raise SlackError("invalid_channel")
        targets = ([channel_id] if channel_id else []) + [c for c in channels if c != channel_id]
        if len(targets) > 100:
            raise SlackError("channels_limit_exceeded")
        thread_ts = _str(args, "thread_ts")
        comment = _str(args, "initial_comment") or ""
        blocks = None if comment else _blocks(args, "blocks", MAX_MESSAGE_BLOCKS)
        with self._lock:
            files = []
            for item in items:
                file = self._files.get(item["id"])
                if file is None or file.content is None:
                    raise SlackError("file_not_found")
                files.append(file)
            for file, item in zip(files, items, strict=True):
                file.title = item.get("title") or file.title or file.name
            for channel in targets:
                root = thread_ts
                if thread_ts:
                    parent = self._find(channel, thread_ts)
                    root = (parent.thread_ts or parent.ts) if parent else thread_ts
                message = _Message(
                    channel,
                    self._tick(),
                    who.user,
                    who.bot_id,
                    comment,
                    blocks,
                    thread_ts=root,
                    files=[f.id for f in files],
                )
                self._add(message)
                for file in files:
                    file.shares.append((channel, message.ts, root))
            return {"ok": True, "files": [self._file_object(f) for f in files]}

    def _usergroup_users(self, args: Json, who: Identity) -> Json:
        usergroup = _str(args, "usergroup")
        if usergroup is None:
            raise SlackError("invalid_arguments", ["missing required field: usergroup"])
        with self._lock:
            users = self._usergroups.get(usergroup)
        if users is None:
            raise SlackError("no_such_subteam")
        return {"ok": True, "users": list(users)}

    def _connections_open(self, args: Json, who: Identity) -> Json:
        return {"ok": True, "url": self._socket_url()}

    def _views_open(self, args: Json, who: Identity) -> Json:
        trigger = _str(args, "trigger_id") or _str(args, "interactivity_pointer")
        if not trigger:
            raise SlackError("invalid_arguments", ["missing required field: trigger_id"])
        if not _TRIGGER.match(trigger):
            raise SlackError("invalid_trigger_id")
        view = _view(args, ("modal",))
        with self._lock:
            if trigger in self._triggers:
                raise SlackError("exchanged_trigger_id")
            self._external_id_free(view)
            self._triggers.add(trigger)
            stored = self._new_view(view)
            return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_update(self, args: Json, who: Identity) -> Json:
        view_id, external_id = _str(args, "view_id"), _str(args, "external_id")
        if not view_id and not external_id:
            raise SlackError("invalid_arguments", ["missing required field: view_id"])
        view = _view(args, ("modal", "home"))
        with self._lock:
            current = self._views.get(view_id or "")
            if current is None and external_id:
                current = next(
                    (v for v in self._views.values() if v["external_id"] == external_id), None
                )
            if current is None:
                raise SlackError("not_found")
            given_hash = _str(args, "hash")
            if given_hash and given_hash != current["hash"]:
                raise SlackError("hash_conflict")
            self._external_id_free(view, current["id"])
            updated = self._view_object(view, current["id"], current["root_view_id"])
            updated["previous_view_id"] = current.get("previous_view_id")
            self._views[current["id"]] = updated
            return {"ok": True, "view": copy.deepcopy(updated)}

    def _views_publish(self, args: Json, who: Identity) -> Json:
        user = _str(args, "user_id")
        if not user:
            raise SlackError("invalid_arguments", ["missing required field: user_id"])
        if not _USER.match(user):
            raise SlackError("invalid_arguments", ["invalid user_id [json-pointer:/user_id]"])
        view = _view(args, ("home",))
        with self._lock:
            current_id = self._home.get(user)
            given_hash = _str(args, "hash")
            if current_id and given_hash and given_hash != self._views[current_id]["hash"]:
                raise SlackError("hash_conflict")
            if current_id:
                stored = self._view_object(view, current_id, current_id)
                self._views[current_id] = stored
            else:
                stored = self._new_view(view)
                self._home[user] = stored["id"]
            return {"ok": True, "view": copy.deepcopy(stored)}

    # --- the model (call with the lock held) -----------------------------------------------

    def _tick(self) -> str:
        micros = self._epoch * 1_000_000 + 100 * next(self._ticks)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _add(self, message: _Message) -> None:
        self._messages.setdefault(message.channel, []).append(message)

    def _find(self, channel: str, ts: str | None) -> _Message | None:
        return next((m for m in self._messages.get(channel, []) if m.ts == ts), None)

    def _replies_of(self, channel: str, ts: str) -> list[_Message]:
        return [m for m in self._messages.get(channel, []) if m.thread_ts == ts and m.ts != ts]

    def _render(self, m: _Message, metadata: bool = True) -> Json:
        """A message as conversations.replies shows it (metadata when asked for)."""
        if m.tombstone:
            out: Json = {
                "type": "message",
                "subtype": "tombstone",
                "text": m.text,
                "user": "USLACKBOT",
                "hidden": True,
                "ts": m.ts,
            }
        else:
            out = {"user": m.user, "type": "message", "ts": m.ts}
            if m.bot_id:
                out.update(bot_id=m.bot_id, app_id=APP_ID)
            out["text"] = m.text
            out["team"] = TEAM_ID
            if m.bot_id:
                out["bot_profile"] = _bot_profile(self._epoch)
            if m.blocks is not None:
                out["blocks"] = copy.deepcopy(m.blocks)
            if m.attachments:
                out["attachments"] = copy.deepcopy(m.attachments)
            if m.files:
                out["files"] = [self._file_object(self._files[f]) for f in m.files]
                out["upload"] = True
                out["display_as_bot"] = False
            if m.edited:
                out["edited"] = dict(m.edited)
            if metadata and m.metadata:
                out["metadata"] = copy.deepcopy(m.metadata)
        if m.thread_ts and m.thread_ts != m.ts:
            parent = self._find(m.channel, m.thread_ts)
            out["thread_ts"] = m.thread_ts
            if parent is not None:
                out["parent_user_id"] = parent.user
            if m.broadcast:
                out["subtype"] = "thread_broadcast"
        else:
            replies = self._replies_of(m.channel, m.ts)
            if replies:
                users = list(dict.fromkeys(r.user for r in replies))
                out.update(
                    thread_ts=m.ts,
                    reply_count=len(replies),
                    reply_users_count=len(users),
                    latest_reply=replies[-1].ts,
                    reply_users=users,
                    is_locked=False,
                    subscribed=False,
                )
        return out

    def _file_object(self, f: _File) -> Json:
        ext = f.name.rsplit(".", 1)[-1].lower() if "." in f.name else "binary"
        mimetype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        private = f"{self.origin}{_FILES}{TEAM_ID}-{f.id}/{f.name}"
        obj: Json = {
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.title or f.name,
            "mimetype": mimetype,
            "filetype": ext,
            "pretty_type": ext.upper(),
            "user": f.user,
            "user_team": TEAM_ID,
            "editable": False,
            "size": len(f.content) if f.content is not None else f.length,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": any(ch.startswith("C") for ch, _, _ in f.shares),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": private,
            "url_private_download": private + "?download=1",
            "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{f.user}/{f.id}/{f.name}",
            "permalink_public": f"https://slack-files.com/{TEAM_ID}-{f.id}-0000000000",
            "comments_count": 0,
            "is_starred": False,
            "shares": {},
            "channels": sorted({ch for ch, _, _ in f.shares if ch.startswith("C")}),
            "groups": sorted({ch for ch, _, _ in f.shares if ch.startswith("G")}),
            "ims": sorted({ch for ch, _, _ in f.shares if ch.startswith("D")}),
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if f.alt_txt:
            obj["alt_txt"] = f.alt_txt
        size = _png_size(f.content)
        if size:
            obj["original_w"], obj["original_h"] = size
        for channel, ts, thread_ts in f.shares:
            kind = "public" if channel.startswith("C") else "private"
            share: Json = {
                "reply_users": [],
                "reply_users_count": 0,
                "reply_count": 0,
                "ts": ts,
                "channel_name": channel.lower(),
                "team_id": TEAM_ID,
                "share_user_id": f.user,
                "source": "UNKNOWN",
            }
            if thread_ts:
                share["thread_ts"] = thread_ts
            obj["shares"].setdefault(kind, {}).setdefault(channel, []).append(share)
        return obj

    def _new_view(self, view: Json) -> Json:
        view_id = f"V0AKS{next(self._ids):06d}"
        stored = self._view_object(view, view_id, view_id)
        self._views[view_id] = stored
        return stored

    def _view_object(self, view: Json, view_id: str, root_id: str) -> Json:
        return {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": view["type"],
            "blocks": copy.deepcopy(view.get("blocks") or []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{self._epoch}.{next(self._ids):08x}",
            "title": copy.deepcopy(view.get("title")),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": copy.deepcopy(view.get("close")),
            "submit": copy.deepcopy(view.get("submit")),
            "previous_view_id": None,
            "root_view_id": root_id,
            "app_id": APP_ID,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }

    def _external_id_free(self, view: Json, own_id: str | None = None) -> None:
        external_id = view.get("external_id")
        if external_id and any(
            v["external_id"] == external_id and v["id"] != own_id for v in self._views.values()
        ):
            raise SlackError("duplicate_external_id")


# --- arguments ----------------------------------------------------------------------------


def _args(request: Request) -> Json:
    """Query and body arguments merged (body wins); JSON nulls count as absent."""
    args: Json = dict(request.query)
    if isinstance(request.body, dict):
        args.update(request.body)
    return {k: v for k, v in args.items() if v is not None}


def _identity_token(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    json_body = "json" in (request.headers.get("Content-Type") or "").lower()
    if isinstance(request.body, dict) and not json_body:  # Slack reads no token from JSON
        token = request.body.get("token")
        if isinstance(token, str) and token:
            return token
    return request.query.get("token") or None


def _identity(request: Request) -> Identity:
    token = _identity_token(request)
    if not token:
        raise SlackError("not_authed")
    if token.startswith("xoxb-") and len(token) > len("xoxb-"):
        return Identity(BOT_USER_ID, BOT_ID)
    if token.startswith("xoxp-") and len(token) > len("xoxp-"):
        return Identity(USER_ID, None)
    if token.startswith("xapp-") and len(token) > len("xapp-"):
        return Identity("", None, app_level=True)
    raise SlackError("invalid_auth")


def _charset_warnings(request: Request) -> list[str]:
    kind = (request.headers.get("Content-Type") or "").lower()
    if "application/json" in kind and "charset" not in kind:
        return ["missing_charset"]
    if "x-www-form-urlencoded" in kind and "charset" in kind:
        return ["superfluous_charset"]
    return []


def _str(args: Json, key: str) -> str | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _limit(args: Json, default: int) -> int:
    try:
        limit = int(args.get("limit") or default)
    except (TypeError, ValueError):
        return default
    return min(max(limit, 1), 1000)


def _cursor(args: Json) -> str | None:
    cursor = _str(args, "cursor")
    if not cursor:
        return None
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        raise SlackError("invalid_cursor") from None
    if not text.startswith("next_ts:"):
        raise SlackError("invalid_cursor")
    return text[len("next_ts:") :]


def _next_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _window(messages: list[_Message], args: Json) -> list[_Message]:
    """`oldest` / `latest` / `inclusive`, as conversations.* read them."""
    try:
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
    except (TypeError, ValueError):
        raise SlackError("invalid_ts_oldest") from None
    inclusive = _flag(args.get("inclusive"))

    def inside(ts: float) -> bool:
        if inclusive:
            return oldest <= ts <= latest
        return (oldest < ts or not oldest) and ts < latest

    return [m for m in messages if inside(float(m.ts))]


def _channel(args: Json) -> str:
    channel = _str(args, "channel")
    if not channel or not _CHANNEL.match(channel):
        raise SlackError("channel_not_found")
    return channel


def _json_arg(args: Json, key: str, error: str) -> Any:
    value = args.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackError(error) from None
    return value


def _content(args: Json) -> tuple[str, list[Any] | None, list[Any] | None]:
    """text, blocks, attachments of a chat.* call, validated as Slack validates them."""
    text = _str(args, "text") or ""
    if len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")
    blocks = _blocks(args, "blocks", MAX_MESSAGE_BLOCKS)
    attachments = _json_arg(args, "attachments", "invalid_attachments")
    if attachments is not None:
        if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
            raise SlackError("invalid_attachments")
        if len(attachments) > MAX_ATTACHMENTS:
            raise SlackError("too_many_attachments")
    return text, blocks, attachments


def _blocks(args: Json, key: str, limit: int) -> list[Any] | None:
    blocks = _json_arg(args, key, "invalid_blocks_format")
    if blocks is None:
        return None
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    errors = block_errors(blocks, "/blocks", limit)
    if errors:
        raise SlackError("invalid_blocks", errors, errors=errors)
    return blocks


def _metadata(args: Json) -> Json | None:
    """None: not given; {}: given empty (chat.update removes the metadata)."""
    metadata = _json_arg(args, "metadata", "invalid_metadata_format")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise SlackError("invalid_metadata_format")
    if not metadata:
        return {}
    if not isinstance(metadata.get("event_type"), str) or not metadata["event_type"]:
        raise SlackError("invalid_metadata_schema")
    if not isinstance(metadata.get("event_payload"), dict):
        raise SlackError("invalid_metadata_schema")
    return metadata


def _view(args: Json, types: tuple[str, ...]) -> Json:
    view = _json_arg(args, "view", "invalid_arguments")
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments", ["missing required field: view"])
    problems = []
    if view.get("type") not in types:
        problems.append(f"must be one of {list(types)} [json-pointer:/view/type]")
    if view.get("type") == "modal":
        title = view.get("title")
        if not isinstance(title, dict) or title.get("type") != "plain_text":
            problems.append("missing required field: title [json-pointer:/view]")
        elif len(str(title.get("text") or "")) > 24:
            problems.append("must be less than 25 characters [json-pointer:/view/title/text]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        problems.append("missing required field: blocks [json-pointer:/view]")
    else:
        problems += block_errors(blocks, "/view/blocks", MAX_VIEW_BLOCKS)
    if problems:
        raise SlackError("invalid_arguments", problems)
    if len(json.dumps(view)) > 250_000:
        raise SlackError("view_too_large")
    return view


# --- Block Kit ----------------------------------------------------------------------------


def block_errors(blocks: list[Any], where: str = "/blocks", limit: int = 50) -> list[str]:
    """What Slack's `invalid_blocks` would list, for the rules the product can break."""
    if len(blocks) > limit:
        return [f"must be less than {limit + 1} items [json-pointer:{where}]"]
    errors: list[str] = []
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        at = f"{where}/{i}"
        if not isinstance(block, dict):
            errors.append(f"expected an object [json-pointer:{at}]")
            continue
        kind = block.get("type")
        if not isinstance(kind, str):
            errors.append(f"missing required field: type [json-pointer:{at}]")
            continue
        if kind not in _BLOCK_TYPES:
            errors.append(f"unsupported type: {kind} [json-pointer:{at}/type]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > 255:
                errors.append(f"must be less than 256 characters [json-pointer:{at}/block_id]")
            elif block_id in seen:
                errors.append(f"duplicate block_id: {block_id} [json-pointer:{at}/block_id]")
            else:
                seen.add(block_id)
        errors += _block_rules(kind, block, at)
    return errors


def _block_rules(kind: str, block: Json, at: str) -> list[str]:
    errors: list[str] = []
    if kind == "section":
        if block.get("text") is None and block.get("fields") is None:
            errors.append(f"must provide either text or fields [json-pointer:{at}]")
        if block.get("text") is not None:
            errors += _text_errors(block["text"], f"{at}/text", 3000)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > 10:
                errors.append(f"must be less than 11 items [json-pointer:{at}/fields]")
            else:
                for j, item in enumerate(fields):
                    errors += _text_errors(item, f"{at}/fields/{j}", 2000)
    elif kind == "header":
        errors += _text_errors(block.get("text"), f"{at}/text", 150, plain=True)
    elif kind in ("actions", "context"):
        most = 25 if kind == "actions" else 10
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            errors.append(f"missing required field: elements [json-pointer:{at}]")
        elif len(elements) > most:
            errors.append(f"must be less than {most + 1} items [json-pointer:{at}/elements]")
    elif kind == "image":
        if not block.get("image_url") and not block.get("slack_file"):
            errors.append(f"missing required field: image_url [json-pointer:{at}]")
        alt = block.get("alt_text")
        if not isinstance(alt, str) or not alt:
            errors.append(f"missing required field: alt_text [json-pointer:{at}]")
        elif len(alt) > 2000:
            errors.append(f"must be less than 2001 characters [json-pointer:{at}/alt_text]")
    elif kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str):
            errors.append(f"missing required field: text [json-pointer:{at}]")
        elif len(text) > 12_000:
            errors.append(f"must be less than 12001 characters [json-pointer:{at}/text]")
    return errors


def _text_errors(obj: Any, at: str, most: int, plain: bool = False) -> list[str]:
    allowed = ("plain_text",) if plain else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict):
        return [f"expected an object [json-pointer:{at}]"]
    if obj.get("type") not in allowed:
        return [f"must be one of {list(allowed)} [json-pointer:{at}/type]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be more than 0 characters [json-pointer:{at}/text]"]
    if len(text) > most:
        return [f"must be less than {most + 1} characters [json-pointer:{at}/text]"]
    return []


# --- helpers ------------------------------------------------------------------------------


def _multipart(raw: bytes, content_type: str) -> Json:
    """Form fields of a multipart body: str for text fields, bytes for file parts."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields: Json = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or f"part{len(fields)}"
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is None:
            fields[str(name)] = payload.decode("utf-8", "replace")
        else:
            fields[str(name)] = payload
    return fields


def _png_size(data: bytes | None) -> tuple[int, int] | None:
    if not data or not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _bot_profile(updated: int) -> Json:
    icon = "https://a.slack-edge.com/80588/img/plugins/app/bot_{}.png"
    return {
        "id": BOT_ID,
        "deleted": False,
        "name": BOT_NAME,
        "updated": updated,
        "app_id": APP_ID,
        "icons": {f"image_{n}": icon.format(n) for n in (36, 48, 72)},
        "team_id": TEAM_ID,
    }
