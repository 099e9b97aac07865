"""What stands between the internet and the listeners: body size, signature, replays.

Anyone can reach the HTTP endpoint. A body is refused past 64 KiB before anything reads
it (an unsigned 300 MB POST once took the app from 141 to 2,241 MiB); the signature is
checked here, before Bolt, and a failure is logged without the body (Bolt's own check logs
the body, newlines included: forged log lines); a signed interactive payload replayed
within Slack's five-minute window is acked and dropped.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
# Payload types a user produces by clicking: each carries a unique trigger or action
# timestamp, so the same bytes twice are a replay.
INTERACTIVE = frozenset({"block_actions", "view_submission", "view_closed", "shortcut"})


def read_body(environ: dict[str, Any]) -> bytes | None:
    """The request body when it is at most MAX_BODY bytes, else None; never reads more
    than MAX_BODY + 1 bytes, whatever Content-Length claims."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > MAX_BODY:
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    return body if len(body) <= MAX_BODY else None


def signed(environ: dict[str, Any], body: bytes, verifier: SignatureVerifier) -> bool:
    """Slack's signature over this body, within Slack's five minutes."""
    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "0")
    signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
    try:
        text = body.decode("utf-8")  # Slack signs text; the verifier would raise on bytes
    except UnicodeDecodeError:
        text = None
    if text is not None and verifier.is_valid(text, timestamp, signature):
        return True
    log.warning("refused a request with a bad or stale signature (%d bytes)", len(body))
    return False


def with_body(environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The environ Bolt reads, with the body already read."""
    return {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}


def drop_replays(store: Store) -> Callable[..., BoltResponse | None]:
    """Bolt middleware: an interactive payload is acted on once."""

    def middleware(body: dict[str, Any], next: Callable[[], BoltResponse]) -> BoltResponse | None:
        if body.get("type") in INTERACTIVE:
            try:
                # The parsed payload, not the raw body: Socket Mode has none (its requests
                # are built from the envelope), and a replay parses the same.
                first = store.first_interaction(json.dumps(body, sort_keys=True))
            except StoreUnavailable:
                log.error("redis unavailable while deduplicating an interaction")
                return BoltResponse(status=200, body="")
            if not first:
                log.warning("dropped a replayed %s payload", body.get("type"))
                return BoltResponse(status=200, body="")
        return next()

    return middleware
