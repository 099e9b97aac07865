"""How each severity is shown, the same on every surface."""

from __future__ import annotations

from bot.model import Severity

MARKS = {
    Severity.OK: "✓",
    Severity.ERROR: "✗",
    Severity.WARNING: "!",
    Severity.INFO: "·",
}
RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.OK: 2, Severity.INFO: 3}


def worst(severities: list[Severity]) -> Severity:
    return min(severities, key=RANK.__getitem__) if severities else Severity.OK
