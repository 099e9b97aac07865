"""The arguments of `aks-egress bypass` and `aks-egress audit`.

Only the standard library here: `aks-egress --help` builds every parser and must not
import the SDKs (bot/cli.py). The commands themselves are in bypass/terminal.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

Fail = Callable[[str, int], int]
BAD_INPUT, CANNOT_RUN = 2, 1


def _terminal() -> ModuleType:
    from bot.bypass import terminal

    return terminal


def register(sub: Any, fail: Fail) -> None:
    bypass = sub.add_parser(
        "bypass", help="route an endpoint around the appliance, probe, revert (step 4)"
    )
    bypass.add_argument("alias", help="cluster alias from the configuration or world")
    bypass.add_argument("--endpoint", required=True, help="URL, host:port or IP that fails")
    bypass.add_argument("--minutes", type=int, help="longest the routes may live (default 10)")
    bypass.add_argument(
        "--all-traffic", action="store_true", help="all internet traffic (if allowed)"
    )
    bypass.add_argument("--world", type=Path, help="serve this sandbox world instead of Azure")
    bypass.add_argument("--plan", action="store_true", help="only print the plan")
    bypass.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    bypass.add_argument("--json", action="store_true", help="print one JSON object only")
    bypass.add_argument("--dry-run", action="store_true", help="plan and record, write nothing")
    bypass.set_defaults(func=lambda args: _terminal().cmd_bypass(args, fail))

    audit = sub.add_parser("audit", help="export the bypass audit stream from Redis")
    audit.add_argument("--since", help="ISO date or time (UTC), e.g. 2026-11-27")
    audit.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    audit.set_defaults(func=lambda args: _terminal().cmd_audit(args, fail))
