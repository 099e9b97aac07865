"""Slack's mrkdwn as a person reads it in Slack, for the terminal (the demo's printer).

`*bold*`, `_italic_`, `~strike~` and `` `code` `` become styles; a link `<url|name>` shows
its name, links to the URL (OSC 8 where the terminal supports it) and gets a numbered
note with the URL under the message; `<!date^…>` is written out in the local time zone
with Slack's format tokens; mentions read `@U…`, `#channel`, `@here`; a ``` block keeps
its lines whole (a fix command is broken at spaces with a shell continuation, as in the
terminal report). Formats follow https://api.slack.com/reference/surfaces/formatting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.style import Style
from rich.text import Text

from bot.render.terminal import Broken, command

FENCE = "```"
ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
INLINE = re.compile(
    r"<(?P<angle>[^<>\n]+)>"
    r"|`(?P<code>[^`\n]+)`"
    r"|(?<![\w*])\*(?P<bold>[^*\n]+?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic>[^_\n]+?)_(?![\w_])"
    r"|(?<![\w~])~(?P<strike>[^~\n]+?)~(?![\w~])"
)
STYLES = {"bold": "bold", "italic": "italic", "strike": "strike"}
DATE_TOKEN = re.compile(r"\{(\w+)\}")


def unescape(text: str) -> str:
    for entity, char in ENTITIES:
        text = text.replace(entity, char)
    return text


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def slack_date(stamp: int, fmt: str, now: datetime, zone: tzinfo | None = None) -> str:
    """A `<!date^stamp^fmt>` as Slack writes it for a reader in `zone` (default: local)."""
    moment = datetime.fromtimestamp(stamp).astimezone(zone)
    today = now.astimezone(zone).date()

    def pretty(day: date, plain: str) -> str:
        names = {
            today: "today",
            today - timedelta(1): "yesterday",
            today + timedelta(1): "tomorrow",
        }
        return names.get(day, plain)

    long_date = f"{moment:%B} {_ordinal(moment.day)}, {moment.year}"
    short_date = f"{moment:%b} {moment.day}, {moment.year}"
    full_date = f"{moment:%A}, {long_date}"
    minutes = int((now - moment).total_seconds() // 60)
    ago = f"{minutes // 60} hours ago" if minutes >= 120 else f"{max(minutes, 0)} minutes ago"
    values = {
        "date_num": f"{moment:%Y-%m-%d}",
        "date": long_date,
        "date_short": short_date,
        "date_long": full_date,
        "date_pretty": pretty(moment.date(), long_date),
        "date_short_pretty": pretty(moment.date(), short_date),
        "date_long_pretty": pretty(moment.date(), full_date),
        "time": f"{moment:%H:%M}",
        "time_secs": f"{moment:%H:%M:%S}",
        "ago": ago,
    }
    return DATE_TOKEN.sub(lambda m: values.get(m.group(1), m.group(0)), fmt)


@dataclass
class _Writer:
    now: datetime
    zone: tzinfo | None
    links: list[str] = field(default_factory=list)

    def link(self, url: str) -> int:
        if url not in self.links:
            self.links.append(url)
        return self.links.index(url) + 1

    def angle(self, body: str, style: Style) -> Text:
        target, _, label = body.partition("|")
        if target.startswith("!date^"):
            parts = target.split("^")
            try:
                return Text(slack_date(int(parts[1]), parts[2], self.now, self.zone), style)
            except (IndexError, ValueError, OverflowError, OSError):
                return Text(unescape(label or target), style)
        if target.startswith("!subteam^"):
            return Text(unescape(label) or "@group", style + Style(bold=True))
        if target.startswith("!"):
            return Text(f"@{target[1:]}", style + Style(bold=True))
        if target.startswith("@"):
            return Text(f"@{target[1:]}", style + Style(bold=True))
        if target.startswith("#"):
            return Text(f"#{unescape(label) or target[1:]}", style + Style(bold=True))
        url = unescape(target)
        number = self.link(url)
        text = Text(unescape(label) or url, style + Style(underline=True, link=url))
        text.append(f"[{number}]", Style(dim=True))
        return text

    def inline(self, source: str, style: Style | None = None) -> Text:
        base = style or Style()
        out, last = Text(), 0
        for match in INLINE.finditer(source):
            out.append(unescape(source[last : match.start()]), base)
            kind = match.lastgroup or ""
            inner = match.group(kind)
            if kind == "angle":
                out.append_text(self.angle(inner, base))
            elif kind == "code":
                out.append(unescape(inner), base + Style(color="cyan"))
            else:
                out.append_text(self.inline(inner, base + Style.parse(STYLES[kind])))
            last = match.end()
        out.append(unescape(source[last:]), base)
        return out


def render(text: str, now: datetime | None = None, zone: tzinfo | None = None) -> RenderableType:
    """One message's mrkdwn as rich renderables, its links' URLs noted under it."""
    writer = _Writer(now or datetime.now().astimezone(), zone)
    parts: list[RenderableType] = []
    for index, piece in enumerate(text.split(FENCE)):
        if index % 2:  # inside a ``` block: lines kept whole
            lines = [unescape(line) for line in piece.strip("\n").splitlines()]
            parts.append(Padding(Group(*(command(line) for line in lines)), (0, 0, 0, 2)))
        elif piece.strip("\n"):
            parts.append(writer.inline(piece.strip("\n")))
    for number, url in enumerate(writer.links, start=1):
        parts.append(Broken(f"[{number}] {url}", sep="/", cont="    ", style="dim"))
    return Group(*parts)
