"""A per-cluster cap on concurrent probe pods, shared by every worker through Redis.

In a burst, checks of one cluster for different endpoints each start their own curl pods;
the cap keeps a wave of incidents from becoming a wave of pods on a cluster that is
already in trouble. A semaphore in Redis:

    aks-egress:probe-slots:{digest}   sorted set: one member per probe pod running on the
                                      cluster, scored by when its slot lapses; a worker
                                      killed mid-probe cannot hold a slot past that.

A slot lapses after the pod's own deadline plus a margin (Kubernetes ends the pod then;
the next check's leftover sweep deletes it). `digest` hashes the cluster's ARM id.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from bot.store import PREFIX

POLL_S = 0.25

# KEYS: the cluster's slots. ARGV: now, cap, token, lapse. 1 when a slot was taken.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[4] - ARGV[1]) + 1)
  return 1
end
return 0
"""


def slots_key(cluster_id: str) -> str:
    digest = hashlib.sha256(cluster_id.lower().encode()).hexdigest()[:32]
    return f"{PREFIX}:probe-slots:{digest}"


class ProbeSlots:
    def __init__(self, client: redis.Redis, cap: int, lapse_s: float):
        self.client, self.cap, self.lapse_s = client, cap, lapse_s

    @contextmanager
    def hold(self, cluster_id: str) -> Iterator[None]:
        """Wait for one of the cluster's slots, hold it while the pod runs, give it back.
        The wait is bounded by the check's job timeout."""
        key, token = slots_key(cluster_id), secrets.token_hex(8)
        while True:
            now = time.time()
            if self.client.eval(_TAKE, 1, key, now, self.cap, token, now + self.lapse_s):
                break
            time.sleep(POLL_S)
        try:
            yield
        finally:
            self.client.zrem(key, token)

    def in_use(self, cluster_id: str) -> int:
        key = slots_key(cluster_id)
        self.client.zremrangebyscore(key, "-inf", time.time())
        return int(self.client.zcard(key))
