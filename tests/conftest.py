"""Shared test helpers: where the worlds are, and running the real CLI in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from tests.fix_policy import assert_fixes_narrow

ROOT = Path(__file__).resolve().parent.parent
WORLDS = ROOT / "tests" / "worlds"
FIXTURES = ROOT / "tests" / "fixtures"


def expected_worlds(path: Path) -> dict[str, dict]:
    return yaml.safe_load(path.read_text())


def check_argv(spec: dict, world: Path) -> list[str]:
    """The CLI arguments an expected.yaml entry runs its world with: the alias, the endpoint,
    the entry's `args` (e.g. `--pod NS/NAME`) and the world."""
    args = [*spec.get("args", []), "--world", str(world)]
    return [spec["alias"], "--endpoint", spec["endpoint"], *args]


def assert_expected(report: dict, spec: dict) -> set[str]:
    """A report meets an expected.yaml entry: root cause, required and excluded codes, and
    every finding has the contract's fields. Returns the codes reported."""
    codes = {f["code"] for f in report["findings"]}
    assert report["rootCause"] == spec["rootCause"], sorted(codes)
    missing = set(spec["mustInclude"]) - codes
    assert not missing, f"missing {missing}; got {sorted(codes)}"
    wrong = codes & set(spec["mustExclude"])
    assert not wrong, f"must not report {wrong}; got {sorted(codes)}"
    for finding in report["findings"]:
        assert finding["severity"] in ("error", "warning", "info", "ok")
        assert finding["title"] and isinstance(finding["evidence"], dict)
    assert_fixes_narrow(report)
    return codes


@pytest.fixture
def run_check(capsys):
    """Run `aks-egress check ... --json` as a user would; returns (exit code, report|stderr)."""

    def run(*argv: str) -> tuple[int, dict | str]:
        code = main(["check", *argv, "--json"])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if code == 0 else err)

    return run
