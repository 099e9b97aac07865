"""What users type: `/aks-egress …` and `@aks-egress …` in a thread, parsed into commands.

Parsing never touches the network; a malformed command raises `UsageError` naming what was
wrong, which the listener shows privately with the usage text.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from bot.endpoint import Endpoint, EndpointError, parse_endpoint

USAGE = (
    "`/aks-egress check CLUSTER [URL] [--pod NAMESPACE/NAME]` diagnose a cluster's egress\n"
    "`/aks-egress clusters` the clusters this channel may check\n"
    "`/aks-egress help` this text\n"
    "In an incident thread: `@aks-egress recheck`, `@aks-egress probe URL`, "
    "`@aks-egress snat`, `@aks-egress summary`"
)
# Kubernetes names: a DNS-1123 label (namespace) / a DNS-1123 subdomain (pod).
POD_REF = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$")
ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class UsageError(ValueError):
    """The command cannot be understood; the message says which part and why."""


@dataclass(frozen=True)
class Check:
    alias: str
    endpoint: Endpoint | None
    pod: str | None


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Clusters:
    pass


@dataclass(frozen=True)
class Recheck:
    pass


@dataclass(frozen=True)
class Probe:
    endpoint: Endpoint


@dataclass(frozen=True)
class Snat:
    pass


@dataclass(frozen=True)
class Timeline:
    """`@aks-egress summary`: the incident's timeline for the postmortem (the word users
    type; not a run's summary message, nor the daily SNAT summary)."""


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the command ({exc})") from None


def _endpoint(text: str) -> Endpoint:
    # Slack wraps links as <https://x|x> or <https://x>.
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].split("|", 1)[0]
    try:
        return parse_endpoint(text)
    except EndpointError as exc:
        raise UsageError(str(exc)) from None


def parse_slash(text: str) -> Check | Help | Clusters:
    words = _words(text)
    if not words or words[0].lower() == "help":
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb == "clusters":
        return Clusters()
    if verb != "check":
        raise UsageError(f"unknown command {words[0]!r}")
    pod = None
    if "--pod" in args:
        at = args.index("--pod")
        if at + 1 >= len(args):
            raise UsageError("--pod needs NAMESPACE/NAME")
        pod = args[at + 1]
        if not POD_REF.match(pod):
            raise UsageError(f"--pod {pod!r}: give NAMESPACE/NAME, e.g. payments/api-7d9c")
        del args[at : at + 2]
    if not args:
        raise UsageError("name the cluster to check, e.g. `/aks-egress check prod-weu`")
    if len(args) > 2:
        raise UsageError(f"unexpected {' '.join(args[2:])!r}")
    if not ALIAS.match(args[0]):
        raise UsageError(f"{args[0]!r} is not a cluster alias")
    return Check(alias=args[0], endpoint=_endpoint(args[1]) if len(args) == 2 else None, pod=pod)


def parse_mention(text: str) -> Recheck | Probe | Snat | Timeline | Help:
    """The words after the bot's mention (`<@U123> probe https://x`)."""
    words = [w for w in _words(text) if not (w.startswith("<@") and w.endswith(">"))]
    if not words or words[0].lower() == "help":
        return Help()
    verb = words[0].lower()
    if verb in ("recheck", "rerun", "re-run"):
        return Recheck()
    if verb == "probe":
        if len(words) != 2:
            raise UsageError("`@aks-egress probe URL` takes one URL")
        return Probe(_endpoint(words[1]))
    if verb == "snat":
        return Snat()
    if verb == "summary":
        return Timeline()
    raise UsageError(f"unknown request {words[0]!r}")
