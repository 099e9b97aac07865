"""bot/model.py and bot/render/json.py: a report is the `--json` contract of
docs/world-format.md key for key, and reads back from it unchanged (as Redis keeps it)."""

from __future__ import annotations

import json

import pytest

from bot.model import Finding, Report, Severity
from bot.render.json import render
from tests.slack_messages import REPORTS, WORLDS, huge_report

CONTRACT_KEYS = ["cluster", "endpoint", "egressIps", "findings", "rootCause", "stats"]
CLUSTER_KEYS = ["alias", "id", "outboundType", "networkPlugin", "networkPluginMode"]
FINDING_KEYS = ["code", "severity", "title", "detail", "resource", "evidence", "fix"]


@pytest.mark.parametrize("world", WORLDS)
def test_a_real_report_round_trips_through_its_json(world: str) -> None:
    data = json.loads((REPORTS / f"{world}.json").read_text())
    report = Report.from_json(data)
    assert list(report.to_json()) == CONTRACT_KEYS
    assert list(report.to_json()["cluster"]) == CLUSTER_KEYS
    assert all(list(f) == FINDING_KEYS for f in report.to_json()["findings"])
    assert Report.from_json(report.to_json()) == report


def test_render_prints_the_contract_as_one_object() -> None:
    report = huge_report(2)
    printed = json.loads(render(report))
    assert printed == report.to_json()
    assert printed["stats"] == {
        "armCalls": 1234,
        "k8sCalls": 56,
        "durationMs": 754_321,
        "runCommands": 0,
    }


def test_a_finding_keeps_its_fields_but_not_its_internal_flag() -> None:
    f = Finding("PROBE_OK", Severity.OK, "t", about_endpoint=True, fix=["a"])
    data = f.to_json()
    assert data["severity"] == "ok" and "about_endpoint" not in data
    back = Finding.from_json(data)
    assert back.fix == ["a"] and back.severity is Severity.OK and not back.about_endpoint
    minimal = Finding.from_json({"code": "X", "severity": "info"})
    assert (minimal.title, minimal.evidence, minimal.fix) == ("", {}, [])
