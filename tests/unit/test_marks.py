"""bot/render/marks.py: one mark per severity on every surface, and the worst of several."""

from __future__ import annotations

from bot.model import Severity
from bot.render.marks import MARKS, worst


def test_every_severity_has_its_own_mark() -> None:
    assert set(MARKS) == set(Severity)
    assert len(set(MARKS.values())) == len(MARKS)


def test_the_worst_severity_wins_and_none_is_ok() -> None:
    assert worst([Severity.INFO, Severity.OK, Severity.WARNING]) == Severity.WARNING
    assert worst([Severity.WARNING, Severity.ERROR, Severity.OK]) == Severity.ERROR
    assert worst([Severity.INFO]) == Severity.INFO
    assert worst([]) == Severity.OK
