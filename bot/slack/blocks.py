"""Block Kit messages for the Slack surface: pure functions from findings to JSON dicts.

Every message is `{"text": fallback, "blocks": [...]}` built from the same `Finding`s and
`Report` the terminal renders, with the same marks (`bot.render.marks`). Nothing here talks
to Slack; the listeners and jobs post what these functions return.

Slack rejects a whole message when one block breaks a limit, so every builder stays inside
them: at most 50 blocks a message (100 a modal), 3,000 characters a section text, 2,000 a
field or button value, 75 a button label, 40,000 the `text` fallback. Long text is split at
line boundaries (closing and reopening ``` fences around the cut) or cut with "…", never in
the middle of an `&amp;` entity or a `<link|label>`. Azure- and user-provided text is
escaped (`&`, `<`, `>`) everywhere it lands in mrkdwn, code blocks included: Slack decodes
the entities before it formats, so `<firewall-policy>` in a fix must travel as
`&lt;firewall-policy&gt;` or Slack reads it as a link.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from bot.codes import CATALOG
from bot.model import Finding, Report, Severity
from bot.render.marks import MARKS, RANK, worst
from bot.slack.commands import USAGE
from bot.steps import BY_NAME, STEP_ORDER
from handlers.bypass import offers_bypass

# -- Slack's limits ------------------------------------------------------------------------

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_CONTEXT_TEXT = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75  # Slack's button label limit (slack_sdk enforces it), not 150
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ELEMENTS = 25
MAX_TEXT = 40_000
MAX_MODAL_TITLE = 24
MAX_PRIVATE_METADATA = 3000

# -- interaction ids (the listeners in bot/slack/app.py match on these) ---------------------

ACTION_RERUN = "rerun"
ACTION_PROBE_ENDPOINT = "probe_endpoint"
ACTION_SHOW_EVIDENCE = "show_evidence"
ACTION_MARK_RESOLVED = "mark_resolved"
ACTION_BYPASS = "bypass_appliance"  # bot/slack/bypass.py answers it
PROBE_MODAL_CALLBACK = "probe_endpoint_modal"
PROBE_URL_BLOCK = "probe_url"
PROBE_URL_ACTION = "probe_url_value"
EVIDENCE_MODAL_CALLBACK = "evidence_modal"

# -- how things look -----------------------------------------------------------------------

RUNNING = "⏳"
PENDING = "○"
SKIPPED = MARKS[Severity.INFO]
ELLIPSIS = "…"
PORTAL = "https://portal.azure.com/#@/resource"
MAX_EVIDENCE_LINES = 24
MAX_EVIDENCE_LINE = 700
MAX_LIST_ITEMS = 10
MAX_DETAIL = 9000
MAX_SUMMARY_FINDINGS = 40
FENCE = "```"

StepStatus = Literal["pending", "running", "done", "skipped"]


@dataclass(frozen=True)
class IncidentView:
    """What the messages need to know about an incident (the store keeps the rest)."""

    id: str
    alias: str
    cluster_id: str
    endpoint: str | None
    user_id: str
    channel_id: str
    created: str  # ISO 8601
    pod: str | None = None


@dataclass(frozen=True)
class StepState:
    """One checklist step as the live checklist shows it."""

    status: StepStatus
    findings: tuple[Finding, ...] = field(default_factory=tuple)


# -- text ------------------------------------------------------------------------------------

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: object) -> str:
    """`text` safe for mrkdwn: `&`, `<` and `>` as entities, nothing else touched."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(raw: object, limit: int) -> str:
    """`raw` escaped, at most `limit` characters, ending in … when cut; entities stay whole."""
    raw = str(raw)
    out = escape(raw)
    if len(out) <= limit:
        return out
    pieces: list[str] = []
    size = 0
    for ch in raw:
        piece = _ESCAPES.get(ch, ch)
        if size + len(piece) > limit - 1:
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces) + ELLIPSIS


def _backoff(cut: str) -> str:
    """Drop a half entity or a half `<link|label>` from the end of cut mrkdwn."""
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut


def truncate(text: str, limit: int) -> str:
    """Built mrkdwn cut to `limit` characters with …, closing a ``` block it cut open."""
    if len(text) <= limit:
        return text
    cut = _backoff(text[: limit - 1])
    if cut.count(FENCE) % 2:
        cut = _backoff(text[: limit - 5])
        if cut.count(FENCE) % 2:
            return cut + ELLIPSIS + "\n" + FENCE
    return cut + ELLIPSIS


def split_mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> list[str]:
    """Mrkdwn in pieces of at most `limit`, cut between lines.

    A cut inside a ``` block closes it at the end of one piece and reopens it at the start
    of the next, so every piece renders (and copies) on its own. A single line longer than
    a piece is cut with ….
    """
    if len(text) <= limit:
        return [text] if text.strip() else []
    room = limit - 2 * (len(FENCE) + 1)
    pieces: list[str] = []
    current: list[str] = []
    size = -1  # length of "\n".join(current)
    fence = False  # inside a ``` block at the end of `current`
    for line in text.split("\n"):
        if len(line) > room:
            line = truncate(line, room)
        opened = fence ^ (line.count(FENCE) % 2 == 1)
        closing = len(FENCE) + 1 if opened else 0
        if current and size + 1 + len(line) + closing > limit:
            if fence:
                current.append(FENCE)
            pieces.append("\n".join(current))
            current = [FENCE] if fence else []
            size = len(FENCE) if fence else -1
        current.append(line)
        size += 1 + len(line)
        fence = opened
    if current:
        pieces.append("\n".join(current))
    return [p for p in pieces if p.strip() and p.strip() != FENCE + "\n" + FENCE]


def _sentence(text: str) -> str:
    """The first sentence (or line) of a finding's detail."""
    first = text.strip().split("\n", 1)[0]
    match = re.search(r"(?<=[.!?])\s", first)
    return first[: match.start()] if match else first


def _inline_code(raw: object, limit: int = 200) -> str:
    text = str(raw).replace("`", "ˋ").replace("\n", " ")
    return f"`{clip(text, limit)}`"


def _plain(text: str, limit: int) -> dict[str, Any]:
    text = text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
    return {"type": "plain_text", "text": text, "emoji": True}


def _human(key: str) -> str:
    """`peakConnections` → `peak connections`; a key that is data (a timestamp) as it is."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return key
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").lower()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds} s"


def _strip_period(text: str) -> str:
    return text.strip().rstrip(".")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- Azure resources -------------------------------------------------------------------------


def is_arm_id(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith("/subscriptions/")


def portal_url(resource_id: str) -> str:
    return PORTAL + quote(resource_id, safe="/()-_.~!*'$,;=+@:")


def resource_link(resource_id: str, label: str | None = None) -> str:
    """An ARM id as a portal link named after the resource; anything else as code."""
    if not is_arm_id(resource_id):
        return _inline_code(resource_id)
    name = label or resource_id.rstrip("/").rsplit("/", 1)[-1]
    return f"<{portal_url(resource_id)}|{clip(name.replace('|', '¦'), 200)}>"


# -- blocks ----------------------------------------------------------------------------------


def _mrkdwn(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit) if text.strip() else "—"}


def _section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text, MAX_SECTION_TEXT), **extra}


def _sections(text: str) -> list[dict[str, Any]]:
    return [_section(piece) for piece in split_mrkdwn(text)]


def _fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    fields = [_mrkdwn(f"*{name}*\n{value}", MAX_FIELD_TEXT) for name, value in pairs]
    return {"type": "section", "fields": fields[:MAX_FIELDS]}


def _context(*texts: str) -> dict[str, Any]:
    elements = [_mrkdwn(t, MAX_CONTEXT_TEXT) for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements}


def _button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    if len(value) > MAX_BUTTON_VALUE:
        raise ValueError(f"button value for {action_id} is {len(value)} characters (max 2000)")
    button = {
        "type": "button",
        "text": _plain(label, MAX_BUTTON_TEXT),
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _actions(*buttons: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "actions", "elements": list(buttons)[:MAX_ACTION_ELEMENTS]}
    if block_id:
        block["block_id"] = block_id
    return block


def _message(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"text": truncate(text, MAX_TEXT), "blocks": blocks}


def _ephemeral(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {**_message(text, blocks), "response_type": "ephemeral"}


def _fit_block(block: dict[str, Any]) -> list[dict[str, Any]]:
    """One block as one or more blocks that each respect Slack's limits."""
    kind = block.get("type")
    if kind == "section":
        out: list[dict[str, Any]] = []
        base = {k: v for k, v in block.items() if k not in ("text", "fields")}
        text = block.get("text")
        if text:
            if text.get("type") == "mrkdwn":
                pieces = split_mrkdwn(text["text"]) or ["—"]
            else:
                pieces = [_plain(text["text"], MAX_SECTION_TEXT)["text"]]
            out = [
                {**(base if i == 0 else {"type": "section"}), "text": {**text, "text": piece}}
                for i, piece in enumerate(pieces)
            ]
        fields = [
            {**f, "text": truncate(f["text"], MAX_FIELD_TEXT)} for f in block.get("fields") or []
        ]
        for start in range(0, len(fields), MAX_FIELDS):
            chunk = fields[start : start + MAX_FIELDS]
            if start == 0 and out:
                out[0]["fields"] = chunk
            else:
                out.append({**(base if start == 0 else {"type": "section"}), "fields": chunk})
        return out or [block]
    if kind == "context":
        elements = [
            {**e, "text": truncate(e["text"], MAX_CONTEXT_TEXT)} if "text" in e else e
            for e in block.get("elements") or []
        ]
        return [
            {**block, "elements": elements[i : i + MAX_CONTEXT_ELEMENTS]}
            if i == 0
            else {"type": "context", "elements": elements[i : i + MAX_CONTEXT_ELEMENTS]}
            for i in range(0, max(len(elements), 1), MAX_CONTEXT_ELEMENTS)
        ]
    if kind == "header":
        return [{**block, "text": _plain(block["text"]["text"], MAX_HEADER_TEXT)}]
    if kind == "actions":
        elements = block.get("elements") or []
        return [
            {**block, "elements": elements[i : i + MAX_ACTION_ELEMENTS]}
            if i == 0
            else {"type": "actions", "elements": elements[i : i + MAX_ACTION_ELEMENTS]}
            for i in range(0, max(len(elements), 1), MAX_ACTION_ELEMENTS)
        ]
    return [block]


def split_message(
    blocks: Sequence[dict[str, Any]], max_blocks: int = MAX_BLOCKS
) -> list[list[dict[str, Any]]]:
    """Blocks as one or more messages' worth: long sections split, ≤ `max_blocks` each.

    Nothing is dropped. A message never starts with a divider nor ends with a header or
    divider when moving it keeps both sides within the limit.
    """
    fitted = [piece for block in blocks for piece in _fit_block(block)]
    messages: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for block in fitted:
        if len(current) == max_blocks:
            carry: list[dict[str, Any]] = []
            while current and current[-1].get("type") in ("header", "divider") and len(carry) < 2:
                carry.insert(0, current.pop())
            if not current:
                current, carry = carry, []
            messages.append(current)
            current = [b for b in carry if b.get("type") != "divider"]
        if not current and block.get("type") == "divider":
            continue
        current.append(block)
    if current:
        messages.append(current)
    return messages


def _fit_one(
    blocks: Sequence[dict[str, Any]], tail: Sequence[dict[str, Any]], cut_note: str
) -> list[dict[str, Any]]:
    """Blocks and a tail (the buttons) as one message, cutting the middle when too long."""
    fitted = [piece for block in blocks for piece in _fit_block(block)]
    tail = [piece for block in tail for piece in _fit_block(block)]
    room = MAX_BLOCKS - len(tail)
    if len(fitted) > room:
        kept = fitted[: room - 1]
        cut = len(fitted) - len(kept)
        fitted = [*kept, _context(f"{ELLIPSIS} {_plural(cut, 'more block')} cut: {cut_note}")]
    return [*fitted, *tail]


def split_messages(text: str, blocks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several messages from blocks too many for one; each has its own `text` fallback."""
    parts = split_message(blocks)
    if len(parts) <= 1:
        return [_message(text, list(parts[0]) if parts else [])]
    return [
        _message(text if i == 0 else f"{text} (part {i + 1} of {len(parts)})", part)
        for i, part in enumerate(parts)
    ]


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


# -- the root message and the checklist ------------------------------------------------------


def _when(iso: str) -> str:
    """Slack's date formatting (each reader's time zone), the ISO string as fallback."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return clip(iso, 100)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{escape(iso)}>"


def _user(user_id: str) -> str:
    return f"<@{user_id}>" if re.fullmatch(r"[UW][A-Z0-9]+", user_id) else clip(user_id, 100)


def _endpoint(endpoint: str | None) -> str:
    return _inline_code(endpoint, 500) if endpoint else "_none given: the cluster's own egress_"


def root_message(incident: IncidentView) -> dict[str, Any]:
    """The message in the channel that the incident's thread hangs under."""
    alias = clip(incident.alias, 200)
    pairs = [
        ("Cluster", resource_link(incident.cluster_id, incident.alias)),
        ("Endpoint", _endpoint(incident.endpoint)),
        ("Asked by", _user(incident.user_id)),
        ("Incident", _inline_code(incident.id)),
        ("Started", _when(incident.created)),
    ]
    if incident.pod:
        pairs.append(("Pod", _inline_code(incident.pod)))
    blocks = [
        _section(f"*Egress check of {alias}*"),
        _fields(pairs),
        _context(
            "The checklist and every finding follow in this thread. Reply here with "
            "`@aks-egress recheck`, `@aks-egress probe URL` or `@aks-egress summary`."
        ),
    ]
    target = incident.endpoint or "its own egress"
    text = (
        f"Egress check of {escape(incident.alias)} → {escape(target)}, asked by "
        f"{_user(incident.user_id)} (incident {escape(incident.id)})"
    )
    return _message(text, blocks)


def _step_line(title: str, state: StepState) -> str:
    decisive = min(state.findings, key=lambda f: RANK[f.severity]) if state.findings else None
    why = ""
    if decisive is not None:
        line = _sentence(decisive.detail or decisive.title)
        why = f"{_inline_code(decisive.code)} {clip(line, 180)}"
    if state.status == "done":
        mark = MARKS[worst([f.severity for f in state.findings if f.severity != Severity.INFO])]
        return f"{mark} *{escape(title)}* — {why or 'nothing to report'}"
    if state.status == "running":
        return f"{RUNNING} *{escape(title)}* — running{ELLIPSIS}"
    if state.status == "skipped":
        return f"{SKIPPED} *{escape(title)}* — skipped" + (f": {why}" if why else "")
    return f"{PENDING} *{escape(title)}* — waiting"


def _step_title(name: str) -> str:
    return BY_NAME[name].title if name in BY_NAME else name


def checklist(steps: Mapping[str, StepState]) -> dict[str, Any]:
    """The live checklist: one line per step the check runs, in the order given."""
    lines = [_step_line(_step_title(name), state) for name, state in steps.items()]
    done = sum(1 for s in steps.values() if s.status in ("done", "skipped"))
    finished = [f for s in steps.values() if s.status == "done" for f in s.findings]
    errors = sum(1 for f in finished if f.severity == Severity.ERROR)
    warnings = sum(1 for f in finished if f.severity == Severity.WARNING)
    progress = f"{done} of {len(steps)} steps done"
    tally = f"{MARKS[Severity.ERROR]} {errors} · {MARKS[Severity.WARNING]} {warnings}"
    blocks = [
        _context(f"*Checklist* · {progress} · {tally}"),
        *_sections("\n".join(lines) or "—"),
    ]
    state = "finished" if done == len(steps) else "running"
    text = (
        f"Checklist {state}: {progress}, {_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    )
    return _message(text, _fit_one(blocks, [], "the checklist is too long"))


# -- findings --------------------------------------------------------------------------------


def evidence_value(incident_id: str, index: int | None, code: str) -> str:
    """The Show evidence button's value: `{incident}:{index}:{code}` or `{incident}:{code}`.

    The index finds the finding in its report; the code checks it is the same finding
    (a later run's report may order findings differently), see `find_finding`.
    """
    ref = f"{index}:{code}" if index is not None else code
    return f"{incident_id}:{ref}"


def parse_evidence_value(value: str) -> tuple[str, str]:
    """(incident id, ref) from a Show evidence value; the ref goes to `find_finding`."""
    incident_id, _, ref = value.partition(":")
    return incident_id, ref


def find_finding(reports: Sequence[Report | Mapping[str, Any]], ref: str) -> Finding | None:
    """The finding a Show evidence ref (`3:NSG_OUTBOUND_DENY`, `3` or `CODE`) points at.

    Looks at the newest report first: the index must hold that code when both are given;
    else the first finding with the code.
    """
    index_text, _, code = ref.partition(":")
    if not code and not index_text.isdigit():
        index_text, code = "", index_text
    index = int(index_text) if index_text.isdigit() else None
    loaded = [r if isinstance(r, Report) else Report.from_json(dict(r)) for r in reports]
    for report in reversed(loaded):
        if index is not None and index < len(report.findings):
            found = report.findings[index]
            if not code or found.code == code:
                return found
    if code:
        for report in reversed(loaded):
            for found in report.findings:
                if found.code == code:
                    return found
    return None


def _finding_parts(
    f: Finding, incident_id: str, index: int | None
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    mark = MARKS[f.severity]
    inside = f.evidence.get("inside")  # the probe inside the user's --pod
    seen = f" · seen from inside {_inline_code(inside)}" if inside else ""
    head = f"*{mark} `{escape(f.code)}`*  {clip(f.title, 300)}{seen}"
    body_text = head + (f"\n{clip(f.detail, MAX_DETAIL)}" if f.detail else "")
    blocks: list[dict[str, Any]] = _sections(body_text)
    step = CATALOG[f.code].step if f.code in CATALOG else None
    facts = []
    if step:
        facts.append(f"Step: {escape(_step_title(step))}")
    if f.resource:
        facts.append(f"Resource: {resource_link(f.resource)}")
    facts.append(f"Incident {_inline_code(incident_id)}")
    blocks.append(_context(" · ".join(facts)))
    lines = evidence_lines(f.evidence)
    if lines:
        blocks.extend(_sections("*Evidence*\n" + "\n".join(lines)))
    if f.fix:
        blocks.extend(_section(piece) for piece in _code_block(f.fix, "*Fix*"))
    value = evidence_value(incident_id, index, f.code)
    tail = [_actions(_button("Show evidence", ACTION_SHOW_EVIDENCE, value))]
    text = f"{mark} {f.code}: {f.title}" + (f" — {_sentence(f.detail)}" if f.detail else "")
    return escape(text), blocks, tail


def finding_reply(f: Finding, incident_id: str, index: int | None = None) -> dict[str, Any]:
    """One thread reply for a failing or warning finding, in one message (cut if huge)."""
    text, blocks, tail = _finding_parts(f, incident_id, index)
    return _message(text, _fit_one(blocks, tail, "press Show evidence for all of it"))


def finding_messages(
    f: Finding, incident_id: str, index: int | None = None
) -> list[dict[str, Any]]:
    """The same reply as `finding_reply`, split over several messages instead of cut."""
    text, blocks, tail = _finding_parts(f, incident_id, index)
    return split_messages(text, [*blocks, *tail])


# -- the summary -----------------------------------------------------------------------------


def _ordered(findings: Iterable[Finding]) -> list[Finding]:
    def key(f: Finding) -> tuple[int, int]:
        step = CATALOG[f.code].step if f.code in CATALOG else ""
        return STEP_ORDER.get(step, len(STEP_ORDER)), RANK[f.severity]

    return sorted(findings, key=key)


def _counts(findings: Sequence[Finding]) -> str:
    n = Counter(f.severity for f in findings)
    error, warning, ok, info = Severity.ERROR, Severity.WARNING, Severity.OK, Severity.INFO
    return " · ".join(
        [
            f"{MARKS[error]} {_plural(n[error], 'error')}",
            f"{MARKS[warning]} {_plural(n[warning], 'warning')}",
            f"{MARKS[ok]} {n[ok]} passed",
            f"{MARKS[info]} {n[info]} info",
        ]
    )


def _root_cause_line(report: Report) -> tuple[str, str]:
    """(mrkdwn, plain) naming the root cause, or saying there is none."""
    if report.root_cause:
        f = next((x for x in report.findings if x.code == report.root_cause), None)
        title = (
            f.title
            if f
            else CATALOG[report.root_cause].title
            if report.root_cause in CATALOG
            else ""
        )
        line = _sentence(f.detail) if f and f.detail else ""
        mark = MARKS[Severity.ERROR]
        text = f"*Root cause: {mark} `{escape(report.root_cause)}`* — {clip(title, 300)}"
        if line:
            text += f"\n{clip(line, 600)}"
        return text, f"Root cause {report.root_cause}: {title}"
    warnings = sum(1 for f in report.findings if f.severity == Severity.WARNING)
    where = f" to {_inline_code(report.endpoint, 500)}" if report.endpoint else ""
    text = f"*No root cause found:* nothing on the path blocks egress{where}."
    if warnings:
        text += f" {_plural(warnings, 'warning')} below may still matter."
    return text, "No root cause found: nothing on the path blocks egress"


def _summary_parts(
    report: Report, incident_id: str, resolved: bool
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    cause, cause_plain = _root_cause_line(report)
    blocks: list[dict[str, Any]] = [_section(cause)]
    if resolved:
        blocks.append(_section(f"{MARKS[Severity.OK]} *Resolved.* Re-run to check again."))
    blocks.append(_context(_counts(report.findings)))
    ips = report.egress_ips
    shown_ips = ", ".join(_inline_code(ip) for ip in ips[:20]) + _more(len(ips), 20)
    outbound = report.cluster.outbound_type or "unknown"
    blocks.append(
        _fields(
            [
                ("Cluster", resource_link(report.cluster.id, report.cluster.alias)),
                ("Endpoint", _endpoint(report.endpoint)),
                ("Egress IPs", shown_ips or "_unknown_"),
                ("Outbound type", _inline_code(outbound)),
            ]
        )
    )
    notable = [
        f for f in _ordered(report.findings) if f.severity in (Severity.ERROR, Severity.WARNING)
    ]
    listing = [f"{MARKS[f.severity]} `{escape(f.code)}` {clip(f.title, 200)}" for f in notable]
    s = report.stats
    stats = (
        f"{_plural(s.arm_calls, 'ARM call')} · {_plural(s.k8s_calls, 'Kubernetes call')} · "
        f"{_duration(s.duration_ms)} · incident {_inline_code(incident_id)}"
    )
    buttons = [_button("Re-run", ACTION_RERUN, incident_id, "primary")]
    buttons.append(_button("Probe another endpoint", ACTION_PROBE_ENDPOINT, incident_id))
    if report.root_cause:
        value = evidence_value(incident_id, _index_of(report, report.root_cause), report.root_cause)
        buttons.append(_button("Show evidence", ACTION_SHOW_EVIDENCE, value))
    if not resolved:
        buttons.append(_button("Mark resolved", ACTION_MARK_RESOLVED, incident_id))
        if offers_bypass(report.root_cause, report.cluster.outbound_type):
            buttons.append(_button("Bypass appliance", ACTION_BYPASS, incident_id))
    tail = [_context(stats), _actions(*buttons)]
    state = " (resolved)" if resolved else ""
    counts = (
        f"{_plural(sum(f.severity == Severity.ERROR for f in report.findings), 'error')}, "
        f"{_plural(sum(f.severity == Severity.WARNING for f in report.findings), 'warning')}"
    )
    text = f"{report.cluster.alias}{state}: {cause_plain} ({counts})"
    return escape(text), blocks, tail, listing


def _index_of(report: Report, code: str) -> int | None:
    return next((i for i, f in enumerate(report.findings) if f.code == code), None)


def summary(report: Report, incident_id: str, resolved: bool = False) -> dict[str, Any]:
    """The last message of a run: root cause first, counts, egress IPs, stats, buttons."""
    text, blocks, tail, listing = _summary_parts(report, incident_id, resolved)
    if listing:
        shown = listing[:MAX_SUMMARY_FINDINGS]
        more = len(listing) - len(shown)
        if more:
            shown.append(f"{ELLIPSIS} and {more} more in the thread")
        blocks.extend(_sections("\n".join(shown)))
    return _message(text, _fit_one(blocks, tail, "every finding has its reply in the thread"))


def summary_messages(
    report: Report, incident_id: str, resolved: bool = False
) -> list[dict[str, Any]]:
    """The summary with every error and warning listed, over several messages if needed.

    The buttons are on the last message.
    """
    text, blocks, tail, listing = _summary_parts(report, incident_id, resolved)
    if listing:
        blocks.extend(_sections("\n".join(listing)))
    return split_messages(text, [*blocks, *tail])


# -- modals ----------------------------------------------------------------------------------


def probe_modal(incident_id: str) -> dict[str, Any]:
    """Ask for one more endpoint to probe from inside the incident's cluster."""
    if len(incident_id) > MAX_PRIVATE_METADATA:
        raise ValueError("incident id longer than private_metadata allows")
    return {
        "type": "modal",
        "callback_id": PROBE_MODAL_CALLBACK,
        "private_metadata": incident_id,
        "title": _plain("Probe an endpoint", MAX_MODAL_TITLE),
        "submit": _plain("Probe", MAX_MODAL_TITLE),
        "close": _plain("Cancel", MAX_MODAL_TITLE),
        "blocks": [
            {
                "type": "input",
                "block_id": PROBE_URL_BLOCK,
                "label": _plain("Endpoint", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": PROBE_URL_ACTION,
                    "placeholder": _plain("https://api.contoso.com", 150),
                },
                "hint": _plain(
                    "A URL, host:port or IP. The bot probes it from inside the cluster and "
                    "posts what it finds in the incident's thread.",
                    2000,
                ),
            },
            _context(f"Incident {_inline_code(incident_id)}"),
        ],
    }


def evidence_modal(f: Finding) -> dict[str, Any]:
    """The raw JSON of one finding, over as many sections as it takes (cut at 100 blocks)."""
    head = f"*{MARKS[f.severity]} `{escape(f.code)}`*  {clip(f.title, 300)}"
    blocks: list[dict[str, Any]] = [_section(head)]
    if f.resource and is_arm_id(f.resource):
        blocks.append(_context(f"<{portal_url(f.resource)}|Open in the Azure portal>"))
    raw = json.dumps(f.to_json(), indent=2, ensure_ascii=False, default=str)
    pieces = _code_block(raw.split("\n"), wrap=True)
    room = MAX_MODAL_BLOCKS - len(blocks)
    if len(pieces) > room:
        cut = len(pieces) - (room - 1)
        pieces = pieces[: room - 1]
        blocks.extend(_section(p) for p in pieces)
        blocks.append(
            _context(
                f"{ELLIPSIS} {_plural(cut, 'more section')} cut: run "
                "`aks-egress check ALIAS --endpoint URL --json` for the whole report"
            )
        )
    else:
        blocks.extend(_section(p) for p in pieces)
    return {
        "type": "modal",
        "callback_id": EVIDENCE_MODAL_CALLBACK,
        "title": _plain("Evidence", MAX_MODAL_TITLE),
        "close": _plain("Close", MAX_MODAL_TITLE),
        "blocks": blocks,
    }


# -- ephemeral replies -----------------------------------------------------------------------

_HELP_NEXT = "Type `/aks-egress help` for the commands."


def help_text() -> dict[str, Any]:
    blocks = [
        _section(
            "*aks-egress* finds out why pods in an AKS cluster cannot reach an endpoint "
            "outside their VNet. It works through the egress checklist (routes, NSGs, "
            "firewall, NAT gateway or load balancer, a probe from inside the cluster, SNAT, "
            "nodes) and posts each finding with its evidence and the exact fix in a thread."
        ),
        _section("*Commands*\n" + escape(USAGE)),
        _context(
            "An endpoint is a URL (`https://api.contoso.com/v1`), `host:port` or an IP. "
            "Every finding has a stable code, explained in docs/finding-codes.md."
        ),
    ]
    return _ephemeral("aks-egress: commands", blocks)


def clusters_text(
    aliases: list[str], user_groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """The clusters a channel may check, each limited to user groups said so."""
    if not aliases:
        return _ephemeral(
            "No cluster may be checked from this channel",
            [
                _section(f"{MARKS[Severity.WARNING]} No cluster may be checked from this channel."),
                _context(
                    "Ask the bot's operators to add this channel to a cluster's `channels` in "
                    "the bot's configuration, or run the check from a channel that has one."
                ),
            ],
        )
    groups = user_groups or {}

    def line(alias: str) -> str:
        only = ", ".join(_inline_code(g) for g in groups.get(alias) or ())
        return f"• {_inline_code(alias)}" + (f" (members of {only} only)" if only else "")

    lines = [line(a) for a in aliases]
    blocks = [
        _section(f"*Clusters this channel may check* ({len(aliases)})"),
        *_sections("\n".join(lines)),
    ]
    tail = [_context("Check one: `/aks-egress check CLUSTER URL`.")]
    text = "Clusters this channel may check: " + ", ".join(aliases)
    return _ephemeral(escape(text), _fit_one(blocks, tail, "too many clusters to list"))


def usage_error(problem: str) -> dict[str, Any]:
    blocks = [
        _section(f"{MARKS[Severity.ERROR]} {clip(_capital(_strip_period(problem)), 2000)}."),
        _section("*Usage*\n" + escape(USAGE)),
        _context(_HELP_NEXT),
    ]
    return _ephemeral(escape(f"{_strip_period(problem)}. {_HELP_NEXT}"), blocks)


def refusal(reason: str, next_step: str | None = None) -> dict[str, Any]:
    next_step = next_step or (
        "Run `/aks-egress clusters` for the clusters this channel may check; "
        "`/aks-egress help` for the commands."
    )
    blocks = [
        _section(f"{MARKS[Severity.ERROR]} Not run: {clip(_strip_period(reason), 2800)}."),
        _context(f"*Next:* {clip(next_step, 2000)}"),
    ]
    return _ephemeral(escape(f"Not run: {_strip_period(reason)}. {next_step}"), blocks)


def error_text(what: str, next_step: str) -> dict[str, Any]:
    blocks = [
        _section(f"{MARKS[Severity.ERROR]} *Could not finish:* {clip(_strip_period(what), 2800)}."),
        _section(f"*Next:* {clip(_strip_period(next_step), 2800)}."),
    ]
    text = f"Could not finish: {_strip_period(what)}. Next: {_strip_period(next_step)}."
    return _ephemeral(escape(text), blocks)


def started_text(incident_id: str, alias: str, place: int = 0) -> dict[str, Any]:
    """The ack; `place` > 0: every worker is busy and the check waits its turn."""
    if place > 0:
        text = (
            f"{RUNNING} Queued: {_queue_place(place)}. Checking {_inline_code(alias)} as "
            f"incident {_inline_code(incident_id)} as soon as a worker is free; its message "
            "shows the place in the queue, and the checklist follows in its thread."
        )
        plain = f"Queued ({_queue_place(place)}): {alias} as incident {incident_id}"
        return _ephemeral(escape(plain), [_section(text)])
    text = (
        f"{RUNNING} Checking {_inline_code(alias)} as incident {_inline_code(incident_id)}: "
        "the checklist and the findings follow in the thread of the message I just posted."
    )
    return _ephemeral(escape(f"Checking {alias} as incident {incident_id}"), [_section(text)])


def _queue_place(place: int) -> str:
    return "next in line" if place <= 1 else f"{place - 1} checks ahead of it"


def queued_root_message(incident: IncidentView, place: int) -> dict[str, Any]:
    """The root message while its check waits for a worker (replaced when it starts)."""
    message = root_message(incident)
    note = f"{RUNNING} *Queued:* {_queue_place(place)}; it starts when a worker is free."
    return _message(message["text"], [*message["blocks"], _context(note)])


# -- the postmortem timeline -----------------------------------------------------------------


def timeline(incident: IncidentView, reports: Sequence[Report | Mapping[str, Any]]) -> str:
    """Markdown (that Slack's mrkdwn reads too) of every run in the thread, for the postmortem.

    Each run: the endpoint, the root cause, each error and warning with its fix, what
    changed since the run before, the egress IPs and the cost. Escaped for Slack.
    """
    loaded = [r if isinstance(r, Report) else Report.from_json(dict(r)) for r in reports]
    lines = [
        f"*Incident {escape(incident.id)}: egress from {escape(incident.alias)}*",
        f"- Cluster: {escape(incident.alias)} (`{escape(incident.cluster_id)}`)",
        f"- Endpoint: {escape(incident.endpoint) if incident.endpoint else 'none given'}",
        f"- Asked by {_user(incident.user_id)} at {escape(incident.created)}",
    ]
    if incident.pod:
        lines.append(f"- Pod: `{escape(incident.pod)}`")
    if not loaded:
        lines += ["", "No check has finished yet."]
        return truncate("\n".join(lines), MAX_TEXT)
    previous: set[str] | None = None
    for number, report in enumerate(loaded, start=1):
        notable = [
            f for f in _ordered(report.findings) if f.severity in (Severity.ERROR, Severity.WARNING)
        ]
        codes = {f.code for f in notable}
        target = escape(report.endpoint) if report.endpoint else "the cluster's own egress"
        cause = (
            f"root cause `{escape(report.root_cause)}`"
            if report.root_cause
            else "no root cause (nothing on the path blocks egress)"
        )
        lines += ["", f"*Run {number}* — {target}: {cause}"]
        if previous is not None:
            gone, new = sorted(previous - codes), sorted(codes - previous)
            if gone or new:
                changes = []
                if gone:
                    changes.append("gone: " + ", ".join(f"`{escape(c)}`" for c in gone))
                if new:
                    changes.append("new: " + ", ".join(f"`{escape(c)}`" for c in new))
                lines.append(f"- Since run {number - 1}: " + "; ".join(changes))
            else:
                lines.append(f"- Since run {number - 1}: no change")
        for f in notable:
            detail = f" — {escape(_sentence(f.detail))}" if f.detail else ""
            lines.append(f"- {MARKS[f.severity]} `{escape(f.code)}` {escape(f.title)}{detail}")
            if f.fix:
                fix = "\n".join(escape(c.replace(FENCE, "ˋˋˋ")) for c in f.fix)
                lines.append(f"{FENCE}\n{fix}\n{FENCE}")
        if not notable:
            lines.append("- no errors or warnings")
        ips = ", ".join(escape(ip) for ip in report.egress_ips) or "unknown"
        s = report.stats
        lines.append(
            f"- Egress IPs: {ips}; {_plural(s.arm_calls, 'ARM call')}, "
            f"{_plural(s.k8s_calls, 'Kubernetes call')}, {_duration(s.duration_ms)}"
        )
        previous = codes
    last = loaded[-1]
    outcome = (
        f"the last run still finds `{escape(last.root_cause)}`"
        if last.root_cause
        else "the last run finds no error on the egress path"
    )
    lines += ["", f"*Outcome:* {outcome}."]
    return truncate("\n".join(lines), MAX_TEXT)


def snat_summary(summary: Mapping[str, Any], day: str) -> dict[str, Any]:
    """The morning message: one line per cluster, worst first, and the fix where over 75 %."""
    clusters = sorted(summary.get("clusters") or [], key=lambda c: -(c.get("peakUsedPct") or -1))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"SNAT ports, {day}", MAX_HEADER_TEXT)}
    ]
    for cluster in clusters:
        alias = escape(cluster.get("alias", "?"))
        if cluster.get("error"):
            blocks.append(_section(f"*{alias}* ✗ could not be read: {escape(cluster['error'])}"))
            continue
        peak = cluster.get("peakUsedPct")
        if peak is None:
            blocks.append(_section(f"*{alias}* · no SNAT data"))
            continue
        mark = (
            "✗" if peak >= 100 or cluster.get("failedConnections") else "!" if peak >= 75 else "✓"
        )
        parts = [f"*{alias}* {mark} peak {peak:.0f} % of allocated ports"]
        if (change := cluster.get("changeSinceYesterday")) is not None:
            parts.append(f"{change:+.1f} pts since yesterday")
        if (days := cluster.get("daysToExhaustion")) is not None:
            parts.append(f"exhausted in ~{days:.0f} days at this trend")
        parts.append(f"{cluster.get('failedConnections', 0)} failed connections")
        if top := cluster.get("topNodes"):
            parts.append("top nodes: " + ", ".join(f"`{escape(n)}`" for n in top[:5]))
        text = " · ".join(parts)
        if peak >= 75:
            fixes = [line for f in cluster.get("findings") or [] for line in f.get("fix") or []]
            if fixes:
                text += "\n```" + escape("\n".join(fixes[:4])) + "```"
        blocks.append(_section(truncate(text, MAX_SECTION_TEXT)))
    blocks.append(_context("Chart of used vs allocated ports in the thread · aks-egress"))
    worst = clusters[0] if clusters else {}
    fallback = f"SNAT summary {day}: {len(clusters)} clusters"
    if worst.get("peakUsedPct") is not None:
        fallback += f", highest {worst['alias']} at {worst['peakUsedPct']:.0f} %"
    return _message(fallback, blocks[:MAX_BLOCKS])


def shared_note(source_incident: str, age_s: float) -> dict[str, Any]:
    """Says that this run's evidence was collected for another incident moments ago."""
    text = (
        f"Shared result: this evidence was collected {age_s:.0f} s ago for incident "
        f"{_inline_code(source_incident)}, which asked about the same cluster and endpoint "
        "at the same moment. Re-run collects it afresh."
    )
    return _message(f"Shared result, {age_s:.0f} s old", [_context(text)])
