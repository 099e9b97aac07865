"""The terminal report: the checklist in path order, read like `az` and `kubectl` at their best.

Compact by default: each step with its mark, each finding's code and title, its first
sentence, and the fix. `-v` adds the rest of the detail and the evidence: records as small
tables, ARM ids shortened to resource names with the full ids listed under the finding.
Nothing is cut inside a token: prose wraps at spaces, and a fix command too long for the
terminal is broken at spaces with a shell continuation (` \\`), so it still pastes.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot import armid
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
INDENT = 4
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
EMPTY: tuple[object, ...] = (None, "", [], {})
# ARM bookkeeping that says nothing about the finding.
NOISE = {"etag", "type", "provisioningState", "id"}


def short_id(value: str) -> str:
    """An ARM id as its resource's name (`nsg-snet-aks-nodes-weu`); anything else unchanged."""
    try:
        return armid.ArmId.parse(value).name
    except ValueError:
        return value


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and short_id(value) != value


def first_sentence(text: str) -> tuple[str, str]:
    """(the first sentence, the rest): a period inside `20.50.1.10` or `api.contoso.com`
    does not end a sentence, one followed by a space and a capital does."""
    parts = SENTENCE_END.split(text.strip(), maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


class Broken:
    """Text broken only at `sep` to fit the width: a fix command at spaces, with a shell
    continuation (` \\`) so it still pastes; a comment at spaces, each line a comment; an
    ARM id at its slashes. Never inside a token; a token wider than the terminal stays on
    its own line whole, for the terminal to wrap (print with crop=False)."""

    def __init__(
        self, text: str, sep: str = " ", cont: str = "    ", tail: str = "", style: str = ""
    ) -> None:
        self.text, self.sep, self.cont, self.tail, self.style = text, sep, cont, tail, style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(20, options.max_width - len(self.tail))
        line, lines = "", []
        tokens = self.text.split(self.sep)
        for index, token in enumerate(tokens):
            piece = token + (self.sep if self.sep != " " and index < len(tokens) - 1 else "")
            joiner = " " if self.sep == " " and line else ""
            if line and len(line) + len(joiner) + len(piece) > width:
                lines.append(line)
                line = self.cont + piece
            else:
                line = f"{line}{joiner}{piece}"
        lines.append(line)
        for index, text in enumerate(lines):
            tail = self.tail if index < len(lines) - 1 else ""
            yield Text(text + tail, self.style, no_wrap=True, overflow="ignore")


def command(line: str) -> Broken:
    if line.startswith("#"):
        return Broken(line, cont="#   ", style="dim")
    return Broken(line, tail=" \\", style="bold")


def full_id(rid: str) -> Broken:
    return Broken(rid, sep="/", cont="  ")


def _cell(value: Any) -> str:
    if value in EMPTY:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return short_id(value)
    if isinstance(value, list):
        # Log lines one per line; names and addresses side by side.
        joiner = "\n" if any(isinstance(v, str) and " " in v for v in value) else ", "
        return joiner.join(_cell(v) for v in value if v not in EMPTY)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in _flat(value).items() if v not in EMPTY)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested record as one level (`properties.priority` → `priority`), for a table row."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and key in ("properties", "dimensions"):
            out.update(_flat(value, prefix))
        elif isinstance(value, dict) and value and len(value) <= 4:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _ids(value: Any) -> list[str]:
    if _is_id(value):
        return [value]
    if isinstance(value, list):
        return [i for v in value for i in _ids(v)]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ids(v)]
    return []


class Records:
    """A list of records as a small table when it fits the width, else one `key  value`
    block per record (as `kubectl describe` does), so no cell is folded mid-token."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        flat = [{k: v for k, v in _flat(r).items() if k not in NOISE} for r in rows]
        keys = dict.fromkeys(k for r in flat for k in r)
        filled = [c for c in keys if any(_cell(r.get(c)) for r in flat)]
        # What every row shares is said once, above the rows (`rule  Deny… (all 6)`).
        same = (
            {c for c in filled if len({_cell(r.get(c)) for r in flat}) == 1}
            if len(flat) > 1
            else set()
        )
        self.shared = [(c, _cell(flat[0].get(c))) for c in filled if c in same]
        self.columns = [c for c in filled if c not in same]
        self.rows = [[_cell(r.get(c)) for c in self.columns] for r in flat]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.shared:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="dim", no_wrap=True)
            grid.add_column()
            for column, value in self.shared:
                grid.add_row(column, f"{value}  [dim](all {len(self.rows)})[/dim]")
            yield grid
        if not self.columns:
            return
        widths = [
            max(len(c), *(len(line) for row in self.rows for line in row[i].splitlines() or [""]))
            for i, c in enumerate(self.columns)
        ]
        if sum(widths) + 2 * len(widths) <= options.max_width:
            table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold dim")
            for column in self.columns:
                table.add_column(column, no_wrap=True)
            for row in self.rows:
                table.add_row(*row)
            yield table
            return
        for index, row in enumerate(self.rows):
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="dim", no_wrap=True)
            grid.add_column()
            for column, value in zip(self.columns, row, strict=True):
                if value:
                    grid.add_row(column, value)
            if len(self.rows) > 1:
                yield Text(f"[{index + 1}]", "dim")
            yield grid


def evidence_block(evidence: dict[str, Any]) -> RenderableType:
    """Scalars as an aligned `key  value` list; lists of records and mappings as tables."""
    scalars = Table.grid(padding=(0, 2))
    scalars.add_column(style="dim", no_wrap=True)
    scalars.add_column(overflow="fold")
    parts: list[RenderableType] = []
    for key, value in evidence.items():
        if value in EMPTY:
            continue
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            parts.append(Group(Text(f"{key}:", "dim"), Records(value)))
        elif (
            isinstance(value, dict)
            and value
            and not all(
                isinstance(v, str | int | float | bool) or v is None for v in value.values()
            )
        ):
            parts.append(Group(Text(f"{key}:", "dim"), Records([value])))
        else:
            scalars.add_row(key, _cell(value))
    return Group(scalars, *parts)


def finding_block(f: Finding, verbose: bool = False) -> RenderableType:
    line = Text("  ")
    line.append(f"{MARKS[f.severity]} {f.code}", STYLES[f.severity])
    line.append(f"  {f.title}")
    parts: list[RenderableType] = [line]
    pad = " " * INDENT
    if f.detail:
        lead, rest = first_sentence(f.detail)
        parts.append(_indented(Text(lead + (f" {rest}" if verbose and rest else ""))))
    if verbose and f.evidence:
        parts.append(_indented(evidence_block(f.evidence)))
        own = [f.resource] if f.resource and _is_id(f.resource) else []
        ids = list(dict.fromkeys([*own, *_ids(f.evidence)]))
        if ids:
            listing = [
                Group(Text(short_id(rid)), Padding(full_id(rid), (0, 0, 0, 2))) for rid in ids
            ]
            parts.append(_indented(Group(Text("ids:", "dim"), *listing)))
    if f.fix:
        parts.append(Text(f"{pad}fix:", "bold"))
        parts.extend(Padding(command(c), (0, 0, 0, INDENT + 2)) for c in f.fix)
    return Group(*parts)


def _indented(renderable: RenderableType) -> RenderableType:
    return Padding(renderable, (0, 0, 0, INDENT))


def header(report: Report, verbose: bool = False) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    cluster = report.cluster
    try:
        cid = armid.ArmId.parse(cluster.id)
        where = f"{cid.name} in {cid.resource_group}"
    except ValueError:
        where = cluster.id
    grid.add_row("Cluster", f"{cluster.alias}  [dim]({where})[/dim]")
    if verbose:
        grid.add_row("Id", full_id(cluster.id))
    grid.add_row("Endpoint", report.endpoint or "[dim](none given)[/dim]")
    grid.add_row("Egress IPs", ", ".join(report.egress_ips) or "[dim]unknown[/dim]")
    if report.root_cause:
        cause = Text(f"{report.root_cause} — {CATALOG[report.root_cause].title}", "bold red")
    else:
        cause = Text("none: nothing on the path blocks egress", "green")
    grid.add_row("Root cause", cause)
    return Panel(grid, title="aks-egress check", title_align="left", expand=False)


def step_block(title: str, findings: list[Finding], verbose: bool = False) -> RenderableType:
    severity = worst([f.severity for f in findings if f.severity != Severity.INFO])
    heading = Text()
    heading.append(f"{MARKS[severity]} ", STYLES[severity])
    heading.append(title, "bold")
    return Group(heading, *(finding_block(f, verbose) for f in findings), Text(""))


def passed_step(title: str) -> RenderableType:
    line = Text()
    line.append(f"{MARKS[Severity.OK]} ", STYLES[Severity.OK])
    line.append(title, "bold")
    line.append("  nothing found on this step", "dim")
    return line


def render(report: Report, verbose: bool = False) -> RenderableType:
    blocks: list[RenderableType] = [header(report, verbose)]
    for step in STEPS:
        findings = [f for f in report.findings if CATALOG[f.code].step == step.name]
        if findings:
            blocks.append(step_block(step.title, findings, verbose))
        elif step.name in report.steps and step.listed:
            blocks.append(Group(passed_step(step.title), Text("")))
    if not verbose:
        blocks.append(Text("evidence and full ids: run again with -v", "dim"))
    return Group(*blocks)
