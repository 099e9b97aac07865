"""`aks-egress worker` on a sandbox served by another process (the test's or the
benchmark's), so that several worker processes share one world: one Kubernetes emulator
holds every probe pod, and a check retried after its worker was killed meets the same
cluster. Settings come from the environment, as for the real command.

    python -m tests.e2e.remote_worker ARM_URL CA_PATH WORLD
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot import logs
from bot.config import Settings
from bot.processes import run_workers
from bot.runtime import sandbox_runtime
from bot.sandbox.world import load_world


def main(arm_url: str, ca_path: str, world: str) -> None:
    settings = Settings()
    logs.setup(settings.log_format)
    runtime = sandbox_runtime(load_world(Path(world)), arm_url, ca_path, settings.probe_settings())
    try:
        run_workers(settings, runtime)
    finally:
        runtime.clients.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
