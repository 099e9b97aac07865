"""The documented catalog and the code's catalog name the same codes."""

import re

from bot.codes import CATALOG
from bot.steps import STEP_ORDER
from tests.helpers import ROOT


def test_docs_and_catalog_agree():
    doc = (ROOT / "docs" / "finding-codes.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", doc, re.MULTILINE))
    assert documented == set(CATALOG)


def test_every_code_has_a_known_step():
    assert all(code.step in STEP_ORDER for code in CATALOG.values())
