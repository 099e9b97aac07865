"""A sharded summary's batches take a subscription's clusters together, so each batch's
load balancers fill metrics batch calls (bot/summary_shards.py)."""

from __future__ import annotations

from bot.armid import cluster_id
from bot.summary_shards import batches


def test_batches_group_a_fleet_listed_across_subscriptions():
    subscriptions = [f"0000000{s}-0000-0000-0000-000000000000" for s in range(3)]
    fleet = {f"aks-{i}": cluster_id(subscriptions[i % 3], "rg", f"aks-{i}") for i in range(12)}
    plan = batches(fleet, 4)
    assert plan == [
        ["aks-0", "aks-3", "aks-6", "aks-9"],  # configuration order within a subscription
        ["aks-1", "aks-4", "aks-7", "aks-10"],
        ["aks-2", "aks-5", "aks-8", "aks-11"],
    ]
