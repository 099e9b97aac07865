"""The appliance bypass against the sandbox (real azure-mgmt-network and kubernetes clients)
and a private Redis: plan, apply, probe, revert, the locks, the reconciler, the audit.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from azure.core.exceptions import HttpResponseError

from bot.bypass import routes, run
from bot.bypass.state import APPLIED, REVERTED, BypassState
from bot.cli import main
from bot.collect.probe import ProbeSettings
from bot.endpoint import parse_endpoint
from bot.redisserver import RedisServer
from bot.runtime import Runtime, attach
from bot.sandbox.server import Sandbox
from bot.sandbox.world import World, load_world, parse_world
from bot.slack.bypass_messages import plan_message
from bot.store import Store
from tests.helpers import WORLDS

WORLD = WORLDS / "udr-firewall-bypass.yaml"
ALIAS, URL = "batch-prod", "http://files.example.org"
TABLE = "rt-aks-batch-weu"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def state(redis_server: RedisServer) -> BypassState:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()  # our private server only
    return BypassState(Store(client))


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(WORLD)


def private(world: World) -> World:
    """The same world with defaultOutboundAccess false on the node subnet."""
    data = copy.deepcopy(world.data)
    vnet = next(b for b in data["arm"] if b["name"] == "vnet-spoke-batch-weu")
    vnet["properties"]["subnets"][0]["properties"]["defaultOutboundAccess"] = False
    return parse_world(data, "private")


def table_body(sandbox: Sandbox) -> dict[str, Any]:
    body = next(b for b in sandbox.world.data["arm"] if b["name"] == TABLE)
    return copy.deepcopy(body)


def without_etags(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_etags(v) for k, v in value.items() if k != "etag"}
    if isinstance(value, list):
        return [without_etags(v) for v in value]
    return value


def writes(sandbox: Sandbox) -> list[tuple[str, str, int]]:
    """PUT/PATCH/DELETE answered by ARM (POSTs are reads: listClusterUserCredential)."""
    return [
        (c.method, c.path, c.status)
        for c in sandbox.calls()
        if c.method in ("PUT", "PATCH", "DELETE")
    ]


def prepare(runtime: Runtime, incident: str, minutes: int = 1) -> run.BypassRecord:
    cluster_id = runtime.aliases[ALIAS]
    return run.prepare(
        runtime, ALIAS, cluster_id, parse_endpoint(URL), incident, "U0ALICE", minutes
    )


def test_cli_proves_the_appliance_and_restores(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bypass", ALIAS, "--endpoint", URL, "--minutes", "1", "--yes", "--json"]
    started = time.monotonic()
    assert main([*argv, "--world", str(WORLD)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert time.monotonic() - started < 45  # the proof, not --minutes, decides how long
    assert out["verdict"] == "BYPASS_PROVES_APPLIANCE" and out["restored"] is True
    assert (out["before"], out["after"]) == ("PROBE_FIREWALL_DENY_HTTP", "PROBE_OK")
    [table] = out["plan"]["routeTables"]
    assert table["id"].endswith(f"/routeTables/{TABLE}")
    assert table["add"][0]["addressPrefix"] == "93.184.215.14/32"
    assert table["add"][0]["nextHopType"] == "Internet"
    assert table["add"][0]["name"].startswith("aks-egress-bypass-ake-")


def test_cli_private_subnet_is_not_possible(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "private.json"
    path.write_text(json.dumps(private(world).data))
    argv = ["bypass", ALIAS, "--endpoint", URL, "--minutes", "1", "--yes", "--json"]
    assert main([*argv, "--world", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "BYPASS_NOT_POSSIBLE" and not out["plan"]["feasible"]
    assert out["plan"]["routeTables"] == [] and "cannot work" in out["plan"]["reason"]


def test_private_subnet_writes_nothing(world: World, state: BypassState) -> None:
    with Sandbox(private(world)) as sandbox:
        runtime = attach(sandbox, ProbeSettings())
        record = prepare(runtime, "AKE-000001")
        outcome = run.run_foreground(runtime, record, state, "U0ALICE")
        assert outcome.finding is not None and outcome.finding.code == "BYPASS_NOT_POSSIBLE"
        assert writes(sandbox) == [] and sandbox.world.writes == []
        assert state.active() == []
        # In Slack: the "this test cannot work" plan, and no Approve button to press.
        posted = json.dumps(plan_message(record, ("S0APPROVE1",), dry_run=False))
        assert "cannot test anything" in posted and "bypass_approve" not in posted


def test_apply_probe_revert_leaves_the_table_as_it_was(world: World, state: BypassState) -> None:
    with Sandbox(world) as sandbox:
        original = table_body(sandbox)
        runtime = attach(sandbox, ProbeSettings())
        record = prepare(runtime, "AKE-000002")
        outcome = run.run_foreground(runtime, record, state, "U0ALICE")
        assert outcome.finding.code == "BYPASS_PROVES_APPLIANCE"
        assert record.status == REVERTED and record.restored is True
        assert without_etags(table_body(sandbox)) == without_etags(original)
        assert [(m, s) for m, _, s in writes(sandbox)] == [("PUT", 201), ("DELETE", 200)]
        assert [(w["method"], w["status"]) for w in sandbox.world.writes] == [
            ("PUT", 201),
            ("DELETE", 200),
        ]
        actions = [e["action"] for e in state.audit_entries()]
        assert actions == ["request", "apply", "revert"]
        apply_entry = state.audit_entries()[1]
        assert apply_entry["who"] == "U0ALICE" and apply_entry["routeTable"].endswith(TABLE)
        added = {r["name"] for r in apply_entry["after"]["properties"]["routes"]}
        assert any(n.startswith("aks-egress-bypass-ake-000002") for n in added)
        assert state.active() == []
        # `aks-egress audit --json` exports the same stream
        assert state.audit_entries(since=None)[0]["incident"] == "AKE-000002"


def test_one_bypass_per_table_and_the_reconciler_reverts_after_a_crash(
    world: World, state: BypassState
) -> None:
    with Sandbox(world) as sandbox:
        original = table_body(sandbox)
        runtime = attach(sandbox, ProbeSettings())
        first = prepare(runtime, "AKE-000003")
        second = prepare(runtime, "AKE-000004")  # planned while the table was free
        run.apply(runtime, first, state, "U0ALICE")  # ... and the process dies here
        with pytest.raises(run.BypassBusy) as caught:
            run.apply(runtime, second, state, "U0BOB")
        assert "AKE-000003" in str(caught.value) and "until" in str(caught.value)
        assert state.get("AKE-000003").status == APPLIED  # type: ignore[union-attr]
        assert run.reconcile(runtime, state, now=time.time()) == []  # not yet expired
        later = time.time() + 61
        assert run.reconcile(runtime, state, now=later) == ["AKE-000003"]
        assert state.get("AKE-000003").status == REVERTED  # type: ignore[union-attr]
        assert without_etags(table_body(sandbox)) == without_etags(original)
        assert run.reconcile(runtime, state, now=later) == []
        run.apply(runtime, second, state, "U0BOB")  # the table is free again
        run.revert(runtime, second, state, "U0BOB")
        assert second.restored is True


def test_a_change_made_meanwhile_is_kept(world: World, state: BypassState) -> None:
    with Sandbox(world) as sandbox:
        runtime = attach(sandbox, ProbeSettings())
        record = prepare(runtime, "AKE-000006")
        run.apply(runtime, record, state, "U0ALICE")
        table_id = record.plan["routeTables"][0]["id"]
        other = {"properties": {"addressPrefix": "198.51.100.0/24", "nextHopType": "None"}}
        status, _, _ = sandbox.arm.handle(
            "PUT", f"{table_id}/routes/someone-elses", {"api-version": "x"}, other
        )
        assert status == 201
        result = run.revert(runtime, record, state, "U0ALICE")
        assert not result.restored
        assert "someone-elses" in result.notes[0] and "kept" in result.notes[0]
        names = [r["name"] for r in table_body(sandbox)["properties"]["routes"]]
        assert "someone-elses" in names
        assert not any(n.startswith("aks-egress-bypass-") for n in names)


def test_refused_writes_and_reads_leave_nothing_and_release_the_locks(
    world: World, state: BypassState
) -> None:
    with Sandbox(world) as sandbox:
        original = table_body(sandbox)
        runtime = attach(sandbox, ProbeSettings())
        record = prepare(runtime, "AKE-000007")
        other = prepare(runtime, "AKE-000009")
        table_id = record.plan["routeTables"][0]["id"]
        # Without the route-writer role: Azure's 403 on the write, named as such.
        sandbox.faults.add(
            {"api": "arm", "method": "PUT", "pathContains": "/routes/", "status": 403}
        )
        with pytest.raises(routes.WriteRefused) as caught:
            run.run_foreground(runtime, record, state, "U0ALICE")
        assert "route-writer role" in caught.value.describe()
        assert without_etags(table_body(sandbox)) == without_etags(original)
        assert state.active() == [] and state.holder(table_id) is None
        # The save (a read) refused: nothing written, the lock released.
        sandbox.faults.add(
            {"api": "arm", "method": "GET", "pathContains": "/routeTables/", "status": 403}
        )
        with pytest.raises(HttpResponseError):
            run.apply(runtime, other, state, "U0ALICE")
        assert state.holder(table_id) is None
        assert [m for m, _, _ in writes(sandbox)] == ["PUT"]  # the refused one only


def test_interrupted_run_reverts_first_and_audit_exports(
    world: World,
    state: BypassState,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Sandbox(world) as sandbox:
        original = table_body(sandbox)
        runtime = attach(sandbox, ProbeSettings())
        record = prepare(runtime, "AKE-000008")

        def ctrl_c(step: str) -> None:
            if step == "probing":
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run.run_foreground(runtime, record, state, "U0ALICE", on_step=ctrl_c)
        assert record.status == REVERTED and record.restored is True
        assert without_etags(table_body(sandbox)) == without_etags(original)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    assert main(["audit", "--json", "--since", "2000-01-01"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["action"] for r in rows] == ["request", "apply", "revert"]
    assert rows[1]["incident"] == "AKE-000008" and rows[1]["before"]["name"] == TABLE
    assert main(["audit", "--since", "yesterday"]) == 2


def test_cli_plan_and_dry_run_write_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bypass", ALIAS, "--endpoint", URL, "--json", "--world", str(WORLD)]
    assert main([*argv, "--plan"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["plan"]["feasible"] and "verdict" not in planned
    assert main([*argv, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dryRun"] is True and dry["verdict"] is None and dry["after"] is None
    assert main(["bypass", ALIAS, "--endpoint", "ftp://x", "--world", str(WORLD)]) == 2
