"""The request and response shapes every emulated API (ARM, Kubernetes, Slack) speaks.

Emulators are plain functions of a `Request`, so they can be unit tested without sockets; the
server in `server.py` is the only place that knows about HTTP and TLS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query string
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # parsed JSON, None when the request had no body
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """A response body sent with chunked transfer encoding, one chunk per item, as the
    iterator yields them (a Kubernetes watch). The server closes the iterator when the
    client goes away, so a generator's `finally` runs."""

    chunks: Iterator[bytes]


class Response(NamedTuple):
    """`status, headers, body = response` works, which keeps emulator tests terse."""

    status: int
    headers: dict[str, str]
    body: Any = None  # JSON-serialisable; str or bytes: sent as they are; a Stream; None: none


Dispatch = Callable[[Request], Response]
ErrorBody = Callable[[int, Request], Response]
