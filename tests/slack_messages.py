"""Slack messages under test: the checks every Block Kit message must pass (slack_sdk's
models, Slack's limits, escaped mrkdwn) and the reports they are built from, shared by
the unit tests of bot/slack/blocks.py, kit.py and timeline.py.

Reports come from tests/fixtures/reports/<world>.json (the real CLI's `--json` output on
the public worlds) or are built here, including one far too big for one message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.codes import CATALOG
from bot.model import ClusterSummary, Finding, Report, Severity, Stats
from bot.slack import blocks as B
from bot.steps import STEPS

REPORTS = Path(__file__).resolve().parent / "fixtures" / "reports"
WORLDS = sorted(p.stem for p in REPORTS.glob("*.json"))
INCIDENT = "AKE-1A2B3C"
NSG_ID = (
    "/subscriptions/9d4e1b7a-2c5f-4a8e-b3d6-0e7f1a2b3c4d/resourceGroups/rg-net/providers/"
    "Microsoft.Network/networkSecurityGroups/nsg-nodes"
)
CLUSTER_ID = (
    "/subscriptions/9d4e1b7a-2c5f-4a8e-b3d6-0e7f1a2b3c4d/resourceGroups/rg-aks/providers/"
    "Microsoft.ContainerService/managedClusters/aks-prod"
)
HOSTILE = "<!channel> & <@U0BADBAD> <https://evil.example|click me> a>b"
LINKS = re.compile(r"<(https://[^<>|\s]+(\|[^<>]+)?|@[UW][A-Z0-9]+|!date\^[^<>]+)>")


def one_summary(report: Report, incident: str, resolved: bool = False) -> dict[str, Any]:
    """A run's summary, which for these reports fits one message."""
    (message,) = B.summary_messages(report, incident, resolved=resolved)
    return message


def load(world: str) -> Report:
    return Report.from_json(json.loads((REPORTS / f"{world}.json").read_text()))


def view(incident_id: str = INCIDENT, **overrides: Any) -> B.IncidentView:
    fields = dict(
        id=incident_id,
        alias="payments-prod",
        cluster_id=CLUSTER_ID,
        endpoint="https://api.contoso.com",
        user_id="U123ABC",
        channel_id="C0123456789",
        created="2026-11-27T09:14:03+00:00",
        pod=None,
    )
    fields.update(overrides)
    return B.IncidentView(**fields)


# -- the checks every message must pass -----------------------------------------------------


def block_texts(block: dict[str, Any]) -> list[str]:
    """Every mrkdwn string in a block."""
    out = []
    if block.get("type") == "section":
        if block.get("text"):
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields") or []]
    if block.get("type") == "context":
        out += [e["text"] for e in block["elements"] if "text" in e]
    return out


def check_mrkdwn(text: str) -> None:
    assert text.strip(), "Slack rejects empty text"
    assert text.count("```") % 2 == 0, f"unbalanced code block: {text[-80:]!r}"
    # every & starts an entity, every < … > is a link, mention or date we built
    assert not re.search(r"&(?!amp;|lt;|gt;)", text), f"raw or broken &: {text!r}"
    assert "<" not in LINKS.sub("", text), f"raw <: {text!r}"
    assert ">" not in LINKS.sub("", text), f"raw >: {text!r}"


def check_block(block: dict[str, Any]) -> None:
    parsed = Block.parse(block)
    assert parsed is not None, block
    parsed.validate_json()
    if block["type"] == "section":
        if block.get("text"):
            assert len(block["text"]["text"]) <= 3000
        assert len(block.get("fields") or []) <= 10
        assert all(len(f["text"]) <= 2000 for f in block.get("fields") or [])
    if block["type"] == "context":
        assert 1 <= len(block["elements"]) <= 10
        assert all(len(e["text"]) <= 3000 for e in block["elements"])
    if block["type"] == "actions":
        for button in block["elements"]:
            assert len(button["text"]["text"]) <= 75
            assert len(button["value"]) <= 2000
    for text in block_texts(block):
        check_mrkdwn(text)


def check_message(message: dict[str, Any], max_blocks: int = 50) -> list[dict[str, Any]]:
    assert isinstance(message["text"], str) and message["text"].strip()
    assert len(message["text"]) <= 40_000
    check_mrkdwn(message["text"])
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= max_blocks
    for block in blocks:
        check_block(block)
    return blocks


def check_view(payload: dict[str, Any]) -> None:
    View(**payload).validate_json()
    assert 1 <= len(payload["blocks"]) <= 100
    for block in payload["blocks"]:
        if block["type"] != "input":
            check_block(block)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def all_text(message: dict[str, Any]) -> str:
    return "\n".join(t for b in message["blocks"] for t in block_texts(b))


def states_for(report: Report) -> dict[str, B.StepState]:
    steps = {}
    for step in STEPS:
        found = tuple(f for f in report.findings if CATALOG[f.code].step == step.name)
        steps[step.name] = B.StepState("done" if found else "skipped", found)
    return steps


def huge_finding(i: int) -> Finding:
    code = list(CATALOG)[i % len(CATALOG)]
    return Finding(
        code=code,
        severity=Severity.ERROR if i % 3 else Severity.WARNING,
        title=f"Finding {i} <&> " + "t" * 400,
        detail=("Something & <something> else is wrong here. " * 400),
        resource=NSG_ID,
        evidence={
            "denied": [
                {
                    "nsg": NSG_ID,
                    "rule": f"Deny{n % 3}",
                    "priority": 100 + n % 3,
                    "defaultRule": False,
                    "destination": f"host{n}.example.com:443/Https",
                    "address": f"10.0.{n // 250}.{n % 250}",
                    "port": 443,
                    "protocol": "Tcp",
                }
                for n in range(500)
            ],
            "nested": {f"key{n}": {"deep": ["x" * 50] * 20} for n in range(30)},
            **{f"extra{n}": "value & <v> " * 50 for n in range(60)},
            "tellingLines": [f"* line {n} <tls> & more" for n in range(100)],
        },
        fix=[
            f"az network nsg rule create --name allow-{i}-{n} --priority {n} "
            f"--resource-group <rg> --source {'x' * 120}"
            for n in range(800)
        ]
        + ["echo " + "y" * 5000],
    )


def huge_report(n: int = 40) -> Report:
    findings = [huge_finding(i) for i in range(n)]
    return Report(
        cluster=ClusterSummary("big-prod", CLUSTER_ID, "loadBalancer", "azure", "overlay"),
        endpoint="https://api.contoso.com/?a=1&b=<2>",
        egress_ips=[f"20.0.0.{n}" for n in range(60)],
        findings=findings,
        root_cause=findings[1].code,
        stats=Stats(arm_calls=1234, k8s_calls=56, duration_ms=754_321),
    )
