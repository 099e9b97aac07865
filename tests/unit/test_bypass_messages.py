"""bot/slack/bypass_messages.py: the bypass's Slack messages, from a real plan."""

from __future__ import annotations

import json

from bot.bypass.state import BypassRecord
from bot.slack.bypass_messages import plan_message
from tests.unit.test_bypass import CLUSTER, evidence, make_plan


def test_the_slack_plan_shows_who_approves_and_no_button_while_the_table_is_held() -> None:
    plan = make_plan(evidence())
    record = BypassRecord("AKE-1A2B3C", "c", CLUSTER, "http://x", "U0ALICE", plan.to_json(), 10)
    free = json.dumps(plan_message(record, ("S0APPROVE1",), dry_run=True))
    assert "bypass_approve" in free and "<!subteam^S0APPROVE1>" in free and "Dry run" in free
    assert "someone other than <@U0ALICE>" in free
    held = json.dumps(plan_message(record, ("S0APPROVE1",), False, busy="AKE-999999 holds it"))
    assert "bypass_approve" not in held and "AKE-999999" in held
