"""The CLI starts light: `--help`, `--version` and usage errors import no SDK."""

from __future__ import annotations

from tests.helpers import run_cli_in_fresh_process as run


def test_help_version_and_usage_errors_import_nothing_heavy():
    for argv, code in ((["--help"], 0), (["--version"], 0), (["nope"], 2), (["check", "-h"], 0)):
        done = run(*argv)
        assert f"HEAVY [] EXIT {code}" in done.stderr, (argv, done.stderr)


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    done = run("--version")
    assert done.stdout.strip() == f"aks-egress {version('aks-egress')}"
