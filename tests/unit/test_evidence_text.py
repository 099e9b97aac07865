"""bot/slack/evidence_text.py: a finding's evidence as readable mrkdwn lines, never a JSON
dump: routes with their next hop, NSG denials grouped by rule, ARM ids as portal links,
curl's lines in a code block, and a cap on the lines with a pointer to the raw JSON."""

from __future__ import annotations

from bot.slack import kit as K
from bot.slack.evidence_text import _code_block, evidence_lines
from tests.slack_messages import NSG_ID, check_mrkdwn


def test_a_route_reads_prefix_then_next_hop() -> None:
    lines = evidence_lines(
        {
            "destination": "20.50.1.10",
            "prefix": "20.50.0.0/16",
            "nextHopType": "VirtualAppliance",
            "nextHopIpAddress": "10.0.0.4",
            "route": "to-fw",
        }
    )
    assert lines[0] == "• route `to-fw`: `20.50.0.0/16` → `VirtualAppliance` `10.0.0.4`"
    assert lines[1] == "• destination: `20.50.1.10`"
    assert len(lines) == 2, "the route's keys are not repeated one by one"


def test_denials_are_grouped_by_the_rule_that_denies_them() -> None:
    denied = [
        {"nsg": NSG_ID, "rule": "DenyWeb", "priority": 100, "defaultRule": False,
         "destination": f"host{n}.example:443/Https", "address": f"20.0.0.{n}", "port": 443,
         "protocol": "Tcp"}
        for n in range(3)
    ] + [
        {"nsg": NSG_ID, "rule": "DenyAllOutBound", "priority": 65500, "defaultRule": True,
         "destination": "ntp.example:123/Udp", "address": "20.0.1.1", "port": 123}
    ]  # fmt: skip
    lines = evidence_lines({"denied": denied})
    assert len(lines) == 2
    assert lines[0].startswith("• rule `DenyWeb` (priority 100) in NSG <")
    assert "`host2.example:443/Https` at `20.0.0.2:443` Tcp" in lines[0]
    assert lines[1].startswith("• default rule `DenyAllOutBound` (priority 65500)")


def test_arm_ids_are_portal_links_and_booleans_words() -> None:
    [nsg, private] = evidence_lines({"nsg": NSG_ID, "private": True})
    assert nsg == f"• nsg: <{K.PORTAL}{NSG_ID}|nsg-nodes>"
    assert private == "• private: yes"


def test_curls_lines_end_the_evidence_in_a_code_block() -> None:
    lines = evidence_lines({"exitCode": 28, "tellingLines": [f"* line {n} <&>" for n in range(15)]})
    assert lines[0] == "• exit code: `28`"
    assert lines[-1].startswith("curl said:\n```\n* line 0 &lt;&amp;&gt;")
    assert lines[-1].endswith("… 3 more lines\n```")
    for line in lines:
        check_mrkdwn(line)


def test_too_much_evidence_points_to_show_evidence() -> None:
    lines = evidence_lines({f"key{n}": f"value {n}" for n in range(40)})
    assert len(lines) == K.MAX_EVIDENCE_LINES
    assert lines[-1] == "… 17 more: press Show evidence"


def test_code_blocks_wrap_raw_json_and_cut_a_long_command() -> None:
    long = "x" * (K.MAX_SECTION_TEXT * 2)
    wrapped = _code_block([long], "*Raw*", wrap=True)
    assert wrapped[0].startswith("*Raw*\n```\n")
    assert "".join(p.replace("```", "").replace("\n", "") for p in wrapped).count("x") == len(long)
    [cut] = _code_block([long, "```inner```"])
    assert "…" in cut and "ˋˋˋinnerˋˋˋ" in cut
    for piece in [*wrapped, cut]:
        check_mrkdwn(piece)
        assert len(piece) <= K.MAX_SECTION_TEXT
