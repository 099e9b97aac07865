"""The CLI starts light: `--help`, `--version` and usage errors import no SDK."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("azure", "kubernetes", "slack_sdk", "slack_bolt", "pydantic", "redis", "rq", "bot.sandbox")
PROBE = f"""
import sys
from bot import cli
try:
    cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({{m.split('.')[0] if not m.startswith('bot.') else m for m in sys.modules
               if m.startswith({HEAVY!r})}})
print('HEAVY', heavy, 'EXIT', code, file=sys.stderr)
"""


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_help_version_and_usage_errors_import_nothing_heavy():
    for argv, code in ((["--help"], 0), (["--version"], 0), (["nope"], 2), (["check", "-h"], 0)):
        done = run(*argv)
        assert f"HEAVY [] EXIT {code}" in done.stderr, (argv, done.stderr)


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    done = run("--version")
    assert done.stdout.strip() == f"aks-egress {version('aks-egress')}"
