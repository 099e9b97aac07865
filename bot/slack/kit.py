"""The Block Kit toolkit: Slack's limits, text that is safe in mrkdwn, and blocks and
messages that stay inside the limits (split at line boundaries, cut with "…").

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

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from bot.model import Severity
from bot.render.marks import MARKS

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
FENCE = "```"

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
