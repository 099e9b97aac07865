"""Without the [sandbox] extra the sandbox says what to install, and the rest still loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.cli import main
from tests.helpers import WORLDS


@pytest.fixture
def without(monkeypatch):
    """Make `module` unimportable, as it is when the extra is not installed."""

    def hide(module: str) -> None:
        for name in [m for m in sys.modules if m.startswith(f"{module}.")] + [module]:
            monkeypatch.setitem(sys.modules, name, None)  # loaded submodules too
        for name in ("bot.sandbox.server", "bot.sandbox.socket_mode"):
            monkeypatch.delitem(sys.modules, name, raising=False)

    return hide


@pytest.mark.parametrize("module", ["trustme", "websockets"])
def test_a_world_without_the_extra_says_what_to_install(without, capsys, module):
    without(module)
    code = main(["check", "platform-prod", "--world", str(WORLDS / "udr-firewall-allowed.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"needs {module}" in err and "pip install 'aks-egress[sandbox]'" in err


def test_the_bot_itself_loads_without_the_extra():
    """A production install: the app, the worker and the engine import in a fresh process."""
    code = (
        "import sys; sys.modules['trustme'] = sys.modules['websockets'] = None; "
        "import bot.processes, bot.jobs, bot.runtime, bot.engine, bot.summary; "
        "assert 'bot.sandbox.server' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
