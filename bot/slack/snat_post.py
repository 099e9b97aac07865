"""The daily SNAT post: one line per cluster, worst first, marked as its findings are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.model import Severity
from bot.render import marks
from bot.slack import fleet
from bot.slack.kit import (
    MAX_BLOCKS,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    _context,
    _message,
    _plain,
    _section,
    escape,
    truncate,
)


def snat_summary(summary: Mapping[str, Any], day: str) -> dict[str, Any]:
    """The morning message: one line per cluster, worst first, each marked as its findings
    are (✗ error, ! warning, ✓ fine), with the fix of a cluster that has one; past a
    handful of clusters only those that need attention (bot/slack/fleet.py)."""
    every = summary.get("clusters") or []
    arranged = fleet.arrange(every, room=MAX_BLOCKS - 4)  # header, folds, context
    clusters = arranged.lines
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"SNAT ports, {day}", MAX_HEADER_TEXT)}
    ]
    for cluster in clusters:
        alias = escape(cluster.get("alias", "?"))
        if cluster.get("error"):
            blocks.append(_section(f"*{alias}* ✗ could not be read: {escape(cluster['error'])}"))
            continue
        peak = cluster.get("peakUsedPct")
        if peak is None:
            blocks.append(_section(f"*{alias}* · no SNAT data"))
            continue
        findings = cluster.get("findings") or []
        verdict = marks.worst([Severity(f["severity"]) for f in findings])
        mark = marks.MARKS[verdict]
        parts = [f"*{alias}* {mark} peak {peak:.0f} % of allocated ports"]
        if (change := cluster.get("changeSinceYesterday")) is not None:
            parts.append(f"{change:+.1f} pts since yesterday")
        if (days := cluster.get("daysToExhaustion")) is not None:
            parts.append(f"exhausted in ~{days:.0f} days at this trend")
        parts.append(f"{cluster.get('failedConnections', 0)} failed connections")
        if top := cluster.get("topNodes"):
            parts.append("top nodes: " + ", ".join(f"`{escape(n)}`" for n in top[:5]))
        text = " · ".join(parts)
        if verdict in (Severity.ERROR, Severity.WARNING):
            fixes = [line for f in findings if f["severity"] != "ok" for line in f.get("fix") or []]
            if fixes:
                text += "\n```" + escape("\n".join(fixes[:4])) + "```"
        blocks.append(_section(truncate(text, MAX_SECTION_TEXT)))
    blocks += [_section(truncate(escape(line), MAX_SECTION_TEXT)) for line in arranged.folded]
    blocks.append(_context("Chart of used vs allocated ports in the thread · aks-egress"))
    worst = clusters[0] if clusters else {}
    fallback = f"SNAT summary {day}: {len(every)} clusters"
    if worst.get("peakUsedPct") is not None:
        fallback += f", highest {worst['alias']} at {worst['peakUsedPct']:.0f} %"
    return _message(fallback, blocks[:MAX_BLOCKS])
