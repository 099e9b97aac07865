"""bot/slack/timeline.py: the postmortem timeline of every run in an incident's thread."""

from __future__ import annotations

import pytest

from bot.model import Report, Severity
from bot.slack import timeline as T
from tests.slack_messages import INCIDENT, WORLDS, huge_report, load, view


@pytest.mark.parametrize("world", WORLDS)
def test_every_real_report_makes_a_timeline_within_slacks_limit(world: str) -> None:
    report = load(world)
    timeline = T.timeline(view(), [report, report.to_json()])
    assert 0 < len(timeline) <= 40_000
    assert timeline.count("```") % 2 == 0
    assert "*Run 2*" in timeline and "Since run 1: no change" in timeline


def test_timeline_tells_the_story_of_the_thread() -> None:
    broken = load("nsg-subnet-deny")
    fixed = Report.from_json(broken.to_json())
    fixed.findings = [f for f in fixed.findings if f.severity == Severity.INFO]
    fixed.root_cause = None
    text = T.timeline(view(), [broken.to_json(), fixed])
    assert text.startswith(f"*Incident {INCIDENT}: egress from payments-prod*")
    assert "*Run 1* — https://api.contoso.com: root cause `NSG_OUTBOUND_DENY`" in text
    assert "- ✗ `NSG_OUTBOUND_DENY` An NSG denies traffic to the endpoint" in text
    assert broken.findings[2].fix[0] in text
    assert "*Run 2*" in text and "gone: `NSG_OUTBOUND_DENY`, `NSG_REQUIRED_EGRESS_DENY`" in text
    assert text.endswith("*Outcome:* the last run finds no error on the egress path.")
    assert text.count("```") % 2 == 0
    assert "No check has finished yet." in T.timeline(view(), [])
    big = T.timeline(view(), [huge_report(40)] * 3)
    assert len(big) <= 40_000 and big.count("```") % 2 == 0


def test_the_incident_header_escapes_what_users_and_azure_wrote() -> None:
    text = T.timeline(view(alias="a<b>&c", pod="ns/<p>"), [])
    assert text.startswith(f"*Incident {INCIDENT}: egress from a&lt;b&gt;&amp;c*")
    assert "- Pod: `ns/&lt;p&gt;`" in text
    assert "<@U123ABC>" in text


def test_a_run_that_shared_another_incidents_collection_says_so() -> None:
    """Its counts are that collection's (bot/flight.py); the stored report's `shared` says
    whose, and a hostile value there is escaped like everything else."""
    data = load("nsg-subnet-deny").to_json()
    own = T.timeline(view(), [data])
    shared = T.timeline(view(), [{**data, "shared": {"incident": "AKE-<b>", "ageS": 3.0}}])
    assert "(shared:" not in own
    assert "ARM call" in shared and "(shared: collected for AKE-&lt;b&gt;)" in shared
