"""A bypass's record, its route-table locks and the audit stream, in Redis.

Keys written here (listed in bot/store.py with the others):

    aks-egress:bypass:{incident}          JSON record of the incident's bypass: who asked and
                                          approved, the plan, the route tables as saved
                                          (with ETags), the routes added, status, expiry.
                                          Kept for the retention period.
    aks-egress:bypass-lock:{table key}    which incident holds a route table, and until when:
                                          one bypass per route table at a time. Set NX;
                                          released by the revert; expires an hour after the
                                          bypass would have, should everything else fail.
    aks-egress:bypasses-active            sorted set: incident -> expiry (epoch seconds) of
                                          every bypass whose routes are in Azure; what the
                                          reconciler reverts once past expiry.
    aks-egress:audit                      stream: one entry per request, approval, refusal,
                                          apply and revert (who, when, route table, before
                                          and after bodies); `aks-egress audit` exports it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.typing import EncodableT

from bot import armid
from bot.store import PREFIX, Store, guard_redis

Json = dict[str, Any]
ACTIVE = f"{PREFIX}:bypasses-active"
AUDIT = f"{PREFIX}:audit"
AUDIT_MAXLEN = 100_000
LOCK_MARGIN_S = 3600

# Statuses of a record, in the order they happen.
PLANNED, APPROVED, APPLIED, REVERTED, DRY_RUN, REFUSED = (
    "planned",
    "approved",
    "applied",
    "reverted",
    "dry-run",
    "refused",
)


@dataclass
class SavedTable:
    """A route table as read before the bypass, and the routes the bot added to it."""

    id: str
    body: Json
    added: list[str] = field(default_factory=list)  # route names
    etag_after_apply: str | None = None


@dataclass
class BypassRecord:
    incident: str
    alias: str
    cluster_id: str
    endpoint: str
    requester: str
    plan: Json
    minutes: int
    status: str = PLANNED
    before: str | None = None
    after: str | None = None
    verdict: str | None = None
    approver: str | None = None
    dry_run: bool = False
    expires_at: float | None = None  # epoch seconds, once applied
    tables: list[SavedTable] = field(default_factory=list)
    restored: bool | None = None
    notes: list[str] = field(default_factory=list)
    channel: str | None = None
    pools: list[str | None] = field(default_factory=list)  # the pools probed before
    suspects: list[str] = field(default_factory=list)  # the check's errors on the path

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BypassRecord:
        data = json.loads(text)
        data["tables"] = [SavedTable(**t) for t in data.get("tables") or []]
        return cls(**data)


@dataclass(frozen=True)
class Holder:
    """Who holds a route table's lock."""

    incident: str
    until: float

    def describe(self) -> str:
        at = datetime.fromtimestamp(self.until, UTC).strftime("%H:%M UTC")
        return f"incident {self.incident} holds it until {at}"


class BypassState:
    def __init__(self, store: Store):
        self.store = store
        self.redis = store.redis

    # -- the record ---------------------------------------------------------------------

    def _key(self, incident: str) -> str:
        return f"{PREFIX}:bypass:{incident}"

    def get(self, incident: str) -> BypassRecord | None:
        with guard_redis():
            text = self.redis.get(self._key(incident))
        return BypassRecord.from_json(str(text)) if text else None

    def save(self, record: BypassRecord) -> None:
        with guard_redis(), self.redis.pipeline() as pipe:
            pipe.set(self._key(record.incident), record.to_json(), ex=self.store.retention_s)
            if record.status == APPLIED and record.expires_at is not None:
                pipe.zadd(ACTIVE, {record.incident: record.expires_at})
            elif record.status in (REVERTED, DRY_RUN, REFUSED):
                pipe.zrem(ACTIVE, record.incident)
            pipe.execute()

    def save_inactive(self, incident: str) -> None:
        """Forget an expiry whose record is gone or no longer applied."""
        with guard_redis():
            self.redis.zrem(ACTIVE, incident)

    def due(self, now: float | None = None) -> list[str]:
        """Incidents whose bypass is applied and past its expiry."""
        with guard_redis():
            due = self.redis.zrangebyscore(ACTIVE, "-inf", now or time.time())
        return [str(i) for i in due]

    def active(self) -> list[str]:
        with guard_redis():
            active = self.redis.zrange(ACTIVE, 0, -1)
        return [str(i) for i in active]

    # -- one bypass per route table -------------------------------------------------------

    def _lock_key(self, table_id: str) -> str:
        return f"{PREFIX}:bypass-lock:{armid.key(table_id)}"

    def lock(self, tables: list[str], incident: str, until: float) -> tuple[str, Holder] | None:
        """Take every table's lock, or none: (the table, its holder) of one taken already."""
        ttl = max(1, int(until - time.time()) + LOCK_MARGIN_S)
        value = json.dumps({"incident": incident, "until": until})
        taken: list[str] = []
        with guard_redis():
            for table in tables:
                key = self._lock_key(table)
                if self.redis.set(key, value, nx=True, ex=ttl):
                    taken.append(key)
                    continue
                current = self._holder(key)
                if current is not None and current.incident == incident:
                    continue
                if taken:
                    self.redis.delete(*taken)
                return table, current or Holder("?", 0.0)
        return None

    def holder(self, table_id: str) -> Holder | None:
        with guard_redis():
            return self._holder(self._lock_key(table_id))

    def _holder(self, key: str) -> Holder | None:
        current = self.redis.get(key)
        if not current:
            return None
        data: Json = json.loads(str(current))
        return Holder(str(data["incident"]), float(data["until"]))

    def unlock(self, tables: list[str], incident: str) -> None:
        with guard_redis():
            for table in tables:
                key = self._lock_key(table)
                current = self.redis.get(key)
                if current and json.loads(current).get("incident") == incident:
                    self.redis.delete(key)

    # -- the audit stream -----------------------------------------------------------------

    def audit(
        self,
        action: str,
        who: str,
        incident: str,
        route_table: str | None = None,
        before: Any = None,
        after: Any = None,
        detail: str = "",
    ) -> None:
        fields: dict[EncodableT, EncodableT] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "action": action,
            "who": who,
            "incident": incident,
            "routeTable": route_table or "",
            "before": json.dumps(before) if before is not None else "",
            "after": json.dumps(after) if after is not None else "",
            "detail": detail,
        }
        with guard_redis():
            self.redis.xadd(AUDIT, fields, maxlen=AUDIT_MAXLEN, approximate=True)

    def audit_entries(self, since: datetime | None = None) -> list[Json]:
        """The audit stream from `since` (its stream ids are milliseconds since the epoch)."""
        start = f"{int(since.timestamp() * 1000)}-0" if since else "-"
        with guard_redis():
            entries = self.redis.xrange(AUDIT, min=start, max="+") or []
        out = []
        for entry_id, fields in entries:
            row: Json = {"id": entry_id} | {str(k): v for k, v in (fields or {}).items()}
            for key in ("before", "after"):
                row[key] = json.loads(row[key]) if row.get(key) else None
            out.append(row)
        return out
