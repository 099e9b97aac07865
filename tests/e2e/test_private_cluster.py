"""A private cluster end to end through Slack: the cluster side goes through Azure run
command, and the live checklist says so while it runs (it takes longer)."""

from __future__ import annotations

import json

from tests.conftest import WORLDS, expected_worlds
from tests.e2e.harness import name
from tests.e2e.test_slack_bot import make_bot, redis_server  # noqa: F401 (fixtures)

SPEC = expected_worlds(WORLDS / "expected.yaml")["private-cluster-udr.yaml"]


def test_a_private_cluster_is_checked_through_run_command(make_bot):  # noqa: F811
    bot = make_bot("private-cluster-udr.yaml")
    status, body = bot.slash(f"check {SPEC['alias']} {SPEC['endpoint']}")
    assert status == 200, body
    thread = bot.wait_for(":summary:")
    checklist_texts = [
        json.dumps(c.body)
        for c in bot.sandbox.calls("slack")
        if c.path.endswith(("chat.update", "chat.postMessage"))
        and "Checklist" in json.dumps(c.body)
    ]
    noted = [t for t in checklist_texts if "goes through Azure run command" in t]
    assert noted, "the live checklist never said the cluster side goes through run command"
    assert "the API server is private" in noted[0] and "longer" in noted[0]
    assert "goes through Azure run command" not in json.dumps(
        next(m for m in thread if name(m) == "0:checklist")
    ), "the note goes once the checklist is finished"
    incident = thread[-1]["metadata"]["event_payload"]["incident"]
    reports = bot.store.reports(incident)
    assert reports and 1 <= reports[-1]["stats"]["runCommands"] <= 2
    codes = {f["code"]: f for f in reports[-1]["findings"]}
    assert "Azure run command" in codes["KUBE_ACCESS"]["detail"]
    assert "PROBE_OK" in codes and reports[-1]["rootCause"] is None
