"""Fixtures: running the real CLI in-process (helpers for test files are in tests/helpers.py)."""

from __future__ import annotations

import json

import pytest

from bot.cli import main


@pytest.fixture
def run_check(capsys):
    """Run `aks-egress check ... --json` as a user would; returns (exit code, report|stderr)."""

    def run(*argv: str) -> tuple[int, dict | str]:
        code = main(["check", *argv, "--json"])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if code == 0 else err)

    return run
