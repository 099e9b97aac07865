"""Write requirements.lock: every runtime dependency of aks-egress, pinned, with hashes.

Run it with the Python the image uses (3.11), with pip-tools installed, after changing
`[project] dependencies`:

    python3.11 -m pip install pip-tools && python3.11 deploy/lock.py

pip-compile resolves the project's dependencies and the sandbox extra (so that
`aks-egress demo` runs in the image too; not the test extra) and writes each pin
with the sha256 of every file PyPI serves for it. The Dockerfile installs exactly those
with `pip install --require-hashes`, so a replaced file on an index fails the build, and
tests/deploy/test_dockerfile.py checks that the lock still satisfies pyproject.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# Runtime dependencies of aks-egress, pinned with the sha256 of every file PyPI serves for
# each version: the image installs exactly these (pip install --require-hashes).
# Resolved for CPython {major}.{minor} from pyproject.toml's [project] dependencies and the
# [sandbox] extra (so that `aks-egress demo` runs in the image too); regenerate with
# `python3.11 deploy/lock.py` (pip-tools) after changing them.
"""
COMPILE = (
    "--quiet",
    "--generate-hashes",
    "--extra",
    "sandbox",
    "--strip-extras",
    "--no-emit-index-url",
    "--no-emit-find-links",
    "--no-header",
)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "requirements.lock"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "piptools",
                "compile",
                *COMPILE,
                "--output-file",
                str(out),
                str(ROOT / "pyproject.toml"),
            ],
            check=True,
        )
        body = out.read_text()
    header = HEADER.format(major=sys.version_info.major, minor=sys.version_info.minor)
    (ROOT / "requirements.lock").write_text(header + body)
    pins = sum(1 for line in body.splitlines() if "==" in line and not line.startswith(" "))
    print(f"requirements.lock: {pins} packages, with hashes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
