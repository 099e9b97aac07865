"""Single flight: checks of the same cluster, endpoint, pod and mode asked within moments of
each other share one collection (the Azure reads and the probe pods).

In an outage every team asks at once; without this each of them would read the same ARM
resources and start the same curl pods. Redis coordinates it across worker processes:

    aks-egress:flight:{digest}          the leader's token while it collects; a short lease
                                        it renews, so a leader that dies (SIGKILL) frees
                                        its followers within one lease.
    aks-egress:flight:{digest}:result   the report JSON, when and by which incident it was
                                        collected; kept for the freshness window only.

The first run takes the lease and computes; the others poll for the result. A follower
whose leader's lease lapses without a result takes the lease itself (or, past its own wait,
computes alone), so nobody is stranded; a killed leader's own retry takes its lease over
at once. `digest` hashes the request, never user text.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis

from bot.engine import CheckRequest, Engine, NoteCallback, StepCallback
from bot.model import Report
from bot.runtime import Runtime
from bot.store import PREFIX

FRESH_S = 60  # how long a collected result may answer a new check
LEASE_S = 15  # a silent leader is given up after this long
POLL_S = 0.2

# KEYS: lease. ARGV: token, seconds. Renews or releases the lease only while it is ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: lease. ARGV: the incident's prefix, new token, seconds. Takes over a lease held by
# an earlier attempt of the same incident's check: it was killed (a job runs once at a time).
_TAKE_OVER = """
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Shared:
    """A result another incident collected: by whom, and how old it was when reused."""

    incident: str
    age_s: float

    def to_json(self) -> dict[str, Any]:
        return {"incident": self.incident, "ageS": round(self.age_s, 1)}


def flight_key(cluster_id: str, endpoint: str | None, pod: str | None, mode: str) -> str:
    raw = json.dumps([cluster_id.lower(), endpoint, pod, mode])
    return f"{PREFIX}:flight:{hashlib.sha256(raw.encode()).hexdigest()[:32]}"


class Flight:
    def __init__(
        self,
        client: redis.Redis,
        *,
        fresh_s: float = FRESH_S,
        lease_s: int = LEASE_S,
        wait_s: float = 600,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.fresh_s, self.lease_s, self.wait_s, self.clock = fresh_s, lease_s, wait_s, clock

    def run(
        self, key: str, incident: str, compute: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], Shared | None]:
        """The report for `key`: a fresh shared one, or `compute()`'s (then published)."""
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            shared = self._fresh(key)
            if shared is not None:
                return shared
            token = f"{incident}:{secrets.token_hex(8)}"
            if self.client.set(key, token, nx=True, ex=self.lease_s) or self.client.eval(
                _TAKE_OVER, 1, key, f"{incident}:", token, self.lease_s
            ):
                return self._lead(key, token, incident, compute), None
            time.sleep(POLL_S)
        return self.publish(key, incident, compute()), None  # waited long enough: alone

    def _fresh(self, key: str) -> tuple[dict[str, Any], Shared] | None:
        raw = self.client.get(f"{key}:result")
        if raw is None:
            return None
        data = json.loads(raw)
        age = max(0.0, self.clock() - float(data["at"]))
        if age > self.fresh_s:
            return None
        return data["report"], Shared(incident=str(data["incident"]), age_s=age)

    def _lead(
        self, key: str, token: str, incident: str, compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_s / 3):
                self.client.eval(_RENEW, 1, key, token, self.lease_s)

        renewer = threading.Thread(target=renew, name="flight-lease", daemon=True)
        renewer.start()
        try:
            return self.publish(key, incident, compute())
        finally:
            done.set()
            renewer.join()
            # A failed leader lets its followers take over at once (they compute alone).
            self.client.eval(_RELEASE, 1, key, token)

    def publish(self, key: str, incident: str, report: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"report": report, "at": self.clock(), "incident": incident})
        self.client.set(f"{key}:result", body, ex=max(1, int(self.fresh_s)))
        return report


def check(
    runtime: Runtime,
    client: redis.Redis,
    incident: str,
    request: CheckRequest,
    on_steps: StepCallback,
    on_note: NoteCallback,
    *,
    afresh: bool,
) -> tuple[Report, Shared | None]:
    """Run the engine once for every simultaneous incident asking the same; `afresh`
    (a Re-run) never reuses a result, but still offers its own to the others."""
    target = request.endpoint.url if request.endpoint else None
    key = flight_key(request.cluster_id, target, request.pod, request.mode)
    flight = Flight(client)

    def compute() -> dict[str, Any]:
        return Engine(runtime).check(request, on_steps=on_steps, on_note=on_note).to_json()

    if afresh:
        data, shared = flight.publish(key, incident, compute()), None
    else:
        data, shared = flight.run(key, incident, compute)
    report = replace(Report.from_json(data), steps=tuple(s.name for s in request.steps))
    if shared is not None:  # its counts are the shared collection's, and say so
        report.stats = replace(report.stats, shared_from=shared.incident)
        steps = tuple(s.name for s in request.steps)
        on_steps(steps, report.findings)
    return report, shared
