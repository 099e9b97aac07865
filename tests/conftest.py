"""Shared test helpers: where the worlds are, and running the real CLI in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bot.cli import main

ROOT = Path(__file__).resolve().parent.parent
WORLDS = ROOT / "tests" / "worlds"
FIXTURES = ROOT / "tests" / "fixtures"

# Codes that arrive with a later issue: not asserted yet (none left).
LATER: tuple[str, ...] = ()


def later(code: str | None) -> bool:
    return code is not None and code.startswith(LATER)


def expected_worlds(path: Path) -> dict[str, dict]:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def run_check(capsys):
    """Run `aks-egress check ... --json` as a user would; returns (exit code, report|stderr)."""

    def run(*argv: str) -> tuple[int, dict | str]:
        code = main(["check", *argv, "--json"])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if code == 0 else err)

    return run
