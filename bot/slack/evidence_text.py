"""A finding's evidence as readable Slack text: keys in words, ARM ids as portal links,
lists and nested objects cut to a few lines, rule tables as code blocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.slack.kit import (
    _ESCAPES,
    ELLIPSIS,
    FENCE,
    MAX_EVIDENCE_LINE,
    MAX_EVIDENCE_LINES,
    MAX_LIST_ITEMS,
    MAX_SECTION_TEXT,
    _human,
    _inline_code,
    clip,
    escape,
    is_arm_id,
    resource_link,
    split_mrkdwn,
    truncate,
)

# -- evidence, readable ----------------------------------------------------------------------

_RESOURCE_KEYS = (
    "priority",
    "access",
    "direction",
    "protocol",
    "sourceAddressPrefix",
    "destinationAddressPrefix",
    "destinationAddressPrefixes",
    "destinationPortRange",
    "destinationPortRanges",
    "addressPrefix",
    "nextHopType",
    "nextHopIpAddress",
    "provisioningState",
)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _more(total: int, shown: int) -> str:
    return f" (+{total - shown} more)" if total > shown else ""


def _value(value: Any, depth: int = 0) -> str:
    """One evidence value as short mrkdwn."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return _inline_code(value)
    if isinstance(value, str):
        if is_arm_id(value):
            return resource_link(value)
        if len(value) <= 120 and not re.search(r"\s", value):
            return _inline_code(value)
        return clip(value, 300)
    if depth >= 2:
        return _inline_code(json.dumps(value, default=str, ensure_ascii=False), 160)
    if isinstance(value, list):
        if any(isinstance(v, dict) for v in value):
            shown, sep = value[:3], "; "
        else:
            shown = value[:MAX_LIST_ITEMS]
            sep = "; " if any(re.search(r"\s", str(v)) for v in shown) else ", "
        return sep.join(_value(v, depth + 1) for v in shown) + _more(len(value), len(shown))
    if isinstance(value, dict):
        return _inline(value, depth + 1)
    return clip(value, 300)


def _inline(d: Mapping[str, Any], depth: int = 0) -> str:
    """A dict on one line: an ARM resource by name, link and key properties; else k v, …"""
    if is_arm_id(d.get("id")) and ("properties" in d or "name" in d):
        props = d.get("properties") or {}
        parts = [
            f"{_human(k)} {_value(props[k], depth + 1)}"
            for k in _RESOURCE_KEYS
            if not _empty(props.get(k))
        ]
        if props.get("description"):
            parts.append(f"“{clip(props['description'], 200)}”")
        link = resource_link(d["id"], d.get("name"))
        return link + (f" ({', '.join(parts)})" if parts else "")
    parts = [f"{_human(k)} {_value(v, depth + 1)}" for k, v in d.items() if not _empty(v)]
    return ", ".join(parts[:12]) + _more(len(parts), 12)


def _denied_lines(denied: list[dict[str, Any]]) -> list[str]:
    """NSG denials grouped by the rule that denies them."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for item in denied:
        key = (item.get("nsg"), item.get("rule"), item.get("priority"), item.get("defaultRule"))
        groups.setdefault(key, []).append(item)
    lines = []
    for (nsg, rule, priority, default), items in groups.items():
        where = f" in NSG {resource_link(nsg)}" if nsg else ""
        kind = "default rule" if default else "rule"
        flows = []
        for item in items[:MAX_LIST_ITEMS]:
            flow = _inline_code(item.get("destination") or item.get("address") or "?")
            address = str(item.get("address") or "")
            port, protocol = item.get("port"), item.get("protocol")
            if address and " " not in address and address != item.get("destination"):
                flow += f" at {_inline_code(f'{address}:{port}')}"
            elif port is not None:
                flow += f" port {port}"
            if protocol:
                flow += f" {clip(protocol, 20)}"
            flows.append(flow)
        lines.append(
            f"• {kind} {_inline_code(rule)} (priority {escape(priority)}){where} denies "
            + ", ".join(flows)
            + _more(len(items), len(flows))
        )
    return lines


def evidence_lines(evidence: Mapping[str, Any]) -> list[str]:
    """A finding's evidence as readable mrkdwn bullet lines (never a JSON dump).

    Rule names with priorities, route prefixes with next hops, resource ids as portal links;
    curl's telling lines as a code block at the end. "Show evidence" has the raw JSON.
    """
    lines: list[str] = []
    used: set[str] = set()
    if "prefix" in evidence and "nextHopType" in evidence:
        name = evidence.get("route")
        hop = f"{_value(evidence['nextHopType'])}"
        if evidence.get("nextHopIpAddress"):
            hop += f" {_value(evidence['nextHopIpAddress'])}"
        label = f"route {_inline_code(name)}" if name else "route"
        lines.append(f"• {label}: {_value(evidence['prefix'])} → {hop}")
        used |= {"route", "prefix", "nextHopType", "nextHopIpAddress"}
    telling: list[str] = []
    for key, value in evidence.items():
        if key in used or _empty(value):
            continue
        if key == "tellingLines" and isinstance(value, list):
            telling = [str(v) for v in value]
        elif (
            key == "denied" and isinstance(value, list) and all(isinstance(v, dict) for v in value)
        ):
            lines.extend(_denied_lines(value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"• {_human(key)}:")
            lines.extend(f"    ◦ {_inline(v)}" for v in value[:5])
            if len(value) > 5:
                lines.append(f"    ◦ {ELLIPSIS} {len(value) - 5} more")
        elif isinstance(value, dict) and not (is_arm_id(value.get("id"))) and len(value) > 4:
            lines.append(f"• {_human(key)}:")
            lines.extend(
                f"    ◦ {escape(k)}: {_value(v, 1)}" for k, v in value.items() if not _empty(v)
            )
        else:
            lines.append(f"• {_human(key)}: {_value(value)}")
    lines = [truncate(line, MAX_EVIDENCE_LINE) for line in lines]
    if len(lines) > MAX_EVIDENCE_LINES:
        cut = len(lines) - MAX_EVIDENCE_LINES + 1
        lines = [*lines[: MAX_EVIDENCE_LINES - 1], f"{ELLIPSIS} {cut} more: press Show evidence"]
    if telling:
        shown = telling[:12]
        body = [clip(t.replace(FENCE, "ˋˋˋ"), 300) for t in shown]
        if len(telling) > len(shown):
            body.append(f"{ELLIPSIS} {len(telling) - len(shown)} more lines")
        lines.append("curl said:\n" + FENCE + "\n" + "\n".join(body) + "\n" + FENCE)
    return lines


def _code_block(raw_lines: Sequence[str], heading: str = "", *, wrap: bool = False) -> list[str]:
    """Lines as ``` blocks (escaped) in section-sized pieces; `heading` before the first.

    `wrap` breaks a line longer than a section into several lines (raw JSON); without it a
    too-long line is cut with … (a fix command is useless broken over two lines anyway).
    """
    width = MAX_SECTION_TEXT - 20
    body: list[str] = []
    for raw in raw_lines:
        raw = raw.replace(FENCE, "ˋˋˋ")
        body.extend(_wrap(raw, width) if wrap else [clip(raw, width)])
    text = (heading + "\n" if heading else "") + FENCE + "\n" + "\n".join(body) + "\n" + FENCE
    return split_mrkdwn(text)


def _wrap(raw: str, width: int) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    size = 0
    for ch in raw:
        piece = _ESCAPES.get(ch, ch)
        if size + len(piece) > width:
            out.append("".join(current))
            current, size = [], 0
        current.append(piece)
        size += len(piece)
    out.append("".join(current))
    return out
