"""A generated fleet for the summary's tests and benchmark: lb-snat-high-and-pressure.yaml's
cluster N times over several subscriptions, each with its own node resource group, load
balancer, SNAT metrics and nodes."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import yaml
from rq import Queue

from bot.admission import ops_queue_on
from bot.sandbox.server import Sandbox
from bot.worker import CheckWorker

BASE = Path(__file__).resolve().parent / "worlds" / "lb-snat-high-and-pressure.yaml"
SUBSCRIPTIONS = 10


def world_of(clusters: int, latency_ms: int, folder: Path, rules: list[dict] | None = None) -> Path:
    base = yaml.safe_load(BASE.read_text())
    cluster = next(r for r in base["arm"] if r["type"].endswith("managedClusters"))
    lb = next(r for r in base["arm"] if r["type"].endswith("loadBalancers"))
    node_rg = cluster["properties"]["nodeResourceGroup"]
    lb_metrics = next(v for k, v in base["metrics"].items() if "/loadbalancers/" in k.lower())
    (kube,) = base["kubernetes"].values()
    data = {**base, "arm": [], "clusters": {}, "metrics": {}, "kubernetes": {}}
    data.pop("egressEndpoints", None)
    data["faults"] = {"armLatencyMs": latency_ms, "rules": rules or []}
    base_sub = cluster["id"].split("/")[2]
    for i in range(clusters):
        name, rg = f"aks-shop-{i:03d}", f"MC_rg-shop_aks-shop-{i:03d}_westeurope"
        sub = f"{base_sub[:-3]}{i % SUBSCRIPTIONS:03d}"
        c = copy.deepcopy(cluster)
        c["name"] = name
        c["id"] = cluster["id"].replace(cluster["name"], name).replace(base_sub, sub)
        c["properties"]["nodeResourceGroup"] = rg
        lb_i = copy.deepcopy(lb)
        lb_i["id"] = lb["id"].replace(node_rg, rg).replace(base_sub, sub)
        data["arm"] += [c, lb_i]
        data["clusters"][f"shop-{i:03d}"] = c["id"]
        data["metrics"][lb_i["id"]] = lb_metrics
        data["kubernetes"][c["id"]] = {"nodes": kube["nodes"]}
    path = folder / f"clusters-{latency_ms}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fleet_config(sandbox: Sandbox, path: Path, channel: str) -> Path:
    """The sandbox's clusters, all for `channel`, whose summary is due at midnight UTC."""
    lines = ["clusters:"]
    for alias, cluster_id in sandbox.world.clusters.items():
        parts = cluster_id.split("/")
        lines += [
            f"  {alias}:",
            f"    subscription: {parts[2]}",
            f"    resourceGroup: {parts[4]}",
            f"    name: {parts[-1]}",
            f"    channels: [{channel}]",
        ]
    lines += ["summaries:", f"  {channel}: {{time: '00:00', timezone: UTC}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_workers(queue: Queue, count: int, timeout_s: float = 120) -> None:
    """`count` queue workers side by side, as deployed (not in burst mode: a burst worker
    that finds the queues empty quits, and the cron job enqueues the summary's batches only
    after the workers start), on the operations queue (where the batches go) first, as
    bot/pool.py's workers do; stopped once every queue is empty and no job runs or waits
    for another, twice in a row a poll apart."""
    queues = [ops_queue_on(queue.connection), queue]
    workers = [CheckWorker.for_queues(queues, 1) for _ in range(count)]
    threads = [threading.Thread(target=w.work, kwargs={"with_scheduler": False}) for w in workers]
    for thread in threads:
        thread.start()
    deadline, quiet = time.monotonic() + timeout_s, 0
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        idle = all(
            q.count == 0
            and q.started_job_registry.count == 0
            and q.deferred_job_registry.count == 0
            for q in queues
        )
        quiet = quiet + 1 if idle else 0
    for worker in workers:
        worker.stop()
    for thread in threads:
        thread.join(timeout_s)
