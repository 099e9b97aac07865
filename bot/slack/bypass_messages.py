"""The bypass's messages in an incident thread: the plan, each step with who and when, the
verdict. Plain Block Kit dicts, built from the record (no I/O), so tests read them as Slack
would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.bypass.state import BypassRecord
from bot.model import Finding
from bot.slack.blocks import ACTION_BYPASS
from bot.slack.kit import escape

__all__ = ["ACTION_BYPASS"]
ACTION_APPROVE = "bypass_approve"
ACTION_REVERT = "bypass_revert"
Message = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _groups(approvers: tuple[str, ...]) -> str:
    return ", ".join(f"<!subteam^{g}>" for g in approvers) or "_no approvers configured_"


def plan_message(
    record: BypassRecord, approvers: tuple[str, ...], dry_run: bool, busy: str | None = None
) -> Message:
    """The plan, posted before anything changes; the Approve button only when the test can
    mean something and the route tables are free."""
    plan = record.plan
    head = (
        f":construction: *Appliance bypass plan* for `{escape(record.endpoint)}`, asked by "
        f"<@{record.requester}> at {_now()}"
    )
    blocks = [_section(head)]
    if not plan["feasible"]:
        blocks.append(
            _section(f":no_entry: *This bypass cannot test anything.* {escape(plan['reason'])}")
        )
        return {"text": f"Bypass not possible: {plan['reason']}"[:3000], "blocks": blocks}
    lines = [escape(plan["reason"])]
    for table in plan["routeTables"]:
        lines.append(f"*{escape(table['id'].rsplit('/', 1)[-1])}* (`{escape(table['id'])}`):")
        for r in table["add"]:
            lines.append(
                f"• add `{escape(r['name'])}` `{escape(r['addressPrefix'])}` → "
                f"`{escape(r['nextHopType'])}`"
            )
    blocks.append(_section("\n".join(lines)))
    warnings = "\n".join(f":warning: {escape(w)}" for w in plan["warnings"])
    if warnings:
        blocks.append(_section(warnings))
    who = (
        f"Lasts {record.minutes} minute(s), then reverts automatically. Needs approval by "
        f"someone other than <@{record.requester}> from {_groups(approvers)}."
    )
    if dry_run:
        who += " *Dry run*: approval shows and records every step, and writes nothing."
    blocks.append(_context(who))
    if busy:
        blocks.append(_section(f":lock: Refused for now: {escape(busy)}."))
    else:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button("Approve bypass", ACTION_APPROVE, record.incident, "danger"),
                ],
            }
        )
    return {"text": f"Bypass plan for {record.endpoint}: {plan['reason']}"[:3000], "blocks": blocks}


def step_message(text: str, revert_button: str | None = None) -> Message:
    blocks: list[dict[str, Any]] = [_section(f"{text} ({_now()})")]
    if revert_button:
        blocks.append(
            {
                "type": "actions",
                "elements": [_button("Revert now", ACTION_REVERT, revert_button, "danger")],
            }
        )
    return {"text": text[:3000], "blocks": blocks}


def verdict_message(finding: Finding, record: BypassRecord) -> Message:
    mark = {
        "BYPASS_PROVES_APPLIANCE": ":red_circle:",
        "BYPASS_CLEARS_APPLIANCE": ":large_blue_circle:",
    }.get(finding.code, ":white_circle:")
    text = (
        f"{mark} `{finding.code}` {escape(finding.title)}\n{escape(finding.detail)}\n"
        f"Probe before: `{record.before}` · after: `{record.after}` ({_now()})"
    )
    blocks = [_section(text)]
    if finding.fix:
        blocks.append(_context(escape(" ".join(finding.fix))))
    return {"text": f"{finding.code}: {finding.detail}"[:3000], "blocks": blocks}


def expiry_text(record: BypassRecord) -> str:
    if record.expires_at is None:
        return ""
    return datetime.fromtimestamp(record.expires_at, UTC).strftime("%H:%M:%S UTC")
