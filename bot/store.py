"""Incident state in Redis: what was asked, what was found, which Slack messages show it.

Every key this module writes, and why it exists:

    aks-egress:incident:{id}               hash: request (JSON), status, resolved, `queued`
                                           (runs admitted and not yet started), and the
                                           Slack timestamps of the messages that show it
                                           (`ts:root`, `ts:{run}:checklist`, `ts:{run}:summary`,
                                           `ts:{run}:reply:{key}`). Timestamps live here so a
                                           retried job updates messages instead of repeating
                                           them. `queued_place`: the place in the queue its
                                           root message shows while it waits (bot/queued.py).
                                           `admitted:{run}`: that run was admitted, so a
                                           transaction resent after a lost reply is known.
                                           Expires after the retention period.
    aks-egress:incident:{id}:reports       hash: run number -> report JSON (the timeline);
                                           the oldest are dropped past the reports cap.
    aks-egress:thread:{channel}:{ts}       incident id of a thread, so mentions and buttons
                                           in it act on that incident.
    aks-egress:event:{event_id}            set once per Events API event: a Slack retry of the
                                           same event_id is acked and dropped (1 hour).
    aks-egress:submit:{channel}:{user}:{h} incident id of a slash command seen moments ago: a
                                           double submit points to it (a few seconds).
    aks-egress:rate:{user}:{minute}        per-user request counter for rate limiting.
    aks-egress:rate-cluster:{alias}:{minute}
                                           per-cluster request counter: one cluster is not
                                           probed by everyone at once (2 minutes).
    aks-egress:interaction:{sha256}        set once per interactive payload (button, modal):
                                           a replay of the same signed body within Slack's
                                           5-minute window is acked and dropped (6 minutes).
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

INTERACTION_TTL_S = 360  # Slack accepts a signature for 5 minutes; a minute's margin

# The limits every entry point shares (slash command, mentions, buttons, modals, re-runs,
# `summary`), checked in one script so that a burst cannot slip between two reads.
# KEYS: user rate, cluster rate, queue list. ARGV: per-user, per-cluster, queue maximum.
_LIMITS = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
if count > tonumber(ARGV[1]) then
  return 'rate_limited'
end
local cluster = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 120)
if cluster > tonumber(ARGV[2]) then
  return 'cluster'
end
if KEYS[3] ~= '' and redis.call('LLEN', KEYS[3]) > tonumber(ARGV[3]) then
  return 'queue'
end
return nil
"""
# KEYS: the limits' three, double-submit claim, incident. ARGV: the limits' three, incident
# id, claim TTL, request JSON, retention, the set of rq workers listening to the queue (read
# only, and so not a declared key: the app's Redis user may read it, not write it).
# Returns {verdict, detail, place}: the place is the waiting jobs (the new one pushed just
# before, in the same transaction) less the idle workers; 0 or less means it starts at
# once. The workers' own hashes are read by name (one Redis).
_ADMIT = (
    """
local function limits()
"""
    + _LIMITS
    + """
end
local limited = limits()
if limited then
  return {limited, ''}
end
if not redis.call('SET', KEYS[4], ARGV[4], 'NX', 'EX', ARGV[5]) then
  return {'running', redis.call('GET', KEYS[4])}
end
redis.call('HSET', KEYS[5], 'request', ARGV[6], 'status', 'queued', 'runs', 0, 'queued', 1)
redis.call('EXPIRE', KEYS[5], ARGV[7])
local idle = 0
if ARGV[8] ~= '' then
  for _, worker in ipairs(redis.call('SMEMBERS', ARGV[8])) do
    if redis.call('HGET', worker, 'state') == 'idle' then idle = idle + 1 end
  end
end
local waiting = 0
if KEYS[3] ~= '' then waiting = redis.call('LLEN', KEYS[3]) end
return {'admitted', ARGV[4], waiting - idle}
"""
)
# Another run of an incident. KEYS: the limits' three, incident. ARGV: the limits' three,
# runs an incident may have queued (0: this request queues nothing, e.g. `summary`), the
# run it queues ('' for none). A run already admitted is a resend of the same transaction
# after a lost reply: 'retried', counted nowhere again.
_ADMIT_RUN = (
    """
local function limits()
"""
    + _LIMITS
    + """
end
local admitted = 'admitted:' .. ARGV[5]
if ARGV[5] ~= '' and redis.call('HEXISTS', KEYS[4], admitted) == 1 then
  return 'retried'
end
local limited = limits()
if limited then
  return limited
end
if tonumber(ARGV[4]) > 0 then
  if tonumber(redis.call('HGET', KEYS[4], 'queued') or '0') >= tonumber(ARGV[4]) then
    return 'incident'
  end
  redis.call('HINCRBY', KEYS[4], 'queued', 1)
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[4], admitted, 1)
end
return 'admitted'
"""
)
# KEYS: incident. A run has started: one fewer waiting (never below zero).
_STARTED = """
if tonumber(redis.call('HGET', KEYS[1], 'queued') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'queued', -1)
end
"""
# KEYS: reports hash. ARGV: run, report JSON, retention, cap. Keeps the newest `cap` runs.
_SAVE_REPORT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local runs = redis.call('HKEYS', KEYS[1])
local extra = #runs - tonumber(ARGV[4])
if extra > 0 then
  table.sort(runs, function(a, b) return tonumber(a) < tonumber(b) end)
  for i = 1, extra do
    redis.call('HDEL', KEYS[1], runs[i])
  end
end
"""


@dataclass(frozen=True)
class Limits:
    """How much any user, cluster and incident may ask of the bot (see README)."""

    per_user: int = 10  # checks a user may start per minute
    per_cluster: int = 30  # checks of one cluster per minute, from everyone
    queue: int = 200  # jobs waiting in the queue before new work is refused as busy
    runs_per_incident: int = 3  # runs of one incident waiting at once
    reports_per_incident: int = 20  # reports kept per incident (the newest)


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
    busy: str | None = None  # "cluster", "queue" or "incident": which limit was reached
    place: int = 0  # its place in the queue when it cannot start at once (1: next)
    retried: bool = False  # admitted by an earlier send of the same transaction


RETRIED = "retried"  # Store.admit_run: this run was admitted by an earlier send


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
        with guard_redis(), self.redis.pipeline() as pipe:
            pipe.hset(self._key(incident_id), f"ts:{name}", ts)
            pipe.hdel(self._key(incident_id), f"posting:{name}")
            pipe.execute()

    def posting(self, incident_id: str, name: str) -> None:
        """A message is being posted: until its ts is remembered, a process killed in
        between leaves this mark, and the next writer looks for the message first."""
        with guard_redis():
            self.redis.hset(self._key(incident_id), f"posting:{name}", "1")

    def was_posting(self, incident_id: str, name: str) -> bool:
        with guard_redis():
            return bool(self.redis.hexists(self._key(incident_id), f"posting:{name}"))

    def save_report(
        self, incident_id: str, run: int, report: dict[str, Any], cap: int = 20
    ) -> None:
        """One report per run: a retried run overwrites its own, never adds a second; past
        `cap` runs the oldest reports are dropped."""
        key = f"{self._key(incident_id)}:reports"
        with guard_redis():
            self.redis.eval(
                _SAVE_REPORT, 1, key, str(run), json.dumps(report), self.retention_s, cap
            )

    def run_started(self, incident_id: str) -> None:
        with guard_redis():
            self.redis.eval(_STARTED, 1, self._key(incident_id))

    def admit_run(
        self,
        pipe: Pipeline,
        incident: Incident,
        user: str,
        limits: Limits,
        queue_key: str,
        run: int | None = None,
    ) -> str | None:
        """Another request on an incident (a mention, a button, a modal, `summary`) under
        the same limits as a new check: None when admitted, else which limit refused it
        ("rate_limited", "cluster", "queue", "incident"), or RETRIED: admitted by an
        earlier send of the same transaction. `run` is the run it queues (None: nothing,
        e.g. `summary`); `pipe` carries that run's job, which its owner takes back on a
        refusal and keeps once on RETRIED."""
        queues_work = run is not None
        minute = int(time.time() // 60)
        with guard_redis():
            pipe.eval(
                _ADMIT_RUN,
                4,
                f"{PREFIX}:rate:{user}:{minute}",
                f"{PREFIX}:rate-cluster:{incident.request.alias}:{minute}",
                queue_key if queues_work else "",
                self._key(incident.id),
                limits.per_user,
                limits.per_cluster,
                limits.queue,
                limits.runs_per_incident if queues_work else 0,
                "" if run is None else run,
            )
            verdict = _text(pipe.execute()[-1])
        return None if verdict == "admitted" else verdict

    def first_interaction(self, body: bytes | str) -> bool:
        """True the first time this exact interactive payload is seen; False for a replay."""
        raw = body.encode() if isinstance(body, str) else body
        digest = hashlib.sha256(raw).hexdigest()[:32]
        with guard_redis():
            return bool(
                self.redis.set(f"{PREFIX}:interaction:{digest}", "1", nx=True, ex=INTERACTION_TTL_S)
            )

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
        limits: Limits,
        queue_keys: tuple[str, str] = ("", ""),
    ) -> Admission:
        """Rate limit, double-submit check and the new incident, atomically: a refused
        request leaves no incident behind, so nothing can start work for it.

        `pipe` holds the writes that go with an admission (the listener's queued job); they
        share this one round trip whatever the verdict, so their owner takes them back on
        a refusal.
        """
        minute = int(time.time() // 60)
        rate = f"{PREFIX}:rate:{request.user}:{minute}"
        cluster_rate = f"{PREFIX}:rate-cluster:{request.alias}:{minute}"
        digest = hashlib.sha256(text.strip().lower().encode()).hexdigest()[:16]
        claim = f"{PREFIX}:submit:{request.channel}:{request.user}:{digest}"
        with guard_redis():
            pipe.eval(
                _ADMIT,
                5,
                rate,
                cluster_rate,
                queue_keys[0],
                claim,
                self._key(incident_id),
                limits.per_user,
                limits.per_cluster,
                limits.queue,
                incident_id,
                DOUBLE_SUBMIT_S,
                json.dumps(asdict(request)),
                self.retention_s,
                queue_keys[1],
            )
            verdict, detail, *place = pipe.execute()[-1]
        if _text(verdict) == "rate_limited":
            return Admission(rate_limited=True)
        if _text(verdict) in ("cluster", "queue"):
            return Admission(busy=_text(verdict))
        if _text(verdict) == "running" and _text(detail) != incident_id:
            return Admission(running=_text(detail))
        if _text(verdict) == "running":
            # The claim is this request's own: the connection broke after Redis applied
            # the transaction, and redis-py sent it again (services.BRIEF). Admitted once;
            # the retry pushed its job a second time.
            return Admission(incident=Incident(id=incident_id, request=request), retried=True)
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
