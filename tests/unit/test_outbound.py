"""Azure's outbound precedence, checked for every combination of the five methods.

Microsoft's NAT gateway overview (https://learn.microsoft.com/azure/nat-gateway/nat-overview,
"Outbound connectivity") gives the order: UDR to next hop virtual appliance or virtual
network gateway >> NAT gateway >> instance-level public IP address on a virtual machine >>
load balancer outbound rules >> default system route to the internet.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.outbound import Egress, egress_component

# The documented order, written out independently of the module under test.
DOCUMENTED = ("appliance", "natGateway", "instancePublicIp", "loadBalancerOutboundRules")
DOCUMENTED += ("defaultOutboundAccess",)
NAMES = (
    "appliance_route",
    "nat_gateway",
    "instance_public_ip",
    "lb_outbound_rules",
    "default_outbound_access",
)


def documented_choice(present: tuple[bool, ...]) -> str:
    """The first method in the documented order that is configured, else none at all."""
    for method, on in zip(DOCUMENTED, present, strict=True):
        if on:
            return method
    return "none"


@pytest.mark.parametrize("present", list(itertools.product((False, True), repeat=5)))
def test_every_combination_follows_the_documented_order(present: tuple[bool, ...]) -> None:
    chosen = egress_component(**dict(zip(NAMES, present, strict=True)))
    assert str(chosen) == documented_choice(present)


@given(st.tuples(*[st.booleans()] * 5), st.integers(0, 4))
def test_adding_a_lower_method_never_changes_the_choice(
    present: tuple[bool, ...], index: int
) -> None:
    """Property: switching on a method below the chosen one leaves the choice as it is;
    switching on one above it makes that one the choice."""
    before = egress_component(**dict(zip(NAMES, present, strict=True)))
    after = egress_component(
        **dict(zip(NAMES, (*present[:index], True, *present[index + 1 :]), strict=True))
    )
    rank = DOCUMENTED.index(str(before)) if before != Egress.NONE else len(DOCUMENTED)
    assert str(after) == (DOCUMENTED[index] if index < rank else str(before))
