"""Secrets taken out of everything but the probe's own argument list.

A user may check `https://x.blob.core.windows.net/c?sv=…&sig=…`, an OAuth callback with
`?code=…` or a webhook whose path is its token. The probe needs the URL as given; nothing
else does: the rq job description, logs, Redis, Slack messages, pod annotations and the
report all carry the redacted form. Patterns catch what a secret looks like (credential
query values, token-like path segments, userinfo, Slack and bearer tokens, JWTs, Azure
principal ids); `register` adds the exact values this process was configured with (the
signing secret has no recognisable shape). One function, `redact`, for any text;
`redact_url` for one URL.

A query parameter that is not a credential (`?page=2`) is kept: it is what the user asked
about, and masking every query would hide the evidence of the check from its own thread.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
_URL = re.compile(r"\b(?:https?|telnet|rediss?)://[^\s<>|\"'`\\]+", re.IGNORECASE)
# A path segment that looks like a credential: long, and mixing letters and digits
# (a Slack webhook's last segment, a SAS-signed path, an API key in the path).
_TOKEN_SEGMENT = re.compile(r"^(?=[^/]*[0-9])(?=[^/]*[A-Za-z])[A-Za-z0-9_~.%+=-]{16,}$")
# Query parameters that carry credentials: OAuth codes and tokens, SAS signatures (`sig`),
# API keys, passwords. Others (`?page=2`) are kept: they are what the user asked about.
_SECRET_PARAM = re.compile(
    r"(?i)^(code|sig|signature|[a-z_]*token|[a-z_]*secret|[a-z_]*key|apikey|password|pwd|"
    r"pass|auth|authorization|credentials?|session|sid|x-amz-[a-z-]+)$"
)
# The same parameters outside a URL we could parse (a truncated log line, a bare query).
_SECRET_PAIR = re.compile(
    r"(?i)\b(sig|signature|code|[a-z_]*token|[a-z_]*secret|[a-z_]*key|password)=[^&\s\"'>|]+"
)
_SLACK_TOKEN = re.compile(r"\bx(?:ox[a-z]|app)-[A-Za-z0-9-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Azure's 403 text names the caller: "The client '<guid>' with object id '<guid>' does not
# have authorization…". Which permission is missing is useful in a channel; who lacks it
# belongs in the logs only.
_PRINCIPAL = re.compile(
    r"(?i)\b(client|object id|objectid|principal id|principal|app id|appid|application)"
    r"(\s+(?:id\s+)?)'?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'?"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_known: set[str] = set()
_lock = threading.Lock()


def register(*secrets: str | None) -> None:
    """Redact these exact values wherever they appear (configured tokens and secrets)."""
    with _lock:
        _known.update(s for s in secrets if s and len(s) >= 8)


def redact_url(url: str) -> str:
    """The URL with userinfo, credential query values and token-like path segments masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    path = "/".join(MASK if _TOKEN_SEGMENT.match(s) else s for s in parts.path.split("/"))
    query = "&".join(
        f"{p.partition('=')[0]}={MASK}" if _secret_param(p.partition("=")[0]) else p
        for p in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _secret_param(name: str) -> bool:
    # `&amp;` is how Slack's text escapes a query's `&`: the name follows it.
    return bool(_SECRET_PARAM.match(unquote(name).removeprefix("amp;")))


def redact(text: str) -> str:
    """Any text (a log line, a message, an error) with secrets masked."""
    for value in sorted(_known, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _SLACK_TOKEN.sub(MASK, text)
    text = _JWT.sub(MASK, text)
    text = _PRINCIPAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)
