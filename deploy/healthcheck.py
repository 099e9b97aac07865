"""Container probes for the processes that serve no HTTP (Socket Mode `serve`, `worker`, `cron`).

    python /app/healthcheck.py ready    Redis at REDIS_URL answers PING (what /readyz checks)
    python /app/healthcheck.py worker   an RQ worker of this pod is registered in Redis; its
                                        registration expires unless the worker heartbeats,
                                        so a hung worker fails. Passes while Redis is down:
                                        restarting a worker does not bring Redis back, and
                                        readiness already reports it.
    python /app/healthcheck.py alive    the container's main process runs (not stopped, not
                                        a zombie): the only signal Socket Mode and cron give

Exit status 0 when healthy, 1 when not, with one line on stdout saying why (Kubernetes
shows it in the pod's events).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

TIMEOUT_S = 2.0


def _redis():  # imported late: `alive` needs nothing but the standard library
    from redis import Redis

    url = os.environ.get("REDIS_URL")
    if not url:
        raise RuntimeError("REDIS_URL is not set")
    return Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)


def ready() -> tuple[bool, str]:
    try:
        _redis().ping()
    except Exception as exc:  # any failure to reach Redis is "not ready"
        return False, f"redis unreachable: {type(exc).__name__}: {exc}"
    return True, "redis answers"


def worker() -> tuple[bool, str]:
    from redis.exceptions import RedisError
    from rq import Worker

    try:
        connection = _redis()
        connection.ping()
    except (RedisError, OSError, RuntimeError) as exc:
        return True, f"redis unreachable ({type(exc).__name__}); readiness reports it"
    host = socket.gethostname()
    try:
        mine = [w.name for w in Worker.all(connection=connection) if w.hostname == host]
    except (RedisError, OSError) as exc:
        return True, f"redis failed mid-check ({type(exc).__name__}); readiness reports it"
    if not mine:
        return False, f"no registered worker on {host}: it stopped heartbeating"
    return True, f"worker {mine[0]} registered"


def alive(pid: int = 1) -> tuple[bool, str]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False, f"process {pid} is gone"
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "T", "X"):
        return False, f"process {pid} is in state {state}"
    return True, f"process {pid} is in state {state}"


CHECKS = {"ready": ready, "worker": worker, "alive": alive}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {{{','.join(CHECKS)}}}")
        return 2
    ok, why = CHECKS[argv[0]]()
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
