"""The bot as deployed, on loopback: a persistent redis-server, the sandbox, and the real
processes (`serve --http`, workers, `cron`) each in its own OS process, for the tests and
benchmarks that stop Redis or kill a worker. Each process logs JSON to a file of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot import armid
from bot.redisserver import RedisServer, free_port
from bot.sandbox import probes
from bot.sandbox.kube import ProbePodTally
from bot.sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fleet-signing-secret-5f0c2d9e"
BOT_TOKEN = "xoxb-1111111111-2222222222-FleetBotTokenAbCdEfGh"


def world_with(source: Path, target: Path, **faults: Any) -> Path:
    """A copy of a world with these faults (armLatencyMs, probeSeconds, ...)."""
    data = yaml.safe_load(source.read_text())
    data["faults"] = {**(data.get("faults") or {}), **faults}
    target.write_text(yaml.safe_dump(data))
    return target


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=3) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode()

    def status(self, path: str) -> int:
        """The HTTP status of a GET, 0 when nothing answers."""
        try:
            return self.get(path)[0]
        except OSError:
            return 0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def status_kib(self, field: str = "VmRSS") -> int:
        """A size from /proc/PID/status (VmRSS, VmHWM: the peak), 0 once it has exited."""
        try:
            lines = Path(f"/proc/{self.popen.pid}/status").read_text().splitlines()
        except OSError:
            return 0
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0


class PeakRss:
    """Each process's peak RSS (VmHWM), sampled while it runs: a SIGKILLed worker keeps
    the last peak read before it died (`sample` it just before the kill)."""

    def __init__(self) -> None:
        self.kib: dict[str, int] = {}

    def sample(self, processes: list[Process]) -> None:
        for process in processes:
            if process.alive():
                peak = process.status_kib("VmHWM")
                self.kib[process.name] = max(self.kib.get(process.name, 0), peak)

    def lines(self, killed: str | None = None) -> list[str]:
        return [
            f"{name:>10}: peak RSS {kib / 1024:.0f} MiB"
            + (" (read just before its SIGKILL)" if name == killed else "")
            for name, kib in self.kib.items()
        ]


class Fleet:
    def __init__(self, world: Path, logs: Path, heartbeat_s: int = 1):
        self.stack = ExitStack()
        self.world = world
        self.logs = logs
        self.redis = self.stack.enter_context(RedisServer(persist=True))
        self.sandbox = self.stack.enter_context(Sandbox(world))
        self.env = {
            **os.environ,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.sandbox.slack_url,
            "REDIS_URL": self.redis.url,
            "AKS_EGRESS_CONFIG": "/nonexistent/aks-egress.yaml",
            "AKS_EGRESS_WORKER_HEARTBEAT_S": str(heartbeat_s),
            # A fleet under load measures throughput, not the admission limits.
            "AKS_EGRESS_RATE_PER_MINUTE": "1000",
            "AKS_EGRESS_CLUSTER_RATE_PER_MINUTE": "100000",
            "AKS_EGRESS_QUEUE_MAX": "100000",
            "PYTHONPATH": str(ROOT),
        }
        self.processes: list[Process] = []
        self.stack.callback(self.stop_all)

    def _spawn(self, name: str, argv: list[str]) -> Process:
        port = free_port()
        log = self.logs / f"{name}.log"
        popen = subprocess.Popen(
            [sys.executable, *argv],
            env={**self.env, "AKS_EGRESS_PORT": str(port)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        process = Process(name, popen, port, log)
        self.processes.append(process)
        return process

    def wait_started(self, timeout_s: float = 60) -> None:
        """Until every process answers /healthz (they start side by side)."""
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            while process.status("/healthz") != 200:
                if not process.alive() or time.monotonic() > deadline:
                    log = process.log.read_text()[-2000:]
                    raise RuntimeError(f"{process.name} did not start: {log}")
                time.sleep(0.05)

    def app(self) -> Process:
        return self._spawn("app", ["-m", "bot.cli", "serve", "--http", "--world", str(self.world)])

    def worker(self, name: str = "worker") -> Process:
        sandbox = [self.sandbox.arm_url, self.sandbox.ca_path, str(self.world)]
        return self._spawn(name, ["-m", "tests.e2e.remote_worker", *sandbox])

    def cron(self) -> Process:
        return self._spawn("cron", ["-m", "bot.cli", "cron"])

    def slash(self, app: Process, text: str, channel: str, user: str) -> int:
        from bot.demo import signed_command

        return signed_command(f"{app.base}/slack/events", SECRET, text, channel, user)

    def probe_pods(self, alias: str) -> ProbePodTally:
        """What the cluster's API server saw of probe pods, from every worker process."""
        tallies = {armid.key(cid): t for cid, t in self.sandbox.probe_pods().items()}
        return tallies[armid.key(self.sandbox.world.clusters[alias])]

    def probe_urls(self, alias: str) -> list[str]:
        """The URL each probe pod on the cluster now is probing."""
        pods = [p for p in self.sandbox.pods(alias) if probes.is_probe(p)]
        return [url for p in pods if (url := probes.target_url(p))]

    def threads(self, channels: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Every root message's thread (root first), keyed by the root's ts."""
        slack = self.sandbox.slack
        return {
            root["ts"]: slack.thread(channel, root["ts"])
            for channel in channels
            for root in slack.messages(channel)
        }

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive():
                process.popen.terminate()
        for process in self.processes:
            try:
                process.popen.wait(20)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()

    def close(self) -> None:
        self.stack.close()


def name_of(message: dict[str, Any]) -> str:
    return str(((message.get("metadata") or {}).get("event_payload") or {}).get("name", ""))


def thread_problems(threads: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What is wrong with finished threads: a summary missing or doubled, a message twice,
    an incident with two root messages (two threads)."""
    problems = []
    for ts, messages in threads.items():
        names = Counter(name_of(m) for m in messages)
        twice = [n for n, count in names.items() if count > 1]
        if twice:
            problems.append(f"{ts}: posted twice: {twice}")
        summaries = [n for n in names if ":summary:0" in n]
        if len(summaries) != 1:
            incident = _incident(messages[0]) if messages else "?"
            problems.append(f"{ts} ({incident}): {len(summaries)} summaries: {sorted(names)}")
    roots = Counter(_incident(messages[0]) for messages in threads.values() if messages)
    problems += [f"{incident}: {n} root messages" for incident, n in roots.items() if n > 1]
    return problems


def _incident(message: dict[str, Any]) -> str:
    return str(((message.get("metadata") or {}).get("event_payload") or {}).get("incident", "?"))
