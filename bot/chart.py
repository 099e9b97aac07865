"""The daily SNAT chart: what is drawn is a plain value (`ChartSpec`), drawing it is `render`.

SNAT ports are allocated per node and run out per node, so each cluster's panel shows the
busiest nodes' used ports as a share of *their own* allocation over the day, the other
nodes as a band, the 75 % and 100 % lines, failed connections where they happened, in the
channel's time zone. A channel's clusters share one figure (small multiples). The title's
figure is computed from the plotted lines, so title and lines cannot disagree.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.model import Json

THRESHOLDS = (75.0, 100.0)
MAX_PANELS = 8  # the worst clusters get a panel each; the rest one line under the figure
NO_DATA = "no SNAT ports measured: no load-balancer or NAT-gateway egress with metrics"
COLORS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class Line:
    label: str
    times: tuple[datetime, ...]
    percents: tuple[float, ...]


@dataclass(frozen=True)
class Band:
    label: str
    times: tuple[datetime, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class Failure:
    node: str
    time: datetime
    percent: float  # where the node's line is at that time, so the mark sits on it
    count: float


@dataclass(frozen=True)
class Panel:
    alias: str
    title: str
    peak: float | None  # the highest plotted percent, the figure the title shows
    lines: tuple[Line, ...] = ()
    band: Band | None = None
    failures: tuple[Failure, ...] = ()
    message: str | None = None  # instead of lines: why there is nothing to draw


@dataclass(frozen=True)
class ChartSpec:
    title: str
    timezone: str
    panels: tuple[Panel, ...]
    thresholds: tuple[float, ...] = field(default=THRESHOLDS)
    notes: tuple[str, ...] = ()  # clusters without a panel, and why


def _time(stamp: str, zone: ZoneInfo) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(zone)


def _panel(cluster: Json, zone: ZoneInfo) -> Panel:
    alias = str(cluster.get("alias"))
    if cluster.get("error"):
        return Panel(alias, f"{alias}: could not be read", None, message=str(cluster["error"]))
    lines: list[Line] = []
    failures: list[Failure] = []
    for node in cluster.get("nodeSeries") or []:
        points = node.get("points") or []
        times = tuple(_time(p["timeStamp"], zone) for p in points)
        percents = tuple(float(p["percent"]) for p in points)
        lines.append(Line(str(node["node"]), times, percents))
        at = dict(zip((p["timeStamp"] for p in points), percents, strict=True))
        failures.extend(
            Failure(
                str(node["node"]),
                _time(f["timeStamp"], zone),
                at.get(f["timeStamp"], 100.0),
                f["count"],
            )
            for f in node.get("failed") or []
            if f.get("count")
        )
    nat = not lines and bool(cluster.get("series"))
    if nat:
        # A NAT gateway: its ports are shared by the whole subnet, not allocated per node.
        points = [p for p in cluster["series"] if p.get("allocated")]
        line = Line(
            "NAT gateway connections",
            tuple(_time(p["timeStamp"], zone) for p in points),
            tuple(round((p.get("used") or 0) / p["allocated"] * 100, 1) for p in points),
        )
        lines.append(line)
        at = dict(zip(line.times, line.percents, strict=True))
        for f in cluster.get("failedAt") or []:
            when = _time(f["timeStamp"], zone)
            failures.append(Failure(line.label, when, at.get(when, 100.0), f["count"]))
    if not lines:
        return Panel(alias, f"{alias}: no SNAT data", None, message=NO_DATA)
    rest = cluster.get("otherNodes") or []
    band = (
        Band(
            f"other {max(r['nodes'] for r in rest)} nodes",
            tuple(_time(r["timeStamp"], zone) for r in rest),
            tuple(float(r["low"]) for r in rest),
            tuple(float(r["high"]) for r in rest),
        )
        if rest
        else None
    )
    peak = max(max(line.percents, default=0.0) for line in lines)
    busiest = max(lines, key=lambda line: max(line.percents, default=0.0))
    failed = sum(f.count for f in failures) or cluster.get("failedConnections") or 0
    whose = "the NAT gateway's ports" if nat else "a node's ports"
    title = f"{alias}: peak {peak:.0f} % of {whose}"
    if failed:
        title += f", {failed:,.0f} failed connections"
    if not nat:
        title += f"\nbusiest node {busiest.label}"
    return Panel(alias, title, peak, tuple(lines), band, tuple(failures))


def spec(summary: Json, timezone: str = "UTC") -> ChartSpec:
    """What the chart shows, from the summary `bot.summary.build` made."""
    zone = ZoneInfo(timezone)
    every = [_panel(c, zone) for c in summary.get("clusters") or []]
    # Worst first, as the message lists them; clusters with nothing to draw are one line
    # under the figure rather than an empty panel each.
    ranked = sorted((p for p in every if not p.message), key=lambda p: -(p.peak or 0.0))
    drawn, quiet = ranked[:MAX_PANELS], ranked[MAX_PANELS:]
    notes = [f"{p.alias}: {p.message}" for p in every if p.message]
    if quiet:
        names = ", ".join(p.alias for p in quiet)
        notes.append(f"{len(quiet)} more, none above {quiet[0].peak:.0f} %: {names}")
    return ChartSpec(
        title="SNAT ports used, as a share of each node's own allocation (NAT gateway: of its "
        f"ports), last 24 hours, {timezone}",
        timezone=timezone,
        panels=tuple(drawn) or (Panel("", "nothing to draw", None, message="no SNAT data"),),
        notes=tuple(textwrap.fill(n, 160, subsequent_indent="    ") for n in notes),
    )


def render(chart: ChartSpec) -> bytes:
    """The PNG of a ChartSpec: one panel per cluster, two columns when there are several."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates as mdates
    from matplotlib import pyplot as plt

    count = len(chart.panels)
    cols = 1 if count == 1 else 2
    rows = math.ceil(count / cols)
    note_lines = sum(n.count("\n") + 1 for n in chart.notes)
    notes_height = 0.18 * note_lines + (0.15 if chart.notes else 0.0)  # inches
    height = 3.2 * rows + 0.6 + notes_height
    fig, axes = plt.subplots(rows, cols, figsize=(8 if cols == 1 else 13, height), squeeze=False)
    zone = ZoneInfo(chart.timezone)
    top = max([110.0, *((p.peak or 0) + 10 for p in chart.panels)])
    for ax, panel in zip(axes.flat, chart.panels, strict=False):
        ax.set_title(panel.title, fontsize="medium", loc="left")
        if panel.message:
            ax.text(0.5, 0.5, panel.message, ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        if panel.band:
            ax.fill_between(
                panel.band.times,
                panel.band.low,
                panel.band.high,
                color="#1f77b4",
                alpha=0.2,
                label=panel.band.label,
                linewidth=0,
            )
        for line, color in zip(panel.lines, COLORS, strict=False):
            ax.plot(
                line.times, line.percents, color=color, marker="o", markersize=3, label=line.label
            )
        for threshold in chart.thresholds:
            ax.axhline(
                threshold, color="#555555", linestyle="--" if threshold < 100 else "-", linewidth=1
            )
            ax.annotate(
                f"{threshold:.0f} %",
                (1.0, threshold),
                xycoords=("axes fraction", "data"),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
            )
        if panel.failures:
            ax.scatter(
                [f.time for f in panel.failures],
                [f.percent for f in panel.failures],
                marker="X",
                s=80,
                color="black",
                zorder=5,
                label="failed connections",
            )
        ax.set_ylim(0, top)
        ax.set_ylabel("% of allocated ports")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=zone))  # type: ignore[no-untyped-call]
        ax.set_xlabel(f"time ({chart.timezone})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", fontsize="x-small")
    for ax in list(axes.flat)[count:]:
        ax.set_axis_off()
    fig.suptitle(textwrap.fill(chart.title, 70 if cols == 1 else 120), fontsize="large")
    if chart.notes:
        fig.text(0.01, 0.005, "\n".join(chart.notes), fontsize="small", va="bottom")
    fig.tight_layout(rect=(0, notes_height / height, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
