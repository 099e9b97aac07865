"""A private, throwaway redis-server on a free loopback port, for the demo and the tests.

It is stopped with its owner and its directory removed, so it can never touch anyone's
real Redis. It asks for a password (random, in its URL) and keeps protected mode on, so
nothing else on the machine can use it either. With `persist`, it keeps an append-only
file, as deploy/ runs Redis, and `restart()` brings it back on the same port with its
data, which is how the tests play an Azure Cache for Redis failover.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import redis


class RedisServerMissing(RuntimeError):
    """No redis-server binary on PATH; the message says how to get one or what to set."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, persist: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissing(
                "redis-server is not installed: install it (apt-get install redis-server, "
                "brew install redis) or set REDIS_URL to a Redis you may use"
            )
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="aks-egress-redis-")
        self.persist = persist
        self.password = secrets.token_urlsafe(18)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """Where it listens, for messages: the URL holds the password."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        # The password goes in through stdin (a config file of one line), never argv.
        argv = [self.binary, "-", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--protected-mode", "yes", "--dir", self.dir.name, "--daemonize", "no"]
        argv += ["--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else []
        argv += [] if self.persist else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert self.process.stdin is not None
        self.process.stdin.write(f"requirepass {self.password}\n".encode())
        self.process.stdin.close()
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def halt(self) -> None:
        """Stop the server, keeping its data (written on the way down when persisting)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> RedisServer:
        self.halt()
        return self.start()

    def stop(self) -> None:
        self.halt()
        self.dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
