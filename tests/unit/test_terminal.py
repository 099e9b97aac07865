"""The terminal report follows the checklist: every step that ran is shown, passed or not."""

import json
from dataclasses import replace

from rich.console import Console

from bot.model import Report
from bot.render import terminal
from tests.helpers import FIXTURES


def render(report: Report) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(terminal.render(report))
    return console.export_text()


def test_steps_in_path_order_with_marks_evidence_and_fix():
    data = json.loads((FIXTURES / "reports" / "nsg-subnet-deny.json").read_text())
    report = replace(Report.from_json(data), steps=("cluster", "route", "nsg", "probe"))
    text = render(report)
    assert "Root cause  NSG_OUTBOUND_DENY" in text
    lines = [line for line in text.splitlines() if line[:2] in ("✓ ", "✗ ", "! ")]
    assert [line.split("  ")[0] for line in lines] == [
        "✓ Cluster and outbound type",
        "✓ Route tables",
        "✗ Network security groups",
        "✗ Probe from inside the cluster",
        "✓ Access to Azure and Kubernetes",  # it has findings (how the bot got in)
    ]
    assert "DenyInternetHttpsOutbound" in text and "priority 100" in text
    assert "az network nsg rule" in text
