"""The postmortem timeline (`@aks-egress summary`): every run of an incident, in Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.model import Report, Severity
from bot.render.marks import MARKS
from bot.slack.blocks import IncidentView, _ordered, _user
from bot.slack.kit import FENCE, MAX_TEXT, _duration, _plural, _sentence, escape, truncate

# -- the postmortem timeline -----------------------------------------------------------------


def timeline(incident: IncidentView, reports: Sequence[Report | Mapping[str, Any]]) -> str:
    """Markdown (that Slack's mrkdwn reads too) of every run in the thread, for the postmortem.

    Each run: the endpoint, the root cause, each error and warning with its fix, what
    changed since the run before, the egress IPs and the cost. Escaped for Slack.
    """
    loaded = [r if isinstance(r, Report) else Report.from_json(dict(r)) for r in reports]
    lines = [
        f"*Incident {escape(incident.id)}: egress from {escape(incident.alias)}*",
        f"- Cluster: {escape(incident.alias)} (`{escape(incident.cluster_id)}`)",
        f"- Endpoint: {escape(incident.endpoint) if incident.endpoint else 'none given'}",
        f"- Asked by {_user(incident.user_id)} at {escape(incident.created)}",
    ]
    if incident.pod:
        lines.append(f"- Pod: `{escape(incident.pod)}`")
    if not loaded:
        lines += ["", "No check has finished yet."]
        return truncate("\n".join(lines), MAX_TEXT)
    previous: set[str] | None = None
    for number, report in enumerate(loaded, start=1):
        notable = [
            f for f in _ordered(report.findings) if f.severity in (Severity.ERROR, Severity.WARNING)
        ]
        codes = {f.code for f in notable}
        target = escape(report.endpoint) if report.endpoint else "the cluster's own egress"
        cause = (
            f"root cause `{escape(report.root_cause)}`"
            if report.root_cause
            else "no root cause (nothing on the path blocks egress)"
        )
        lines += ["", f"*Run {number}* — {target}: {cause}"]
        if previous is not None:
            gone, new = sorted(previous - codes), sorted(codes - previous)
            if gone or new:
                changes = []
                if gone:
                    changes.append("gone: " + ", ".join(f"`{escape(c)}`" for c in gone))
                if new:
                    changes.append("new: " + ", ".join(f"`{escape(c)}`" for c in new))
                lines.append(f"- Since run {number - 1}: " + "; ".join(changes))
            else:
                lines.append(f"- Since run {number - 1}: no change")
        for f in notable:
            detail = f" — {escape(_sentence(f.detail))}" if f.detail else ""
            lines.append(f"- {MARKS[f.severity]} `{escape(f.code)}` {escape(f.title)}{detail}")
            if f.fix:
                fix = "\n".join(escape(c.replace(FENCE, "ˋˋˋ")) for c in f.fix)
                lines.append(f"{FENCE}\n{fix}\n{FENCE}")
        if not notable:
            lines.append("- no errors or warnings")
        ips = ", ".join(escape(ip) for ip in report.egress_ips) or "unknown"
        s = report.stats
        shared = f" (shared: collected for {escape(s.shared_from)})" if s.shared_from else ""
        lines.append(
            f"- Egress IPs: {ips}; {_plural(s.arm_calls, 'ARM call')}, "
            f"{_plural(s.k8s_calls, 'Kubernetes call')}, {_duration(s.duration_ms)}{shared}"
        )
        previous = codes
    last = loaded[-1]
    outcome = (
        f"the last run still finds `{escape(last.root_cause)}`"
        if last.root_cause
        else "the last run finds no error on the egress path"
    )
    lines += ["", f"*Outcome:* {outcome}."]
    return truncate("\n".join(lines), MAX_TEXT)
