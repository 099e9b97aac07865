"""handlers/k8s.py parses quantities exactly as the Kubernetes Python client does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as client_parse

from handlers.k8s import parse_quantity, quantity

SUFFIXES = ["", "n", "u", "m", "k", "K", "M", "G", "T", "P", "E"]
SUFFIXES += [s + "i" for s in SUFFIXES if s] + ["x", "mm", "Ki0"]


def _same(value: object) -> None:
    try:
        expected = client_parse(value)
    except ValueError:
        with pytest.raises(ValueError):
            parse_quantity(value)  # type: ignore[arg-type]
        return
    assert parse_quantity(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    ["231053413n", "48Mi", "2", "1.5Gi", "100m", "7Ki", "3ki", "1e3", "-1M", "", "Mi", "abc",
     "0.5", "12E", "4Ei", 3, 2.5, Decimal("7")],
)  # fmt: skip
def test_known_quantities_parse_as_the_client_parses_them(value):
    _same(value)


@given(
    st.one_of(st.integers(-(10**12), 10**12).map(str), st.decimals(allow_nan=False).map(str)),
    st.sampled_from(SUFFIXES),
)
def test_any_number_and_suffix_parses_as_the_client_parses_it(number, suffix):
    _same(number + suffix)


def test_quantity_is_none_when_absent_or_bad():
    assert quantity(None) is None
    assert quantity("") is None
    assert quantity("3ki") is None
    assert quantity("48Mi") == 48 * 1024 * 1024
