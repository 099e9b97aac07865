"""A TCP proxy in front of a real redis-server that can lose one reply on the wire.

A connection that breaks after Redis applied a transaction but before its reply arrived
is what makes redis-py's retry send the same MULTI/EXEC twice: the proxy forwards the
next EXEC it sees, lets Redis apply it, then closes both ends without the reply.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from bot.redisserver import free_port

EXEC = b"*1\r\n$4\r\nEXEC\r\n"


class LossyProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream = urlsplit(upstream_url)
        self.upstream_port = self.upstream.port or 6379
        self.port = free_port()
        self.lose_next_exec = threading.Event()
        self.lost = 0
        self._muted: set[int] = set()  # upstream sockets whose replies are dropped
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The upstream's URL (its credentials too) with the proxy's port."""
        netloc = self.upstream.netloc.rsplit(":", 1)[0] + f":{self.port}"
        return urlunsplit(self.upstream._replace(netloc=netloc))

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_redis: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                losing = to_redis and EXEC in data and self.lose_next_exec.is_set()
                if losing:
                    self.lose_next_exec.clear()
                    self._muted.add(sink.fileno())  # the reply from this Redis end
                elif not to_redis and source.fileno() in self._muted:
                    continue
                sink.sendall(data)
                if losing:
                    time.sleep(0.2)  # Redis applies it and answers; the answer is dropped
                    self.lost += 1
                    self._muted.discard(sink.fileno())  # the number may be reused
                    for end in (source, sink):
                        end.shutdown(socket.SHUT_RDWR)
                        end.close()
                    return
