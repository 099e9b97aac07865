"""The terminal report follows the checklist and reads like `az`/`kubectl` output.

Compact by default (step, code, first sentence, fix), the evidence and full ids under -v;
rendered for every public world's report, at a narrow and a wide terminal.
"""

import json
import re
from dataclasses import replace

import pytest
from rich.console import Console

from bot.model import Report
from bot.render import terminal
from tests.helpers import FIXTURES

REPORTS = sorted((FIXTURES / "reports").glob("*.json"))
ARM_ID = re.compile(r"/subscriptions/[^\s'\"]+", re.IGNORECASE)


def render(report: Report, verbose: bool = False, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(terminal.render(report, verbose=verbose), crop=False)
    return console.export_text()


def load(path) -> Report:
    return Report.from_json(json.loads(path.read_text()))


def unbroken(text: str) -> str:
    """The output with the renderer's breaks undone: ` \\` continuations, comment
    continuations and ids broken after a slash."""
    text = "\n".join(line.rstrip() for line in text.splitlines())
    text = re.sub(r" \\\n\s+", " ", text)
    text = re.sub(r"\n\s+#   ", " ", text)
    return re.sub(r"/\s*\n\s+(?=\S)", "/", text)


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


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_compact_report_has_codes_sentences_and_whole_fixes(path, width):
    report = load(path)
    text = render(report, width=width)
    for finding in report.findings:
        assert finding.code in text
        assert terminal.first_sentence(finding.detail)[0].split(" ")[0] in text
        for command in finding.fix:
            assert command in unbroken(text), command  # every fix pastes whole
    # No Python reprs, no raw ids: names only, with the way to the rest.
    assert not re.search(r"[{}]|\['|':", text), text
    prose = unbroken(text)
    for finding in report.findings:
        for command in finding.fix:
            prose = prose.replace(command, "")
    assert not ARM_ID.search(prose), ARM_ID.search(prose)
    assert "run again with -v" in text
    assert max(len(line.rstrip()) for line in text.splitlines() if " \\" not in line) <= width


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_verbose_report_has_evidence_tables_and_full_ids(path):
    report = load(path)
    text = render(report, verbose=True, width=100)
    assert not re.search(r"[{}]|\['|':", text)
    whole = unbroken(text)
    assert report.cluster.id in whole
    for finding in report.findings:
        if finding.resource and finding.resource.startswith("/subscriptions/"):
            assert finding.resource in whole  # the full id, in one piece once unbroken
            assert terminal.short_id(finding.resource) in text


def test_records_become_a_table_with_shared_values_said_once():
    report = load(FIXTURES / "reports" / "nsg-subnet-deny.json")
    text = render(report, verbose=True, width=100)
    assert re.search(r"rule\s+DenyInternetHttpsOutbound\s+\(all \d\)", text)
    assert re.search(r"^\s+destination\s*$", text, re.MULTILINE)  # the one varying column
    assert "management.azure.com:443/Https" in text


def test_ids_are_shortened_to_names():
    rid = (
        "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/"
        "networkSecurityGroups/nsg-a/securityRules/deny-all"
    )
    assert terminal.short_id(rid) == "deny-all"
    assert terminal.short_id("https://api.contoso.com") == "https://api.contoso.com"


def test_a_token_wider_than_the_terminal_is_left_whole():
    long_id = "/subscriptions/0/resourceGroups/" + "r" * 80 + "/providers/X/y/z"
    console = Console(record=True, width=40, color_system=None)
    console.print(terminal.command(f"az x --ids {long_id} --flag 1"), crop=False)
    text = console.export_text()
    assert long_id in text and text.splitlines()[0] == "az x --ids \\"
