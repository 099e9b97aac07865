"""Workers run only the bot's own job functions, from JSON jobs: anyone who can write to
Redis must not be able to run code in the process that holds the Azure identity."""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from bot import admission, jobs
from bot.redisserver import RedisServer
from bot.store import Store
from bot.worker import CheckWorker


@pytest.fixture(scope="module")
def redis_url():
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def connection(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # our private server only
    jobs.configure(jobs.WorkerContext(runtime=None, slack=None, store=Store.from_url(redis_url)))
    return client


def work(connection: redis.Redis) -> None:
    """A burst of work in a thread, as `dev` runs it (the test process keeps its signals)."""
    worker = CheckWorker.for_queue(admission.queue_on(connection), connection, 1)
    thread = threading.Thread(target=worker.work, kwargs={"burst": True})
    thread.start()
    thread.join(30)
    assert not thread.is_alive()


def victim(tmp_path: Path) -> Path:
    target = tmp_path / "victim"
    target.mkdir()
    (target / "data").write_text("keep me")
    return target


def test_queue_writes_json_jobs(connection):
    job = admission.queue_on(connection).enqueue(jobs.run_check, "AKE-000000", 0, None, "all")
    raw = zlib.decompress(connection.hget(f"rq:job:{job.id}", "data"))  # rq compresses
    assert json.loads(raw)[0] == "bot.jobs.run_check", raw


def test_forged_json_job_naming_another_function_fails_without_running(connection, tmp_path):
    target = victim(tmp_path)
    forged = admission.queue_on(connection).enqueue("shutil.rmtree", str(target))
    own = admission.queue_on(connection).enqueue(jobs.run_check, "AKE-NOSUCH", 0, None, "all")
    work(connection)
    assert (target / "data").read_text() == "keep me"
    forged = Job.fetch(forged.id, connection=connection, serializer=JSONSerializer)
    assert forged.get_status() == JobStatus.FAILED
    assert "not a job function of the bot" in forged.latest_result().exc_string
    assert own.get_status(refresh=True) == JobStatus.FINISHED, "the bot's own job still runs"


def test_forged_callback_on_an_allowed_function_is_refused(connection, tmp_path):
    from rq import Callback

    target = victim(tmp_path)
    queue = admission.queue_on(connection)
    job = queue.enqueue(
        jobs.run_check,
        "AKE-NOSUCH",
        on_success=Callback("shutil.rmtree"),
        on_failure=Callback("shutil.rmtree"),
    )
    work(connection)
    assert target.exists()
    assert job.get_status(refresh=True) == JobStatus.FAILED


def test_pickled_job_is_never_unpickled(connection, tmp_path):
    target = victim(tmp_path)
    pickled = Queue(admission.QUEUE, connection=connection)  # rq's default serializer: pickle
    pickled.enqueue("shutil.rmtree", str(target))
    work(connection)  # must not exit with an error either
    assert target.exists()
