"""handlers/snat_capacity.py: the SNAT capacity model as Azure documents it (ports per node
by backend pool size, 64,000 per frontend IP, 64,512 per NAT gateway IP) and the plan that
leaves 30 % headroom at a peak, on plain numbers."""

from __future__ import annotations

import pytest

from handlers import snat_capacity

BANDS = [(1, 1024), (50, 1024), (51, 512), (100, 512), (101, 256), (200, 256)]
BANDS += [(201, 128), (400, 128), (401, 64), (800, 64), (801, 32), (1000, 32)]


@pytest.mark.parametrize(("nodes", "ports"), BANDS)
def test_dynamic_allocation_bands(nodes, ports):
    assert snat_capacity.dynamic_ports(nodes) == ports
    assert snat_capacity.ports_per_node(0, nodes, 1) == ports


def test_dynamic_allocation_grows_with_frontend_ips_up_to_1024():
    assert snat_capacity.dynamic_ports(100, 2) == 1024  # 512 × 2
    assert snat_capacity.dynamic_ports(100, 3) == 1024  # never more than 1,024
    assert snat_capacity.dynamic_ports(300, 3) == 384
    assert snat_capacity.dynamic_ports(1001) is None


def test_fixed_allocation_is_the_setting_whatever_the_pool_size():
    assert snat_capacity.ports_per_node(4000, 900, 1) == 4000


def test_fits():
    assert snat_capacity.fits(1176, 14, 1)
    assert snat_capacity.fits(6400, 10, 1)
    assert not snat_capacity.fits(6408, 10, 1)
    assert snat_capacity.ips_for(6408, 10) == 2


def test_ports_for_headroom_is_a_multiple_of_8_with_30_percent_free():
    for peak in (1, 7, 100, 700, 822, 1000, 44_800):
        ports = snat_capacity.ports_for_headroom(peak)
        assert ports % 8 == 0
        assert peak <= 0.7 * ports
        assert not peak <= 0.7 * (ports - 8) or ports == 8


def test_capacity_none_when_today_already_has_headroom():
    plan = snat_capacity.capacity(100, 3, 1, 0)
    assert plan.kind == "none"
    assert plan.ports == 1024


def test_capacity_more_ips_under_default_allocation():
    # 60 nodes: 512 ports per IP; 450 peak needs 648 → 2 IPs give min(1024, 1024)
    plan = snat_capacity.capacity(450, 60, 1, 0)
    assert (plan.kind, plan.ips, plan.ports, plan.needed_ports) == ("ip-count", 2, 1024, 648)


def test_capacity_ports_and_ips_so_they_fit():
    # fixed 1,024 on 110 nodes; 1,000 peak needs 1,432; 1,432 × 110 = 157,520 → 3 IPs
    plan = snat_capacity.capacity(1000, 110, 1, 1024)
    assert (plan.kind, plan.ports, plan.ips) == ("ports", 1432, 3)
    assert snat_capacity.fits(plan.ports, plan.nodes, plan.ips)
    assert not snat_capacity.fits(plan.ports, plan.nodes, plan.ips - 1)


def test_capacity_nat_gateway_when_no_load_balancer_setting_suffices():
    # 12,864 ports × 500 nodes need 101 IPs: more than the 100 managed outbound IPs
    plan = snat_capacity.capacity(9000, 500, 1, 10_000, total_peak=300_000)
    assert plan.kind == "natgw"
    assert plan.ips == 7  # 300,000 / 0.7 = 428,572 connections / 64,512
    assert plan.enough
    # beyond 64,000 ports per node
    assert snat_capacity.capacity(50_000, 2, 2, 64_000).kind == "natgw"
    # even 16 NAT gateway IPs are not enough
    huge = snat_capacity.capacity(9000, 500, 1, 10_000, total_peak=1_000_000)
    assert (huge.kind, huge.ips, huge.enough) == ("natgw", 16, False)


def test_plan_json_says_whether_it_fits():
    plan = snat_capacity.capacity(1000, 110, 1, 1024).to_json()
    assert plan["kind"] == "ports" and plan["fits"]
    assert plan["portsNeeded"] == 1432 * 110 <= plan["portsAvailable"] == 3 * 64_000
    natgw = snat_capacity.capacity(9000, 500, 1, 10_000, total_peak=300_000).to_json()
    assert natgw["natGatewayPorts"] == 7 * 64_512 and natgw["enough"] and "fits" not in natgw
