"""Every world with an expected.yaml entry gives its root cause and codes through the CLI."""

from __future__ import annotations

import pytest

from tests.helpers import WORLDS, assert_expected, check_argv, expected_worlds

EXPECTED = expected_worlds(WORLDS / "expected.yaml")


@pytest.mark.parametrize("world", sorted(EXPECTED))
def test_world_gives_expected_findings(world, run_check):
    spec = EXPECTED[world]
    code, report = run_check(*check_argv(spec, WORLDS / world))
    assert code == 0, report
    assert_expected(report, spec)
