"""Every world with an expected.yaml entry gives its root cause and codes through the CLI."""

from __future__ import annotations

import pytest

from tests.conftest import WORLDS, expected_worlds, later

EXPECTED = expected_worlds(WORLDS / "expected.yaml")


@pytest.mark.parametrize("world", sorted(EXPECTED))
def test_world_gives_expected_findings(world, run_check):
    spec = EXPECTED[world]
    code, report = run_check(
        spec["alias"], "--endpoint", spec["endpoint"], "--world", str(WORLDS / world)
    )
    assert code == 0, report
    codes = {f["code"] for f in report["findings"]}
    if not later(spec["rootCause"]):
        assert report["rootCause"] == spec["rootCause"]
    missing = {c for c in spec["mustInclude"] if not later(c)} - codes
    assert not missing, f"missing {missing}; got {sorted(codes)}"
    wrong = codes & set(spec["mustExclude"])
    assert not wrong, f"must not report {wrong}"
    for finding in report["findings"]:
        assert finding["severity"] in ("error", "warning", "info", "ok")
        assert finding["title"] and isinstance(finding["evidence"], dict)
