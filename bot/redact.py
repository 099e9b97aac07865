"""Secrets out of text bound for logs (and anything else that leaves the process).

Patterns catch what a secret looks like (Slack tokens, bearer tokens, JWTs, SAS signatures,
any URL's query, a password in a Redis URL); `register` adds the exact values this process
was configured with (the signing secret has no recognisable shape).
"""

from __future__ import annotations

import re
import threading

MASK = "[REDACTED]"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(xox[a-z])-[A-Za-z0-9-]+"), rf"\1-{MASK}"),
    (re.compile(r"\b(xapp)-[A-Za-z0-9-]+"), rf"\1-{MASK}"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    (
        re.compile(r"(?i)\b(sig|code|token|access_token|key|secret|password)=[^&\s\"'>|]+"),
        rf"\1={MASK}",
    ),
    (re.compile(r"(?i)\b(https?://[^\s?#\"'<>|]+)\?[^\s#\"'<>|]+"), rf"\1?{MASK}"),
    (re.compile(r"(?i)\b(rediss?://)[^@\s/]*@"), rf"\1{MASK}@"),
)
_known: set[str] = set()
_lock = threading.Lock()


def register(*secrets: str | None) -> None:
    """Redact these exact values wherever they appear (configured tokens and secrets)."""
    with _lock:
        _known.update(s for s in secrets if s and len(s) >= 8)


def redact(text: str) -> str:
    for value in sorted(_known, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
