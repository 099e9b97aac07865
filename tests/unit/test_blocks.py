"""bot/slack/blocks.py: every message passes slack_sdk's models and stays inside Slack's
limits (the checks and reports in tests/slack_messages.py)."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from bot.codes import CATALOG
from bot.model import Finding, Report, Severity
from bot.slack import blocks as B
from bot.slack import kit as K
from tests.slack_messages import (
    CLUSTER_ID,
    HOSTILE,
    INCIDENT,
    NSG_ID,
    WORLDS,
    all_text,
    block_texts,
    buttons,
    check_block,
    check_message,
    check_view,
    huge_finding,
    huge_report,
    load,
    one_summary,
    states_for,
    view,
)

# -- every real report renders ----------------------------------------------------------------


@pytest.mark.parametrize("world", WORLDS)
def test_every_message_of_a_real_report_is_valid(world: str) -> None:
    report = load(world)
    check_message(B.root_message(view(alias=report.cluster.alias, endpoint=report.endpoint)))
    check_message(B.checklist(states_for(report)))
    for index, f in enumerate(report.findings):
        check_message(B.finding_reply(f, INCIDENT, index))
        for message in B.finding_messages(f, INCIDENT, index):
            check_message(message)
        check_view(B.evidence_modal(f))
    for resolved in (False, True):
        check_message(one_summary(report, INCIDENT, resolved=resolved))
        for message in B.summary_messages(report, INCIDENT, resolved=resolved):
            check_message(message)


def test_finding_reply_reads_like_the_evidence() -> None:
    report = load("nsg-subnet-deny")
    f = next(f for f in report.findings if f.code == "NSG_OUTBOUND_DENY")
    message = B.finding_reply(f, INCIDENT, 2)
    text = all_text(message)
    assert message["blocks"][0]["text"]["text"].startswith("*✗ `NSG_OUTBOUND_DENY`*")
    assert "An NSG denies traffic to the endpoint" in text
    assert "rule `DenyInternetHttpsOutbound` (priority 100)" in text
    assert f"<{K.PORTAL}{f.resource}|nsg-snet-aks-nodes-weu>" in text
    fix = next(t for t in _texts_of(message) if t.startswith("*Fix*"))
    assert fix.startswith("*Fix*\n```\n") and fix.endswith("\n```")
    assert f.fix[0] in fix and f.fix[1] in fix
    assert '"etag"' not in text, "evidence is shown readable, not as a JSON dump"
    assert message["text"].startswith("✗ NSG_OUTBOUND_DENY: An NSG denies traffic")


def _texts_of(message: dict[str, Any]) -> list[str]:
    return [t for b in message["blocks"] for t in block_texts(b)]


def test_route_evidence_names_prefix_and_next_hop() -> None:
    f = Finding(
        code="ROUTE_BLACKHOLE",
        severity=Severity.ERROR,
        title=CATALOG["ROUTE_BLACKHOLE"].title,
        evidence={
            "destination": "20.50.1.10",
            "prefix": "20.50.0.0/16",
            "nextHopType": "None",
            "nextHopIpAddress": None,
            "route": "drop-contoso",
            "source": "User",
        },
    )
    text = all_text(B.finding_reply(f, INCIDENT))
    assert "• route `drop-contoso`: `20.50.0.0/16` → `None`" in text


# -- huge reports split, never break a limit ------------------------------------------------


def test_huge_finding_reply_fits_one_message_with_its_button() -> None:
    f = huge_finding(1)
    message = B.finding_reply(f, INCIDENT, 7)
    blocks = check_message(message)
    assert len(blocks) == 50
    assert blocks[-1]["type"] == "actions"
    assert blocks[-1]["elements"][0]["value"] == f"{INCIDENT}:7:{f.code}"
    assert "cut: press Show evidence" in all_text(message)


def test_huge_finding_messages_keep_every_fix_command() -> None:
    f = huge_finding(1)
    messages = B.finding_messages(f, INCIDENT, 7)
    assert len(messages) > 1
    for message in messages:
        check_message(message)
    assert [buttons(m) for m in messages[:-1]] == [[] for _ in messages[:-1]]
    assert buttons(messages[-1])[0]["action_id"] == "show_evidence"
    code = "\n".join(
        t for m in messages for t in _texts_of(m) if t.startswith(("*Fix*\n```", "```"))
    )
    for command in f.fix[:-1]:
        assert K.escape(command) in code
    assert "echo yyy" in code and "…" in code, "a command too long for a section is cut"
    assert messages[1]["text"].endswith(f"(part 2 of {len(messages)})")


def test_forty_findings_split_over_messages_without_losing_a_block() -> None:
    report = huge_report(40)
    replies = [B.finding_reply(f, INCIDENT, i) for i, f in enumerate(report.findings)]
    everything = [b for r in replies for b in r["blocks"]]
    assert len(everything) > 50 * 20
    parts = K.split_message(everything)
    assert all(1 <= len(p) <= 50 for p in parts)
    assert sum(len(p) for p in parts) == len(everything)
    for part in parts:
        for block in part:
            check_block(block)


def test_huge_summary_names_the_root_cause_first_and_fits() -> None:
    report = huge_report(40)
    message = one_summary(report, INCIDENT)
    blocks = check_message(message)
    root = report.findings[1]
    assert blocks[0]["text"]["text"].startswith(f"*Root cause: ✗ `{root.code}`*")
    assert blocks[-1]["type"] == "actions"
    assert "(+40 more)" in all_text(message), "60 egress IPs: 20 shown"
    listing = all_text(message)
    assert all(f"`{f.code}`" in listing for f in report.findings)
    for part in B.summary_messages(report, INCIDENT):
        check_message(part)


def test_huge_evidence_modal_stays_within_a_modal() -> None:
    payload = B.evidence_modal(huge_finding(2))
    check_view(payload)
    assert len(payload["blocks"]) == 100
    assert "cut" in payload["blocks"][-1]["elements"][0]["text"]


def test_evidence_modal_holds_the_whole_json_when_it_fits() -> None:
    f = Finding(
        code="NSG_OUTBOUND_DENY",
        severity=Severity.ERROR,
        title="An NSG denies traffic to the endpoint",
        resource=NSG_ID,
        evidence={"rules": [{"name": f"r{n} <&>", "blob": "q" * 4000} for n in range(6)]},
        fix=["az network nsg rule create --resource-group <rg>"],
    )
    payload = B.evidence_modal(f)
    check_view(payload)
    assert payload["title"]["text"] == "Evidence"
    code = [
        b["text"]["text"]
        for b in payload["blocks"]
        if b["type"] == "section" and b["text"]["text"].startswith("```")
    ]
    assert len(code) > 8
    joined = "".join(
        html.unescape(c.removeprefix("```\n").removesuffix("\n```")).replace("\n", "") for c in code
    )
    assert json.loads(joined) == f.to_json()


# -- escaping ---------------------------------------------------------------------------------


def test_azure_and_user_text_is_escaped_everywhere() -> None:
    f = Finding(
        code="FIREWALL_ENDPOINT_BLOCKED",
        severity=Severity.ERROR,
        title=HOSTILE,
        detail=HOSTILE,
        evidence={"note": HOSTILE, "firewall": NSG_ID},
        fix=["az network firewall policy ... --policy-name <firewall-policy> && echo ok"],
    )
    message = B.finding_reply(f, INCIDENT)
    check_message(message)
    text = all_text(message)
    assert "&lt;!channel&gt; &amp; &lt;@U0BADBAD&gt; &lt;https://evil.example|click me&gt;" in text
    assert "<!channel>" not in text and "<@U0BADBAD>" not in text
    assert "--policy-name &lt;firewall-policy&gt; &amp;&amp; echo ok" in text
    assert "<!channel>" not in message["text"]
    check_view(B.evidence_modal(f))

    root = B.root_message(view(alias="a&b", endpoint="https://x.example/?q=<1>&r=2", pod="ns/p"))
    check_message(root)
    assert "https://x.example/?q=&lt;1&gt;&amp;r=2" in all_text(root)
    assert "<@U123ABC>" in all_text(root) and "<@U123ABC>" in root["text"]
    for message in (
        B.usage_error(HOSTILE),
        B.refusal(HOSTILE),
        B.error_text(HOSTILE, HOSTILE),
        B.clusters_text([HOSTILE, "prod-weu"]),
    ):
        check_message(message)
        assert "<!channel>" not in all_text(message) and "<!channel>" not in message["text"]


# -- buttons ----------------------------------------------------------------------------------


def test_finding_button_value_finds_the_finding_again() -> None:
    report = load("nsg-subnet-deny")
    f = report.findings[3]
    (button,) = buttons(B.finding_reply(f, INCIDENT, 3))
    assert button["action_id"] == "show_evidence" == B.ACTION_SHOW_EVIDENCE
    assert button["value"] == f"{INCIDENT}:3:{f.code}"
    incident_id, ref = B.parse_evidence_value(button["value"])
    assert incident_id == INCIDENT
    assert B.find_finding([report.to_json()], ref) == f
    (by_code,) = buttons(B.finding_reply(f, INCIDENT))
    assert by_code["value"] == f"{INCIDENT}:{f.code}"
    assert B.find_finding([report], B.parse_evidence_value(by_code["value"])[1]) == f
    assert B.find_finding([report], "3") == f
    assert B.find_finding([report], "99:NOPE") is None
    # a later run ordered findings differently: the code decides
    later = Report.from_json(report.to_json())
    later.findings.reverse()
    assert B.find_finding([report.to_json(), later], f"3:{f.code}") == f


def test_summary_buttons_carry_the_incident() -> None:
    report = load("nsg-subnet-deny")
    found = {b["action_id"]: b["value"] for b in buttons(one_summary(report, INCIDENT))}
    assert found == {
        "rerun": INCIDENT,
        "probe_endpoint": INCIDENT,
        "show_evidence": f"{INCIDENT}:2:NSG_OUTBOUND_DENY",
        "mark_resolved": INCIDENT,
    }


def test_a_button_value_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="2000"):
        one_summary(load("nsg-subnet-deny"), "A" * 2001)


# -- summary ----------------------------------------------------------------------------------


def test_summary_names_the_root_cause_first() -> None:
    message = one_summary(load("udr-firewall-blocked-http"), INCIDENT)
    first = message["blocks"][0]["text"]["text"]
    assert first.startswith("*Root cause: ✗ `FIREWALL_ENDPOINT_BLOCKED`* — The firewall does not")
    assert "Firewall afw-hub-weu blocks http://files.example.org" in first
    assert message["text"].startswith("batch-prod: Root cause FIREWALL_ENDPOINT_BLOCKED")
    text = all_text(message)
    assert "✗ 2 errors · ! 0 warnings" in text
    assert "`20.101.44.71`" in text
    assert "13 ARM calls · 9 Kubernetes calls · 1.6 s" in text


def test_summary_without_root_cause_says_so() -> None:
    message = one_summary(load("lb-snat-high-and-pressure"), INCIDENT)
    first = message["blocks"][0]["text"]["text"]
    assert first.startswith("*No root cause found:* nothing on the path blocks egress")
    assert "2 warnings below may still matter" in first
    assert "show_evidence" not in [b["action_id"] for b in buttons(message)]
    healthy = one_summary(load("lb-healthy"), INCIDENT)
    assert "warning" not in healthy["blocks"][0]["text"]["text"]


def test_resolved_summary_shows_it() -> None:
    message = one_summary(load("nsg-subnet-deny"), INCIDENT, resolved=True)
    check_message(message)
    assert message["blocks"][0]["text"]["text"].startswith("*Root cause:")
    assert "✓ *Resolved.*" in message["blocks"][1]["text"]["text"]
    assert "(resolved)" in message["text"]
    assert "mark_resolved" not in [b["action_id"] for b in buttons(message)]
    assert "rerun" in [b["action_id"] for b in buttons(message)]


# -- checklist, root message, modals, ephemeral replies -----------------------------------------


def test_checklist_marks_each_step() -> None:
    nsg = load("nsg-subnet-deny").findings
    shop = load("lb-snat-high-and-pressure").findings
    steps = {
        "cluster": B.StepState("done", tuple(f for f in nsg if f.code == "OUTBOUND_TYPE")),
        "nsg": B.StepState("done", tuple(f for f in nsg if f.code.startswith("NSG_"))),
        "resources": B.StepState("done", tuple(f for f in shop if f.code == "POD_OOMKILLED")),
        "firewall": B.StepState("skipped"),
        "probe": B.StepState("running"),
        "snat": B.StepState("pending"),
    }
    message = B.checklist(steps)
    check_message(message)
    lines = message["blocks"][1]["text"]["text"].split("\n")
    assert lines[0].startswith("✓ *Cluster and outbound type* — `OUTBOUND_TYPE` Outbound type")
    assert lines[1].startswith("✗ *Network security groups* — `NSG_OUTBOUND_DENY` NSG nsg-snet")
    assert lines[2].startswith("! *Node and pod resources* — `POD_OOMKILLED`")
    assert lines[3] == "· *Firewall / appliance* — skipped"
    assert lines[4] == "⏳ *Probe from inside the cluster* — running…"
    assert lines[5] == "○ *SNAT ports* — waiting"
    assert "4 of 6 steps done" in message["blocks"][0]["elements"][0]["text"]
    assert message["text"].startswith("Checklist running: 4 of 6 steps done, 2 errors, 1 warning")


def test_checklist_says_while_running_that_run_command_takes_longer() -> None:
    note = "The cluster side goes through Azure run command (the API server is private)."
    running = B.checklist({"probe": B.StepState("running")}, note)
    check_message(running)
    assert note in all_text(running)
    finished = B.checklist({"probe": B.StepState("done")}, note)
    assert "run command" not in all_text(finished), "gone once every step is done"
    escaped = B.checklist({"probe": B.StepState("running")}, "<@U1> & co")
    assert "&lt;@U1&gt; &amp; co" in all_text(escaped)


def test_root_message_says_who_what_and_when() -> None:
    message = B.root_message(view(pod="payments/api-7d9c"))
    check_message(message)
    text = all_text(message)
    assert "payments-prod" in text and "`https://api.contoso.com`" in text
    assert "<@U123ABC>" in text and f"`{INCIDENT}`" in text and "`payments/api-7d9c`" in text
    assert "<!date^1795770843^{date_short_pretty} {time}|2026-11-27T09:14:03+00:00>" in text
    assert f"<{K.PORTAL}{CLUSTER_ID}|payments-prod>" in text
    no_endpoint = B.root_message(view(endpoint=None, created="not a date"))
    check_message(no_endpoint)
    assert "none given" in all_text(no_endpoint) and "not a date" in all_text(no_endpoint)


def test_probe_modal() -> None:
    payload = B.probe_modal(INCIDENT, "C0INCIDENT1")
    check_view(payload)
    assert payload["callback_id"] == "probe_endpoint_modal" == B.PROBE_MODAL_CALLBACK
    assert payload["private_metadata"] == f"{INCIDENT}|C0INCIDENT1"
    (field,) = [b for b in payload["blocks"] if b["type"] == "input"]
    assert field["block_id"] == B.PROBE_URL_BLOCK
    assert field["element"] == {
        "type": "plain_text_input",
        "action_id": B.PROBE_URL_ACTION,
        "placeholder": {"type": "plain_text", "text": "https://api.contoso.com", "emoji": True},
    }


def test_ephemeral_replies_say_what_to_do_next() -> None:
    for message in (
        B.help_text(),
        B.clusters_text(["prod-weu", "payments-prod"]),
        B.clusters_text([]),
        B.usage_error("unknown command 'chek'"),
        B.refusal("this channel may not check 'prod-weu'"),
        B.error_text("the bot's state store is unavailable", "try again in a minute"),
        B.started_text(INCIDENT, "prod-weu"),
    ):
        check_message(message)
        assert message["response_type"] == "ephemeral"
    assert "/aks-egress check" in all_text(B.help_text())
    assert "`channels`" in all_text(B.clusters_text([]))
    assert "/aks-egress help" in all_text(B.usage_error("x"))
    assert "/aks-egress clusters" in all_text(B.refusal("x"))
    error = B.error_text("the store is down", "try again in a minute")
    assert "*Next:* try again in a minute." in all_text(error)
    assert error["text"] == "Could not finish: the store is down. Next: try again in a minute."
    many = B.clusters_text([f"cluster-{n}" for n in range(3000)])
    check_message(many)
    limited = all_text(B.clusters_text(["dev", "prod"], {"prod": ("S0SRE0001", "S0NET0001")}))
    assert "`prod` (members of `S0SRE0001`, `S0NET0001` only)" in limited
    assert "`dev` (" not in limited
