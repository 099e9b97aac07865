"""Which clusters the morning summary gives a line each, and how the rest are folded, so
the post stays readable for a fleet of hundreds.

Up to `FOLD_AFTER` clusters every cluster has its line, worst first. Past that only the
clusters that need attention do (could not be read, over 75 %, a failing or warning
finding, failed connections, or a trend that exhausts the ports within `TREND_DAYS`),
worst first; the healthy ones become
one count, and attention lines past what one Slack message holds are named in a line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handlers.snat import HIGH_PERCENT

FOLD_AFTER = 10
TREND_DAYS = 30


@dataclass(frozen=True)
class Arranged:
    lines: list[Mapping[str, Any]]  # a line each, in this order
    folded: list[str]  # what stands for the others (plain text, not yet escaped)


def needs_attention(cluster: Mapping[str, Any]) -> bool:
    peak = cluster.get("peakUsedPct")
    days = cluster.get("daysToExhaustion")
    judged = {f.get("severity") for f in cluster.get("findings") or [] if isinstance(f, dict)}
    return bool(
        cluster.get("error")
        or peak is None
        or peak >= HIGH_PERCENT
        or judged & {"error", "warning"}
        or cluster.get("failedConnections")
        or (days is not None and days <= TREND_DAYS)
    )


def arrange(clusters: Sequence[Mapping[str, Any]], room: int) -> Arranged:
    """Worst first; past FOLD_AFTER clusters, the healthy folded and at most `room` lines."""
    ordered = sorted(clusters, key=lambda c: -(c.get("peakUsedPct") or -1))
    if len(ordered) <= FOLD_AFTER:
        return Arranged(ordered, [])
    attention = [c for c in ordered if needs_attention(c)]
    healthy = [c for c in ordered if not needs_attention(c)]
    folded = []
    if len(attention) > room:
        rest = attention[room - 1 :]
        attention = attention[: room - 1]
        names = ", ".join(str(c.get("alias", "?")) for c in rest[:40])
        more = f" and {len(rest) - 40} more" if len(rest) > 40 else ""
        folded.append(f"{len(rest)} more need attention: {names}{more}")
    if healthy:
        top = max(c.get("peakUsedPct") or 0 for c in healthy)
        folded.append(
            f"✓ {len(healthy)} healthy clusters: peak at most {top:.0f} % of allocated ports, "
            "no failed connections"
        )
    return Arranged(attention, folded)
