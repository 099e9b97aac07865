"""Incident state in Redis: what was asked, what was found, which Slack messages show it.

Every key this module writes, and why it exists:

    aks-egress:incident:{id}               hash: request (JSON), status, resolved, and the
                                           Slack timestamps of the messages that show it
                                           (`ts:root`, `ts:{run}:checklist`, `ts:{run}:summary`,
                                           `ts:{run}:reply:{key}`). Timestamps live here so a
                                           retried job updates messages instead of repeating
                                           them. `queued_place`: the place in the queue its
                                           root message shows while it waits (bot/queued.py).
                                           Expires after the retention period.
    aks-egress:incident:{id}:reports       hash: run number -> report JSON (the timeline).
    aks-egress:thread:{channel}:{ts}       incident id of a thread, so mentions and buttons
                                           in it act on that incident.
    aks-egress:event:{event_id}            set once per Events API event: a Slack retry of the
                                           same event_id is acked and dropped (1 hour).
    aks-egress:submit:{channel}:{user}:{h} incident id of a slash command seen moments ago: a
                                           double submit points to it (a few seconds).
    aks-egress:rate:{user}:{minute}        per-user request counter for rate limiting.
    aks-egress:summary:{channel}:{day}     ts of the day's SNAT summary in that channel: it is
                                           posted once (40 days).
    aks-egress:summary-lease:{channel}:{day}
                                           who is posting it now; expires so a run that died
                                           mid-post is taken over (5 minutes).
    aks-egress:snat-peak:{alias}:{day}     a cluster's peak SNAT use that day, for the trend.
    aks-egress:summary-plan:{channel}:{day}
                                           set by the cron run that split a large fleet's
                                           summary into batch jobs, so later runs do not
                                           split it again; expires (1 hour) so a run that
                                           died is split again, reusing stored batches.
    aks-egress:summary-batch:{channel}:{day}:{index}
                                           one batch's cluster summaries (JSON list): the
                                           final job assembles the post from them, and a
                                           retried batch does not make the others read
                                           Azure again (1 day).

The appliance bypass writes its own keys in bot/bypass/state.py, documented there:
`aks-egress:bypass:{incident}` (the record), `aks-egress:bypass-lock:{route table}` (one
bypass per route table), `aks-egress:bypasses-active` (expiries, for the reconciler) and
the `aks-egress:audit` stream.

RQ owns the `rq:*` keys of its queue. Calls use short socket timeouts so an unreachable
Redis is reported to the user at once instead of after a long hang.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from redis.client import Pipeline

PREFIX = "aks-egress"
EVENT_TTL_S = 3600
DOUBLE_SUBMIT_S = 10
SUMMARY_LEASE_S = 300
SUMMARY_PLAN_S = 3600
SUMMARY_BATCH_S = 86400

# KEYS: rate counter, double-submit claim, incident, the rq queue, the set of rq workers
# listening to it. ARGV: per-minute limit, incident id, claim TTL, request JSON, retention.
# Returns {verdict, the running incident's id, its place in the queue}: the waiting jobs
# (the new one pushed just before, in the same transaction) less the idle workers; 0 or
# less means it starts at once. The workers' own hashes are read by name (one Redis).
_ADMIT = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
if count > tonumber(ARGV[1]) then
  return {'rate_limited', ''}
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then
  return {'running', redis.call('GET', KEYS[2])}
end
redis.call('HSET', KEYS[3], 'request', ARGV[4], 'status', 'queued', 'runs', 0)
redis.call('EXPIRE', KEYS[3], ARGV[5])
local idle = 0
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if redis.call('HGET', worker, 'state') == 'idle' then idle = idle + 1 end
end
return {'admitted', ARGV[2], redis.call('LLEN', KEYS[4]) - idle}
"""


class StoreUnavailable(Exception):
    """Redis cannot be reached: the user is told the state store is unavailable."""


@dataclass(frozen=True)
class Request:
    """What a user asked for, as the listener validated it."""

    alias: str
    cluster_id: str
    endpoint: str | None
    pod: str | None
    channel: str
    user: str
    created: float = field(default_factory=time.time)

    @property
    def created_iso(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).isoformat(timespec="seconds")


@dataclass
class Incident:
    id: str
    request: Request
    status: str = "queued"
    resolved: bool = False
    ts: dict[str, str] = field(default_factory=dict)
    runs: int = 0


@dataclass(frozen=True)
class Admission:
    """What became of a new request: an incident, or why not."""

    incident: Incident | None = None
    rate_limited: bool = False
    running: str | None = None  # the incident an identical request just started
    place: int = 0  # its place in the queue when it cannot start at once (1: next)


def new_incident_id() -> str:
    return f"AKE-{secrets.token_hex(3).upper()}"


class Store:
    def __init__(self, client: redis.Redis, retention_days: int = 30):
        self.redis = client
        self.retention_s = retention_days * 86400

    @classmethod
    def from_url(cls, url: str, retention_days: int = 30) -> Store:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=2.0, decode_responses=True
        )
        return cls(client, retention_days)

    # -- incidents ----------------------------------------------------------------

    def _key(self, incident_id: str) -> str:
        return f"{PREFIX}:incident:{incident_id}"

    def get(self, incident_id: str) -> Incident | None:
        with guard_redis():
            data = self.redis.hgetall(self._key(incident_id))
        if not data or "request" not in data:
            return None
        return Incident(
            id=incident_id,
            request=Request(**json.loads(data["request"])),
            status=data.get("status", "queued"),
            resolved=data.get("resolved") == "1",
            ts={k[3:]: v for k, v in data.items() if k.startswith("ts:")},
            runs=int(data.get("runs", 0)),
        )

    def set_status(self, incident_id: str, status: str) -> None:
        with guard_redis():
            self.redis.hset(self._key(incident_id), "status", status)

    def mark_resolved(self, incident_id: str) -> None:
        with guard_redis():
            self.redis.hset(self._key(incident_id), mapping={"resolved": "1", "status": "resolved"})

    def queued_place(self, incident_id: str) -> int | None:
        with guard_redis():
            place = self.redis.hget(self._key(incident_id), "queued_place")
        return int(place) if place else None

    def set_queued_place(self, incident_id: str, place: int) -> None:
        with guard_redis():
            self.redis.hset(self._key(incident_id), "queued_place", place)

    def next_run(self, incident_id: str) -> int:
        """A new run number for a re-check or probe in the same thread."""
        with guard_redis():
            return int(self.redis.hincrby(self._key(incident_id), "runs", 1))

    def message_ts(self, incident_id: str, name: str) -> str | None:
        with guard_redis():
            return self.redis.hget(self._key(incident_id), f"ts:{name}")

    def remember_ts(self, incident_id: str, name: str, ts: str) -> None:
        with guard_redis():
            self.redis.hset(self._key(incident_id), f"ts:{name}", ts)

    def save_report(self, incident_id: str, run: int, report: dict[str, Any]) -> None:
        """One report per run: a retried run overwrites its own, never adds a second."""
        key = f"{self._key(incident_id)}:reports"
        with guard_redis(), self.redis.pipeline() as pipe:
            pipe.hset(key, str(run), json.dumps(report))
            pipe.expire(key, self.retention_s)
            pipe.execute()

    def report(self, incident_id: str, run: int) -> dict[str, Any] | None:
        """One run's report (None: the run saved none, or it expired)."""
        with guard_redis():
            stored = self.redis.hget(f"{self._key(incident_id)}:reports", str(run))
        return json.loads(stored) if stored else None

    def reports(self, incident_id: str) -> list[dict[str, Any]]:
        """Every run's report, in run order."""
        with guard_redis():
            stored = self.redis.hgetall(f"{self._key(incident_id)}:reports")
        return [json.loads(stored[k]) for k in sorted(stored, key=int)]

    # -- threads, dedupe, rate limits ---------------------------------------------

    def link_thread(self, channel: str, ts: str, incident_id: str) -> None:
        with guard_redis():
            self.redis.set(f"{PREFIX}:thread:{channel}:{ts}", incident_id, ex=self.retention_s)

    def incident_for_thread(self, channel: str, ts: str) -> str | None:
        with guard_redis():
            return self.redis.get(f"{PREFIX}:thread:{channel}:{ts}")

    def first_delivery(self, event_id: str) -> bool:
        """True the first time an Events API event_id is seen; False for Slack's retries."""
        with guard_redis():
            return bool(self.redis.set(f"{PREFIX}:event:{event_id}", "1", nx=True, ex=EVENT_TTL_S))

    def admit(
        self,
        pipe: Pipeline,
        incident_id: str,
        request: Request,
        text: str,
        per_minute: int,
        queue_keys: tuple[str, str],
    ) -> Admission:
        """Rate limit, double-submit check and the new incident, atomically: a refused
        request leaves no incident behind, so nothing can start work for it.

        `pipe` holds the writes that go with an admission (the listener's queued job); they
        share this one round trip whatever the verdict, so their owner takes them back on
        a refusal.
        """
        rate = f"{PREFIX}:rate:{request.user}:{int(time.time() // 60)}"
        digest = hashlib.sha256(text.strip().lower().encode()).hexdigest()[:16]
        claim = f"{PREFIX}:submit:{request.channel}:{request.user}:{digest}"
        with guard_redis():
            pipe.eval(
                _ADMIT,
                5,
                rate,
                claim,
                self._key(incident_id),
                *queue_keys,
                per_minute,
                incident_id,
                DOUBLE_SUBMIT_S,
                json.dumps(asdict(request)),
                self.retention_s,
            )
            verdict, detail, *place = pipe.execute()[-1]
        if _text(verdict) == "rate_limited":
            return Admission(rate_limited=True)
        if _text(verdict) == "running":
            return Admission(running=_text(detail))
        return Admission(incident=Incident(id=incident_id, request=request), place=max(0, *place))

    # -- the daily summary ------------------------------------------------------------

    def summary_ts(self, channel: str, day: str) -> str | None:
        with guard_redis():
            return self.redis.get(f"{PREFIX}:summary:{channel}:{day}")

    def take_summary_lease(self, channel: str, day: str, ttl_s: int = SUMMARY_LEASE_S) -> bool:
        with guard_redis():
            key = f"{PREFIX}:summary-lease:{channel}:{day}"
            return bool(self.redis.set(key, "1", nx=True, ex=ttl_s))

    def remember_summary_ts(self, channel: str, day: str, ts: str) -> None:
        with guard_redis():
            self.redis.set(f"{PREFIX}:summary:{channel}:{day}", ts, ex=40 * 86400)

    def take_summary_plan(self, channel: str, day: str) -> bool:
        """True for the one cron run that splits the day's summary into batches."""
        with guard_redis():
            key = f"{PREFIX}:summary-plan:{channel}:{day}"
            return bool(self.redis.set(key, "1", nx=True, ex=SUMMARY_PLAN_S))

    def summary_batch(self, channel: str, day: str, index: int) -> list[Any] | None:
        with guard_redis():
            value = self.redis.get(f"{PREFIX}:summary-batch:{channel}:{day}:{index}")
        return json.loads(value) if value is not None else None

    def remember_summary_batch(
        self, channel: str, day: str, index: int, clusters: list[Any]
    ) -> None:
        with guard_redis():
            key = f"{PREFIX}:summary-batch:{channel}:{day}:{index}"
            self.redis.set(key, json.dumps(clusters), ex=SUMMARY_BATCH_S)

    def snat_peak(self, alias: str, day: str) -> float | None:
        with guard_redis():
            value = self.redis.get(f"{PREFIX}:snat-peak:{alias}:{day}")
        return float(value) if value is not None else None

    def remember_snat_peak(self, alias: str, day: str, peak: float) -> None:
        with guard_redis():
            self.redis.set(f"{PREFIX}:snat-peak:{alias}:{day}", str(peak), ex=40 * 86400)

    def ping(self) -> None:
        with guard_redis():
            self.redis.ping()


def _text(value: bytes | str) -> str:
    """Replies arrive as bytes on the queue's connection, as str on ours."""
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def guard_redis() -> Iterator[None]:
    """Redis errors, wherever they come from (store or queue), as StoreUnavailable."""
    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable(str(exc)) from exc
