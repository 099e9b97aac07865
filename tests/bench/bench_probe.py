"""Benchmark: the probe phase on three node pools (budget: within 3 s, ≤ 6 API calls a pod).

Builds a three-pool variant of udr-firewall-allowed.yaml with faults.probeSeconds 2 and
k8sLatencyMs 20 and a running application pod on the `apps` pool, reaches the emulated API
server the way a check does (Azure credentials → kubeconfig), then times the probe phase
(leftover sweep, then one probe pod per pool and the probe inside the application pod, all
in parallel, as a check with `--pod` runs them) and counts the Kubernetes requests. Usage:

    .venv/bin/python tests/bench/bench_probe.py [--runs N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bot.collect.kube import KubeReader, connect
from bot.collect.podview import InPodProbe
from bot.collect.probe import ProbeRunner, probe_pools
from bot.destination import DestinationPolicy, probe_rules
from bot.runtime import open_runtime

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "udr-firewall-allowed.yaml"
ALIAS, URL = "platform-prod", "https://api.contoso.com"
POOLS = ("system", "apps", "batch")


def three_pool_world(folder: Path) -> Path:
    data = yaml.safe_load(WORLD.read_text())
    cluster = next(r for r in data["arm"] if r["type"].endswith("managedClusters"))
    profile = cluster["properties"]["agentPoolProfiles"][0]
    kube = next(iter(data["kubernetes"].values()))
    node = kube["nodes"][0]
    for pool in POOLS[1:]:
        extra = copy.deepcopy(profile)
        extra.update(name=pool, mode="User")
        cluster["properties"]["agentPoolProfiles"].append(extra)
        extra_node = copy.deepcopy(node)
        extra_node["metadata"]["name"] = f"aks-{pool}-73920154-vmss000000"
        extra_node["metadata"]["labels"]["kubernetes.azure.com/agentpool"] = pool
        extra_node["metadata"]["labels"]["agentpool"] = pool
        kube["nodes"].append(extra_node)
    app_node = kube["nodes"][-2]["metadata"]["name"]  # the apps pool's node
    kube.setdefault("pods", []).append(
        {
            "metadata": {"name": "api-0", "namespace": "payments", "labels": {"app": "api"}},
            "spec": {"nodeName": app_node, "containers": [{"name": "api", "image": "api:1"}]},
            "status": {"phase": "Running"},
        }
    )
    data["faults"] = {"probeSeconds": 2, "k8sLatencyMs": 20}
    path = folder / "three-pools.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        open_runtime(three_pool_world(Path(folder))) as rt,
    ):
        sandbox = rt.sandbox
        assert sandbox is not None
        _, cluster_id = rt.cluster_id(ALIAS)
        connection = connect(rt.kube_connection_plan(cluster_id), rt.clients, rt.credential)
        reader = KubeReader(connection)
        pools = probe_pools(reader.nodes())
        app = reader.pod("payments", "api-0")
        assert app is not None
        runner = ProbeRunner(connection, rt.probe, rt.clock)
        inside = InPodProbe(connection, rt.probe)
        times, per_pod = [], []
        for _ in range(args.runs):
            before = sandbox.count("k8s")
            started = time.perf_counter()
            rules = probe_rules(DestinationPolicy())
            with ThreadPoolExecutor(2) as phase:
                runner.remove_leftovers()
                in_pod = phase.submit(inside.run, URL, app, "apps", rules)
                runs = [*runner.run(URL, pools, rules), in_pod.result()]
            times.append(time.perf_counter() - started)
            pod_calls = sandbox.count("k8s") - before - 1  # minus the leftover sweep's list
            per_pod.append(pod_calls / len(runs))
            assert all(r.exit_code == 0 for r in runs), runs
        connection.close()
    print(
        f"pools probed: {', '.join(pools)} and inside payments/api-0 (probeSeconds 2, "
        f"k8sLatencyMs 20), runs: {args.runs}"
    )
    print(
        f"probe phase: median {statistics.median(times):.2f} s, max {max(times):.2f} s (budget 3 s)"
    )
    print(f"Kubernetes API calls per probe (pod or in-pod): {max(per_pod):.1f} (budget 6)")


if __name__ == "__main__":
    main()
