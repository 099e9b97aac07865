"""Slack mrkdwn rendered for the terminal as a person reads it in Slack."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console

from bot.render import mrkdwn

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def text_of(source: str, width: int = 80) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(mrkdwn.render(source, NOW, AMSTERDAM))
    return console.export_text()


def spans(source: str) -> dict[str, str]:
    """Each styled run of the first line: its text → its style."""
    writer = mrkdwn._Writer(NOW, AMSTERDAM)
    line = writer.inline(source)
    return {line.plain[s.start : s.end]: str(s.style) for s in line.spans}


def test_bold_italic_code_and_nesting():
    styles = spans("*Cluster* is _here_ with `code` and *✗ `NSG_OUTBOUND_DENY`*")
    assert styles["Cluster"] == "bold" and styles["here"] == "italic"
    assert "cyan" in styles["code"] and "bold" in styles["NSG_OUTBOUND_DENY"]
    assert text_of("*a* _b_ ~c~").strip() == "a b c"


def test_stars_inside_words_and_code_stay_literal():
    out = text_of("denies `*.data.mcr.microsoft.com:443` and 2*3*4")
    assert "*.data.mcr.microsoft.com:443" in out and "2*3*4" in out


def test_links_show_their_name_and_note_their_url():
    url = "https://portal.azure.com/#@/resource/subscriptions/0/resourceGroups/rg"
    out = text_of(f"Resource: <{url}|nsg-a> and <{url}|again>")
    assert "Resource: nsg-a[1] and again[1]" in out
    assert f"[1] {url}" in out.replace("\n", "")
    line = mrkdwn._Writer(NOW, AMSTERDAM).inline(f"<{url}|nsg-a>")
    assert any(getattr(s.style, "link", None) == url for s in line.spans)


def test_dates_in_the_readers_zone_with_slacks_tokens():
    stamp = int(datetime(2026, 11, 27, 7, 31, tzinfo=UTC).timestamp())
    out = text_of(f"Started <!date^{stamp}^{{date_short_pretty}} {{time}}|2026-11-27T07:31Z>")
    assert out.strip() == "Started today 08:31"  # Amsterdam is UTC+1 in November
    assert mrkdwn.slack_date(stamp, "{date_num} {date_long}", NOW, AMSTERDAM) == (
        "2026-11-27 Friday, November 27th, 2026"
    )
    bad = text_of("at <!date^oops^{time}|the fallback>")
    assert bad.strip() == "at the fallback"


def test_mentions_entities_and_code_blocks():
    out = text_of("<@U0DEMO0001> in <#C123|incidents> &lt;firewall-policy&gt; &amp; <!here>")
    assert out.strip() == "@U0DEMO0001 in #incidents <firewall-policy> & @here"
    long = "az network nsg rule create --resource-group rg --nsg-name nsg --name allow-egress " * 2
    out = text_of(f"*Fix*\n```\n{long.strip()}\n```", width=60)
    assert "```" not in out and " \\" in out
    joined = " ".join(part.strip().rstrip("\\").strip() for part in out.splitlines()[1:])
    assert long.strip() in " ".join(joined.split())
