"""The `--json` report contract (world-format.md): one object, nothing else on stdout."""

from __future__ import annotations

import json

from bot.model import Report


def render(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=False)
