"""bot/slack/kit.py: text safe in mrkdwn, and blocks and messages cut or split to stay
inside Slack's limits without breaking an entity, a link or a code block."""

from __future__ import annotations

import pytest

from bot.slack import kit as K
from tests.slack_messages import NSG_ID, check_block, check_mrkdwn


def test_split_message_splits_an_oversized_section_and_closes_its_code_block() -> None:
    lines = [f"line {n} " + "z" * 90 for n in range(200)]
    text = "*Fix*\n```\n" + "\n".join(lines) + "\n```\nafter"
    parts = K.split_message([{"type": "section", "text": {"type": "mrkdwn", "text": text}}])
    assert len(parts) == 1
    sections = parts[0]
    assert len(sections) > 5
    for block in sections:
        check_block(block)
    pieces = [b["text"]["text"] for b in sections]
    assert pieces[0].startswith("*Fix*\n```\n") and pieces[1].startswith("```\n")
    body = [ln for p in pieces for ln in p.split("\n") if ln.startswith("line ")]
    assert body == lines
    assert pieces[-1].endswith("```\nafter")


def test_split_message_puts_at_most_fifty_blocks_in_a_message() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"b{n}"}} for n in range(120)]
    parts = K.split_message(blocks)
    assert [len(p) for p in parts] == [50, 50, 20]
    assert [b["text"]["text"] for p in parts for b in p] == [f"b{n}" for n in range(120)]


def test_cutting_never_splits_an_entity_or_a_link() -> None:
    cut = K.clip("&" * 5000, 3000)
    assert len(cut) <= 3000 and cut.endswith("&amp;…")
    link = K.resource_link(NSG_ID)
    text = "x" * 2990 + link
    cut = K.truncate(text, 3000)
    assert cut == "x" * 2990 + "…"
    check_mrkdwn(cut)
    for limit in range(2985, 3001):
        check_mrkdwn(K.truncate("a" * 2980 + "&lt;&amp;&gt;" * 10, limit))


def test_non_arm_resources_are_not_linked() -> None:
    assert K.resource_link("/api/v1/nodes/aks-1") == "`/api/v1/nodes/aks-1`"
    assert K.resource_link(NSG_ID) == f"<{K.PORTAL}{NSG_ID}|nsg-nodes>"


def test_escape_touches_only_the_three_characters_slack_reads() -> None:
    assert K.escape("a & <b> 'c' \"d\" `e`") == "a &amp; &lt;b&gt; 'c' \"d\" `e`"
    assert K.escape(42) == "42"


def test_clip_escapes_and_ends_in_an_ellipsis_only_when_cut() -> None:
    assert K.clip("<ok>", 10) == "&lt;ok&gt;"
    assert K.clip("abcdef", 4) == "abc…"
    assert len(K.clip("<" * 100, 20)) <= 20


def test_split_mrkdwn_keeps_every_line_and_fits_each_piece() -> None:
    text = "\n".join(f"row {n} " + "y" * 40 for n in range(300))
    pieces = K.split_mrkdwn(text, 1000)
    assert all(len(p) <= 1000 for p in pieces)
    assert "\n".join(pieces).split("\n") == text.split("\n")
    assert K.split_mrkdwn("   ") == []
    assert K.split_mrkdwn("short") == ["short"]


@pytest.mark.parametrize("count", [1, 50, 51, 130])
def test_split_messages_gives_each_part_its_own_fallback(count: int) -> None:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"b{n}"}} for n in range(count)
    ]
    messages = K.split_messages("Report", blocks)
    assert len(messages) == -(-count // K.MAX_BLOCKS)
    assert messages[0]["text"] == "Report"
    for i, message in enumerate(messages[1:], start=2):
        assert message["text"] == f"Report (part {i} of {len(messages)})"
    assert sum(len(m["blocks"]) for m in messages) == count


def test_a_message_never_starts_with_a_divider() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"b{n}"}} for n in range(50)]
    blocks.append({"type": "divider"})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "after"}})
    parts = K.split_message(blocks)
    assert [len(p) for p in parts] == [50, 1]
    assert parts[1][0]["text"]["text"] == "after"


def test_portal_links_quote_what_a_url_cannot_hold() -> None:
    odd = NSG_ID + " (copy)"
    assert K.portal_url(odd) == K.PORTAL + NSG_ID + "%20(copy)"
    assert K.resource_link(NSG_ID, "my|label") == f"<{K.PORTAL}{NSG_ID}|my¦label>"
    assert K.is_arm_id("/SUBSCRIPTIONS/x") and not K.is_arm_id(None)
