"""The endpoint a user asks about, and how its name becomes addresses.

Route and NSG rules are written against addresses, so the host is resolved once, through
one `Resolver`: real DNS normally, the world's `dns` map in the sandbox. User text is only
ever parsed here, never passed to a shell.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9A-Fa-f]*|[0-9]+)$")
# RFC 3986 leaves `[ ] { }` out of paths and queries (brackets only delimit an IPv6 host);
# curl would expand them as globs, one probe becoming thousands of requests.
_GLOB = frozenset("[]{}")
# Never needed in an endpoint, and dangerous wherever a URL might meet a shell. `&`
# separates query parameters (a SAS URL has several): curl gets the URL as one argv
# element, and fix commands never quote a URL, so it is accepted.
_SHELL = frozenset("`$;|<>\"'\\")
DEFAULT_PORTS = {"https": 443, "http": 80}


class EndpointError(ValueError):
    """The endpoint text cannot be checked; the message says why and what would work."""


@dataclass(frozen=True)
class Endpoint:
    """A destination to test, normalised to a URL that curl would fetch.

    `telnet://host:port` is curl's plain TCP connect test, used for ports that speak
    neither HTTP nor HTTPS (a database, a message broker).
    """

    url: str
    scheme: str
    host: str
    port: int

    @property
    def is_ip(self) -> bool:
        return _ip(self.host) is not None

    @property
    def firewall_protocol(self) -> str:
        """The protocol as Azure Firewall rules name it (application rules: Http/Https)."""
        return {"https": "Https", "http": "Http"}.get(self.scheme, "Tcp")


def _ip(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _valid_host(host: str) -> bool:
    """A host name or a dotted-quad IPv4 address, nothing else.

    curl and the C library also read `0xa9.0xfe.0xa9.0xfe`, `0251.0376.0251.0376`,
    `2852039166` and `127.1` as addresses (169.254.169.254, 127.0.0.1): any host whose last
    label is numeric or hexadecimal is such a spelling and is refused, as WHATWG's URL
    standard treats it as an IPv4 address too.
    """
    if _ip(host):
        return True
    if len(host) > 253 or "." not in host.strip("."):
        return False
    labels = host.rstrip(".").split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        return False
    return all(_HOST_LABEL.match(label) for label in labels)


def parse_endpoint(text: str) -> Endpoint:
    """Accept a URL, `host:port`, a host name or an IPv4 address."""
    raw = text.strip()
    if not raw:
        raise EndpointError("the endpoint is empty; give a URL such as https://api.contoso.com")
    if any(not c.isprintable() or c.isspace() or not c.isascii() for c in raw) or any(
        c in raw for c in _SHELL
    ):
        raise EndpointError(
            f"{raw!r} is not a URL: it contains spaces, shell, control or non-ASCII "
            "characters (percent-encode them)"
        )
    if globs := sorted(set(raw) & _GLOB):
        if raw.split("://", 1)[-1].split("/", 1)[0].startswith("["):
            raise EndpointError(f"{raw!r}: IPv6 is not a valid host here; give a name or IPv4")
        raise EndpointError(
            f"{raw!r}: {' '.join(globs)} must be percent-encoded in a URL (RFC 3986)"
        )
    if "://" not in raw:
        host, _, port_text = raw.partition(":")
        port = _port(port_text, raw) if port_text else 443
        scheme = {443: "https", 80: "http"}.get(port, "telnet")
        return _build(scheme, host, port, "", raw)
    try:
        parts = urlsplit(raw)
        url_port = parts.port
    except ValueError as exc:
        raise EndpointError(f"{raw!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "telnet"):
        raise EndpointError(
            f"{raw!r}: scheme {parts.scheme!r} is not supported; use https://, http:// "
            "or telnet://host:port for a plain TCP connect test"
        )
    if parts.username or parts.password:
        raise EndpointError(f"{raw!r}: leave credentials out of the URL")
    if scheme == "telnet" and url_port is None:
        raise EndpointError(f"{raw!r}: telnet:// needs a port, e.g. telnet://db.contoso.com:5432")
    path = parts.path
    if parts.query:
        path += "?" + parts.query
    default = DEFAULT_PORTS.get(scheme, 0)
    return _build(
        scheme, parts.hostname or "", default if url_port is None else url_port, path, raw
    )


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise EndpointError(f"{raw!r}: the port must be a number from 1 to 65535")
    return int(text)


def _build(scheme: str, host: str, port: int, path: str, raw: str) -> Endpoint:
    host = host.lower()
    if not _valid_host(host):
        shown = repr(host) if host else "the host"
        raise EndpointError(f"{raw!r}: {shown} is not a valid host name or IPv4 address")
    if not 0 < port < 65536:
        raise EndpointError(f"{raw!r}: the port must be a number from 1 to 65535")
    default = DEFAULT_PORTS.get(scheme)
    netloc = host if port == default else f"{host}:{port}"
    url = f"{scheme}://{netloc}{path}"
    return Endpoint(url=url, scheme=scheme, host=host, port=port)


class Resolver(Protocol):
    def resolve(self, host: str) -> list[ipaddress.IPv4Address]:
        """The IPv4 addresses of `host`; an empty list when it does not resolve."""
        ...


class DnsResolver:
    """Real DNS, as seen from where the bot runs (which may differ from inside the cluster)."""

    def resolve(self, host: str) -> list[ipaddress.IPv4Address]:
        if ip := _ip(host):
            return [ip]
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return []
        return sorted({ipaddress.IPv4Address(info[4][0]) for info in infos})


class MapResolver:
    """The world's `dns` map: names not listed do not resolve."""

    def __init__(self, names: Mapping[str, list[str]]):
        self._names = {name.lower().rstrip("."): addrs for name, addrs in names.items()}

    def resolve(self, host: str) -> list[ipaddress.IPv4Address]:
        if ip := _ip(host):
            return [ip]
        return [ipaddress.IPv4Address(a) for a in self._names.get(host.lower().rstrip("."), [])]
