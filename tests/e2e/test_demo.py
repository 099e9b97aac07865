"""The README's first command: `aks-egress demo` runs the whole bot and prints the thread."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT, WORLDS

BUILD_PY = ("-q", "build_py", "--build-lib")  # the package files a wheel would hold


def test_shipped_demo_world_is_the_test_world():
    shipped = ROOT / "bot" / "sandbox" / "worlds" / "demo.yaml"
    assert shipped.read_text() == (WORLDS / "nsg-subnet-deny.yaml").read_text()


def test_demo_prints_the_incident_thread_and_exits_cleanly(tmp_path):
    """Run from the package as setuptools builds it (what a wheel or the image holds: no
    tests/), in another directory."""
    lib = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", *BUILD_PY, str(lib)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["COLUMNS"] = "120"
    env["PYTHONPATH"] = str(lib)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "/aks-egress check payments-prod https://api.contoso.com" in out
    assert "Root cause" in out and "NSG_OUTBOUND_DENY" in out
    assert "Traceback" not in out + done.stderr
    assert "internal error" not in out + done.stderr
    # Slack's markup reads as Slack shows it: no raw mrkdwn, links by name, URLs noted.
    for raw in ("<https://", "<!date^", "*Cluster*", "<@U", "```", "&lt;", "&gt;"):
        assert raw not in out, raw
    assert "Cluster  payments-prod[1]" in out
    assert "[1] https://portal.azure.com/" in out
    assert "@U0DEMO0001" in out
