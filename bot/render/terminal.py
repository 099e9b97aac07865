"""The terminal report: the checklist in path order, each step with its mark, evidence, fix.

Built from small rich renderables so each part can be read (and changed) on its own.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from bot.codes import CATALOG
from bot.model import Finding, Report, Severity
from bot.render.marks import MARKS, worst
from bot.steps import STEPS

STYLES = {
    Severity.OK: "green",
    Severity.ERROR: "bold red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}
MAX_EVIDENCE_ITEMS = 6


def header(report: Report) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_row("Cluster", f"{report.cluster.alias}  [dim]{report.cluster.id}[/dim]")
    grid.add_row("Endpoint", report.endpoint or "[dim](none given)[/dim]")
    grid.add_row("Egress IPs", ", ".join(report.egress_ips) or "[dim]unknown[/dim]")
    if report.root_cause:
        cause = Text(f"{report.root_cause} — {CATALOG[report.root_cause].title}", "bold red")
    else:
        cause = Text("none: nothing on the path blocks egress", "green")
    grid.add_row("Root cause", cause)
    return Panel(grid, title="aks-egress check", title_align="left")


def _evidence_lines(evidence: dict[str, Any]) -> Text:
    text = Text()
    for key, value in list(evidence.items())[:MAX_EVIDENCE_ITEMS]:
        if value in (None, [], {}, ""):
            continue
        shown = value if isinstance(value, str | int | float | bool) else _short(value)
        text.append(f"    {key}: ", "dim")
        text.append(f"{shown}\n")
    return text


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        first = ", ".join(f"{k}={v}" for k, v in value[0].items() if v not in (None, [], ""))
        more = f" (+{len(value) - 1} more)" if len(value) > 1 else ""
        return f"{first}{more}"
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "…"


def finding_block(f: Finding) -> RenderableType:
    line = Text("  ")
    line.append(f"{MARKS[f.severity]} {f.code}", STYLES[f.severity])
    line.append(f"  {f.title}\n")
    parts: list[RenderableType] = [line]
    if f.detail:
        parts.append(Text(f"    {f.detail}"))
    if f.evidence:
        parts.append(_evidence_lines(f.evidence))
    if f.fix:
        parts.append(Text("    fix:", "bold"))
        parts.append(Syntax("\n".join(f.fix), "bash", word_wrap=True, padding=(0, 4)))
    return Group(*parts)


def step_block(name: str, title: str, findings: list[Finding]) -> RenderableType:
    severity = worst([f.severity for f in findings if f.severity != Severity.INFO])
    heading = Text()
    heading.append(f"{MARKS[severity]} ", STYLES[severity])
    heading.append(title, "bold")
    return Group(heading, *(finding_block(f) for f in findings), Text(""))


def passed_step(title: str) -> RenderableType:
    line = Text()
    line.append(f"{MARKS[Severity.OK]} ", STYLES[Severity.OK])
    line.append(title, "bold")
    line.append("  nothing found on this step", "dim")
    return Group(line, Text(""))


def render(report: Report) -> RenderableType:
    blocks: list[RenderableType] = [header(report)]
    for step in STEPS:
        findings = [f for f in report.findings if CATALOG[f.code].step == step.name]
        if findings:
            blocks.append(step_block(step.name, step.title, findings))
        elif step.name in report.steps and step.listed:
            blocks.append(passed_step(step.title))
    return Group(*blocks)
