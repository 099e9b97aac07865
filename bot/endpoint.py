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
    if _ip(host):
        return True
    if len(host) > 253 or "." not in host.strip("."):
        return False
    return all(_HOST_LABEL.match(label) for label in host.rstrip(".").split("."))


def parse_endpoint(text: str) -> Endpoint:
    """Accept a URL, `host:port`, a host name or an IPv4 address."""
    raw = text.strip()
    if not raw:
        raise EndpointError("the endpoint is empty; give a URL such as https://api.contoso.com")
    if any(c.isspace() for c in raw) or any(c in raw for c in "`$;|&<>\"'\\"):
        raise EndpointError(f"{raw!r} is not a URL: it contains spaces or shell characters")
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
