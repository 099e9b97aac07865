"""The Slack messages: pure functions from findings to Block Kit JSON dicts.

Every message is `{"text": fallback, "blocks": [...]}` built from the same `Finding`s and
`Report` the terminal renders, with the same marks (`bot.render.marks`). Nothing here talks
to Slack; the listeners and jobs post what these functions return.

The Block Kit toolkit they are built with (Slack's limits, escaping, splitting) is
bot/slack/kit.py; evidence as text is bot/slack/evidence_text.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.codes import CATALOG
from bot.model import Finding, Report, Severity
from bot.render.marks import MARKS, RANK, worst
from bot.slack.commands import USAGE
from bot.slack.evidence_text import _code_block, _more, evidence_lines
from bot.slack.kit import (
    ELLIPSIS,
    MAX_DETAIL,
    MAX_MODAL_BLOCKS,
    MAX_MODAL_TITLE,
    MAX_PRIVATE_METADATA,
    PENDING,
    RUNNING,
    SKIPPED,
    _actions,
    _button,
    _capital,
    _context,
    _duration,
    _ephemeral,
    _fields,
    _fit_one,
    _inline_code,
    _message,
    _plain,
    _plural,
    _section,
    _sections,
    _sentence,
    _strip_period,
    clip,
    escape,
    is_arm_id,
    portal_url,
    resource_link,
    split_messages,
)
from bot.steps import BY_NAME, STEP_ORDER
from handlers.bypass import offers_bypass

# -- interaction ids (the listeners in bot/slack/app.py match on these) ---------------------

ACTION_RERUN = "rerun"
ACTION_PROBE_ENDPOINT = "probe_endpoint"
ACTION_SHOW_EVIDENCE = "show_evidence"
ACTION_MARK_RESOLVED = "mark_resolved"
ACTION_BYPASS = "bypass_appliance"  # bot/slack/bypass.py answers it
PROBE_MODAL_CALLBACK = "probe_endpoint_modal"
PROBE_URL_BLOCK = "probe_url"
PROBE_URL_ACTION = "probe_url_value"
EVIDENCE_MODAL_CALLBACK = "evidence_modal"

StepStatus = Literal["pending", "running", "done", "skipped"]


@dataclass(frozen=True)
class IncidentView:
    """What the messages need to know about an incident (the store keeps the rest)."""

    id: str
    alias: str
    cluster_id: str
    endpoint: str | None
    user_id: str
    channel_id: str
    created: str  # ISO 8601
    pod: str | None = None


@dataclass(frozen=True)
class StepState:
    """One checklist step as the live checklist shows it."""

    status: StepStatus
    findings: tuple[Finding, ...] = field(default_factory=tuple)


# -- the root message and the checklist ------------------------------------------------------


def _when(iso: str) -> str:
    """Slack's date formatting (each reader's time zone), the ISO string as fallback."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return clip(iso, 100)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{escape(iso)}>"


def _user(user_id: str) -> str:
    return f"<@{user_id}>" if re.fullmatch(r"[UW][A-Z0-9]+", user_id) else clip(user_id, 100)


def _endpoint(endpoint: str | None) -> str:
    return _inline_code(endpoint, 500) if endpoint else "_none given: the cluster's own egress_"


def root_message(incident: IncidentView) -> dict[str, Any]:
    """The message in the channel that the incident's thread hangs under."""
    alias = clip(incident.alias, 200)
    pairs = [
        ("Cluster", resource_link(incident.cluster_id, incident.alias)),
        ("Endpoint", _endpoint(incident.endpoint)),
        ("Asked by", _user(incident.user_id)),
        ("Incident", _inline_code(incident.id)),
        ("Started", _when(incident.created)),
    ]
    if incident.pod:
        pairs.append(("Pod", _inline_code(incident.pod)))
    blocks = [
        _section(f"*Egress check of {alias}*"),
        _fields(pairs),
        _context(
            "The checklist and every finding follow in this thread. Reply here with "
            "`@aks-egress recheck`, `@aks-egress probe URL` or `@aks-egress summary`."
        ),
    ]
    target = incident.endpoint or "its own egress"
    text = (
        f"Egress check of {escape(incident.alias)} → {escape(target)}, asked by "
        f"{_user(incident.user_id)} (incident {escape(incident.id)})"
    )
    return _message(text, blocks)


def _step_line(title: str, state: StepState) -> str:
    decisive = min(state.findings, key=lambda f: RANK[f.severity]) if state.findings else None
    why = ""
    if decisive is not None:
        line = _sentence(decisive.detail or decisive.title)
        why = f"{_inline_code(decisive.code)} {clip(line, 180)}"
    if state.status == "done":
        mark = MARKS[worst([f.severity for f in state.findings if f.severity != Severity.INFO])]
        return f"{mark} *{escape(title)}* — {why or 'nothing to report'}"
    if state.status == "running":
        return f"{RUNNING} *{escape(title)}* — running{ELLIPSIS}"
    if state.status == "skipped":
        return f"{SKIPPED} *{escape(title)}* — skipped" + (f": {why}" if why else "")
    return f"{PENDING} *{escape(title)}* — waiting"


def _step_title(name: str) -> str:
    return BY_NAME[name].title if name in BY_NAME else name


def checklist(steps: Mapping[str, StepState], note: str | None = None) -> dict[str, Any]:
    """The live checklist: one line per step the check runs, in the order given; `note`
    (the cluster side goes through Azure run command) under it while steps still run."""
    lines = [_step_line(_step_title(name), state) for name, state in steps.items()]
    done = sum(1 for s in steps.values() if s.status in ("done", "skipped"))
    finished = [f for s in steps.values() if s.status == "done" for f in s.findings]
    errors = sum(1 for f in finished if f.severity == Severity.ERROR)
    warnings = sum(1 for f in finished if f.severity == Severity.WARNING)
    progress = f"{done} of {len(steps)} steps done"
    tally = f"{MARKS[Severity.ERROR]} {errors} · {MARKS[Severity.WARNING]} {warnings}"
    blocks = [
        _context(f"*Checklist* · {progress} · {tally}"),
        *_sections("\n".join(lines) or "—"),
    ]
    state = "finished" if done == len(steps) else "running"
    if note and state == "running":
        blocks.append(_context(f"{RUNNING} {escape(note)}"))
    text = (
        f"Checklist {state}: {progress}, {_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    )
    return _message(text, _fit_one(blocks, [], "the checklist is too long"))


# -- findings --------------------------------------------------------------------------------


def evidence_value(incident_id: str, index: int | None, code: str) -> str:
    """The Show evidence button's value: `{incident}:{index}:{code}` or `{incident}:{code}`.

    The index finds the finding in its report; the code checks it is the same finding
    (a later run's report may order findings differently), see `find_finding`.
    """
    ref = f"{index}:{code}" if index is not None else code
    return f"{incident_id}:{ref}"


def parse_evidence_value(value: str) -> tuple[str, str]:
    """(incident id, ref) from a Show evidence value; the ref goes to `find_finding`."""
    incident_id, _, ref = value.partition(":")
    return incident_id, ref


def find_finding(reports: Sequence[Report | Mapping[str, Any]], ref: str) -> Finding | None:
    """The finding a Show evidence ref (`3:NSG_OUTBOUND_DENY`, `3` or `CODE`) points at.

    Looks at the newest report first: the index must hold that code when both are given;
    else the first finding with the code.
    """
    index_text, _, code = ref.partition(":")
    if not code and not index_text.isdigit():
        index_text, code = "", index_text
    index = int(index_text) if index_text.isdigit() else None
    loaded = [r if isinstance(r, Report) else Report.from_json(dict(r)) for r in reports]
    for report in reversed(loaded):
        if index is not None and index < len(report.findings):
            found = report.findings[index]
            if not code or found.code == code:
                return found
    if code:
        for report in reversed(loaded):
            for found in report.findings:
                if found.code == code:
                    return found
    return None


def _finding_parts(
    f: Finding, incident_id: str, index: int | None
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    mark = MARKS[f.severity]
    inside = f.evidence.get("inside")  # the probe inside the user's --pod
    seen = f" · seen from inside {_inline_code(inside)}" if inside else ""
    head = f"*{mark} `{escape(f.code)}`*  {clip(f.title, 300)}{seen}"
    body_text = head + (f"\n{clip(f.detail, MAX_DETAIL)}" if f.detail else "")
    blocks: list[dict[str, Any]] = _sections(body_text)
    step = CATALOG[f.code].step if f.code in CATALOG else None
    facts = []
    if step:
        facts.append(f"Step: {escape(_step_title(step))}")
    if f.resource:
        facts.append(f"Resource: {resource_link(f.resource)}")
    facts.append(f"Incident {_inline_code(incident_id)}")
    blocks.append(_context(" · ".join(facts)))
    lines = evidence_lines(f.evidence)
    if lines:
        blocks.extend(_sections("*Evidence*\n" + "\n".join(lines)))
    if f.fix:
        blocks.extend(_section(piece) for piece in _code_block(f.fix, "*Fix*"))
    value = evidence_value(incident_id, index, f.code)
    tail = [_actions(_button("Show evidence", ACTION_SHOW_EVIDENCE, value))]
    text = f"{mark} {f.code}: {f.title}" + (f" — {_sentence(f.detail)}" if f.detail else "")
    return escape(text), blocks, tail


def finding_reply(f: Finding, incident_id: str, index: int | None = None) -> dict[str, Any]:
    """One thread reply for a failing or warning finding, in one message (cut if huge)."""
    text, blocks, tail = _finding_parts(f, incident_id, index)
    return _message(text, _fit_one(blocks, tail, "press Show evidence for all of it"))


def finding_messages(
    f: Finding, incident_id: str, index: int | None = None
) -> list[dict[str, Any]]:
    """The same reply as `finding_reply`, split over several messages instead of cut."""
    text, blocks, tail = _finding_parts(f, incident_id, index)
    return split_messages(text, [*blocks, *tail])


# -- the summary -----------------------------------------------------------------------------


def _ordered(findings: Iterable[Finding]) -> list[Finding]:
    def key(f: Finding) -> tuple[int, int]:
        step = CATALOG[f.code].step if f.code in CATALOG else ""
        return STEP_ORDER.get(step, len(STEP_ORDER)), RANK[f.severity]

    return sorted(findings, key=key)


def _counts(findings: Sequence[Finding]) -> str:
    n = Counter(f.severity for f in findings)
    error, warning, ok, info = Severity.ERROR, Severity.WARNING, Severity.OK, Severity.INFO
    return " · ".join(
        [
            f"{MARKS[error]} {_plural(n[error], 'error')}",
            f"{MARKS[warning]} {_plural(n[warning], 'warning')}",
            f"{MARKS[ok]} {n[ok]} passed",
            f"{MARKS[info]} {n[info]} info",
        ]
    )


def _root_cause_line(report: Report) -> tuple[str, str]:
    """(mrkdwn, plain) naming the root cause, or saying there is none."""
    if report.root_cause:
        f = next((x for x in report.findings if x.code == report.root_cause), None)
        title = (
            f.title
            if f
            else CATALOG[report.root_cause].title
            if report.root_cause in CATALOG
            else ""
        )
        line = _sentence(f.detail) if f and f.detail else ""
        mark = MARKS[Severity.ERROR]
        text = f"*Root cause: {mark} `{escape(report.root_cause)}`* — {clip(title, 300)}"
        if line:
            text += f"\n{clip(line, 600)}"
        return text, f"Root cause {report.root_cause}: {title}"
    warnings = sum(1 for f in report.findings if f.severity == Severity.WARNING)
    where = f" to {_inline_code(report.endpoint, 500)}" if report.endpoint else ""
    text = f"*No root cause found:* nothing on the path blocks egress{where}."
    if warnings:
        text += f" {_plural(warnings, 'warning')} below may still matter."
    return text, "No root cause found: nothing on the path blocks egress"


def _summary_parts(
    report: Report, incident_id: str, resolved: bool
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    cause, cause_plain = _root_cause_line(report)
    blocks: list[dict[str, Any]] = [_section(cause)]
    if resolved:
        blocks.append(_section(f"{MARKS[Severity.OK]} *Resolved.* Re-run to check again."))
    blocks.append(_context(_counts(report.findings)))
    ips = report.egress_ips
    shown_ips = ", ".join(_inline_code(ip) for ip in ips[:20]) + _more(len(ips), 20)
    outbound = report.cluster.outbound_type or "unknown"
    blocks.append(
        _fields(
            [
                ("Cluster", resource_link(report.cluster.id, report.cluster.alias)),
                ("Endpoint", _endpoint(report.endpoint)),
                ("Egress IPs", shown_ips or "_unknown_"),
                ("Outbound type", _inline_code(outbound)),
            ]
        )
    )
    notable = [
        f for f in _ordered(report.findings) if f.severity in (Severity.ERROR, Severity.WARNING)
    ]
    listing = [f"{MARKS[f.severity]} `{escape(f.code)}` {clip(f.title, 200)}" for f in notable]
    s = report.stats
    commands = f"{_plural(s.run_commands, 'Azure run command')} · " if s.run_commands else ""
    shared = f" (shared: collected for {_inline_code(s.shared_from)})" if s.shared_from else ""
    stats = (
        f"{_plural(s.arm_calls, 'ARM call')} · {_plural(s.k8s_calls, 'Kubernetes call')} · "
        f"{commands}{_duration(s.duration_ms)}{shared} · incident {_inline_code(incident_id)}"
    )
    buttons = [_button("Re-run", ACTION_RERUN, incident_id, "primary")]
    buttons.append(_button("Probe another endpoint", ACTION_PROBE_ENDPOINT, incident_id))
    if report.root_cause:
        value = evidence_value(incident_id, _index_of(report, report.root_cause), report.root_cause)
        buttons.append(_button("Show evidence", ACTION_SHOW_EVIDENCE, value))
    if not resolved:
        buttons.append(_button("Mark resolved", ACTION_MARK_RESOLVED, incident_id))
        if offers_bypass(report.root_cause, report.cluster.outbound_type):
            buttons.append(_button("Bypass appliance", ACTION_BYPASS, incident_id))
    tail = [_context(stats), _actions(*buttons)]
    state = " (resolved)" if resolved else ""
    counts = (
        f"{_plural(sum(f.severity == Severity.ERROR for f in report.findings), 'error')}, "
        f"{_plural(sum(f.severity == Severity.WARNING for f in report.findings), 'warning')}"
    )
    text = f"{report.cluster.alias}{state}: {cause_plain} ({counts})"
    return escape(text), blocks, tail, listing


def _index_of(report: Report, code: str) -> int | None:
    return next((i for i, f in enumerate(report.findings) if f.code == code), None)


def summary_messages(
    report: Report, incident_id: str, resolved: bool = False
) -> list[dict[str, Any]]:
    """The summary with every error and warning listed, over several messages if needed.

    The buttons are on the last message.
    """
    text, blocks, tail, listing = _summary_parts(report, incident_id, resolved)
    if listing:
        blocks.extend(_sections("\n".join(listing)))
    return split_messages(text, [*blocks, *tail])


# -- modals ----------------------------------------------------------------------------------


def probe_modal(incident_id: str, channel: str, masked: str | None = None) -> dict[str, Any]:
    """Ask for one more endpoint to probe from inside the incident's cluster. The channel
    the button was pressed in rides along in `private_metadata`: the submission acts only
    on an incident of that channel. `masked`: the incident's own URL as kept, when Re-run
    needs it whole again (its secret parts were never stored)."""
    metadata = f"{incident_id}|{channel}"
    if len(metadata) > MAX_PRIVATE_METADATA:
        raise ValueError("incident id longer than private_metadata allows")
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": PROBE_MODAL_CALLBACK,
        "private_metadata": metadata,
        "title": _plain("Probe an endpoint", MAX_MODAL_TITLE),
        "submit": _plain("Probe", MAX_MODAL_TITLE),
        "close": _plain("Cancel", MAX_MODAL_TITLE),
        "blocks": [
            {
                "type": "input",
                "block_id": PROBE_URL_BLOCK,
                "label": _plain("Endpoint", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": PROBE_URL_ACTION,
                    "placeholder": _plain("https://api.contoso.com", 150),
                },
                "hint": _plain(
                    "A URL, host:port or IP. The bot probes it from inside the cluster and "
                    "posts what it finds in the incident's thread.",
                    2000,
                ),
            },
            _context(f"Incident {_inline_code(incident_id)}"),
        ],
    }
    if masked:
        again = (
            f"This check's URL had secret parts, which aks-egress does not keep: "
            f"{_inline_code(masked)}. Paste it whole to run the check again; run with the "
            "masked value, the endpoint would refuse the probe and the report would say so."
        )
        view["blocks"].insert(0, _section(again))
    return view


def evidence_modal(f: Finding) -> dict[str, Any]:
    """The raw JSON of one finding, over as many sections as it takes (cut at 100 blocks)."""
    head = f"*{MARKS[f.severity]} `{escape(f.code)}`*  {clip(f.title, 300)}"
    blocks: list[dict[str, Any]] = [_section(head)]
    if f.resource and is_arm_id(f.resource):
        blocks.append(_context(f"<{portal_url(f.resource)}|Open in the Azure portal>"))
    raw = json.dumps(f.to_json(), indent=2, ensure_ascii=False, default=str)
    pieces = _code_block(raw.split("\n"), wrap=True)
    room = MAX_MODAL_BLOCKS - len(blocks)
    if len(pieces) > room:
        cut = len(pieces) - (room - 1)
        pieces = pieces[: room - 1]
        blocks.extend(_section(p) for p in pieces)
        blocks.append(
            _context(
                f"{ELLIPSIS} {_plural(cut, 'more section')} cut: run "
                "`aks-egress check ALIAS --endpoint URL --json` for the whole report"
            )
        )
    else:
        blocks.extend(_section(p) for p in pieces)
    return {
        "type": "modal",
        "callback_id": EVIDENCE_MODAL_CALLBACK,
        "title": _plain("Evidence", MAX_MODAL_TITLE),
        "close": _plain("Close", MAX_MODAL_TITLE),
        "blocks": blocks,
    }


# -- ephemeral replies -----------------------------------------------------------------------

_HELP_NEXT = "Type `/aks-egress help` for the commands."


def help_text() -> dict[str, Any]:
    blocks = [
        _section(
            "*aks-egress* finds out why pods in an AKS cluster cannot reach an endpoint "
            "outside their VNet. It works through the egress checklist (routes, NSGs, "
            "firewall, NAT gateway or load balancer, a probe from inside the cluster, SNAT, "
            "nodes) and posts each finding with its evidence and the exact fix in a thread."
        ),
        _section("*Commands*\n" + escape(USAGE)),
        _context(
            "An endpoint is a URL (`https://api.contoso.com/v1`), `host:port` or an IP. "
            "Every finding has a stable code, explained in docs/finding-codes.md."
        ),
    ]
    return _ephemeral("aks-egress: commands", blocks)


def clusters_text(
    aliases: list[str], user_groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """The clusters a channel may check, each limited to user groups said so."""
    if not aliases:
        return _ephemeral(
            "No cluster may be checked from this channel",
            [
                _section(f"{MARKS[Severity.WARNING]} No cluster may be checked from this channel."),
                _context(
                    "Ask the bot's operators to add this channel to a cluster's `channels` in "
                    "the bot's configuration, or run the check from a channel that has one."
                ),
            ],
        )
    groups = user_groups or {}

    def line(alias: str) -> str:
        only = ", ".join(_inline_code(g) for g in groups.get(alias) or ())
        return f"• {_inline_code(alias)}" + (f" (members of {only} only)" if only else "")

    lines = [line(a) for a in aliases]
    blocks = [
        _section(f"*Clusters this channel may check* ({len(aliases)})"),
        *_sections("\n".join(lines)),
    ]
    tail = [_context("Check one: `/aks-egress check CLUSTER URL`.")]
    text = "Clusters this channel may check: " + ", ".join(aliases)
    return _ephemeral(escape(text), _fit_one(blocks, tail, "too many clusters to list"))


def usage_error(problem: str) -> dict[str, Any]:
    blocks = [
        _section(f"{MARKS[Severity.ERROR]} {clip(_capital(_strip_period(problem)), 2000)}."),
        _section("*Usage*\n" + escape(USAGE)),
        _context(_HELP_NEXT),
    ]
    return _ephemeral(escape(f"{_strip_period(problem)}. {_HELP_NEXT}"), blocks)


def refusal(reason: str, next_step: str | None = None) -> dict[str, Any]:
    next_step = next_step or (
        "Run `/aks-egress clusters` for the clusters this channel may check; "
        "`/aks-egress help` for the commands."
    )
    blocks = [
        _section(f"{MARKS[Severity.ERROR]} Not run: {clip(_strip_period(reason), 2800)}."),
        _context(f"*Next:* {clip(next_step, 2000)}"),
    ]
    return _ephemeral(escape(f"Not run: {_strip_period(reason)}. {next_step}"), blocks)


def error_text(what: str, next_step: str) -> dict[str, Any]:
    blocks = [
        _section(f"{MARKS[Severity.ERROR]} *Could not finish:* {clip(_strip_period(what), 2800)}."),
        _section(f"*Next:* {clip(_strip_period(next_step), 2800)}."),
    ]
    text = f"Could not finish: {_strip_period(what)}. Next: {_strip_period(next_step)}."
    return _ephemeral(escape(text), blocks)


def started_text(incident_id: str, alias: str, place: int = 0) -> dict[str, Any]:
    """The ack; `place` > 0: every worker is busy and the check waits its turn."""
    if place > 0:
        text = (
            f"{RUNNING} Queued: {_queue_place(place)}. Checking {_inline_code(alias)} as "
            f"incident {_inline_code(incident_id)} as soon as a worker is free; its message "
            "shows the place in the queue, and the checklist follows in its thread."
        )
        plain = f"Queued ({_queue_place(place)}): {alias} as incident {incident_id}"
        return _ephemeral(escape(plain), [_section(text)])
    text = (
        f"{RUNNING} Checking {_inline_code(alias)} as incident {_inline_code(incident_id)}: "
        "the checklist and the findings follow in the thread of the message I just posted."
    )
    return _ephemeral(escape(f"Checking {alias} as incident {incident_id}"), [_section(text)])


def _queue_place(place: int) -> str:
    return "next in line" if place <= 1 else f"{place - 1} checks ahead of it"


def queued_root_message(incident: IncidentView, place: int) -> dict[str, Any]:
    """The root message while its check waits for a worker (replaced when it starts)."""
    message = root_message(incident)
    note = f"{RUNNING} *Queued:* {_queue_place(place)}; it starts when a worker is free."
    return _message(message["text"], [*message["blocks"], _context(note)])


def shared_note(source_incident: str, age_s: float) -> dict[str, Any]:
    """Says that this run's evidence was collected for another incident moments ago."""
    text = (
        f"Shared result: this evidence was collected {age_s:.0f} s ago for incident "
        f"{_inline_code(source_incident)}, which asked about the same cluster and endpoint "
        "at the same moment. Re-run collects it afresh."
    )
    return _message(f"Shared result, {age_s:.0f} s old", [_context(text)])
