"""Write requirements.lock: every runtime dependency of aks-egress, pinned, for the image.

Run it with the Python the image uses (3.11) after changing `[project] dependencies`:

    python3.11 deploy/lock.py

pip resolves the project's dependencies and the sandbox extra (not the test extra) without
installing anything, and the resolution is written as `name==version` lines. The Dockerfile
installs exactly those, and tests/deploy/test_dockerfile.py checks that the lock still
satisfies pyproject.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP_DRY_RUN = (sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q")
HEADER = """\
# Runtime dependencies of aks-egress, pinned: the container image installs exactly these.
# Resolved for CPython {major}.{minor} on Linux from pyproject.toml's [project] dependencies
# and the [sandbox] extra (so that `aks-egress demo` runs in the image too).
# Regenerate with `python3.11 deploy/lock.py` after changing them.
"""


def resolve() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [*PIP_DRY_RUN, "--report", str(report), f"{ROOT}[sandbox]"],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    pins = {(i["metadata"]["name"].lower(), i["metadata"]["version"]) for i in installs}
    return sorted(p for p in pins if p[0] != "aks-egress")


def main() -> int:
    lines = [f"{name}=={version}" for name, version in resolve()]
    header = HEADER.format(major=sys.version_info.major, minor=sys.version_info.minor)
    (ROOT / "requirements.lock").write_text(header + "\n".join(lines) + "\n")
    print(f"requirements.lock: {len(lines)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
