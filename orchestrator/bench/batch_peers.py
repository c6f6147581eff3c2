"""The peers of ``victor bench batch``: one no-op task per item, as each library's users write it.

A standalone script (standard library plus the peer's own package, imported inside functions):
the bench copies it into a scratch directory and runs it with the interpreter that has the
peer installed. Celery runs in the project's interpreter; Dramatiq, RQ and arq in the peers'
virtual environment (arq pins a redis-py older than the one Celery needs).

    python batch_peers.py client PEER REDIS_URL NAMESPACE INPUT OUTPUT   # prints JSON
    celery -A batch_peers worker ...        # with VICTOR_BENCH_PEER=celery and the env below
    dramatiq batch_peers ...                # VICTOR_BENCH_PEER=dramatiq
    rq worker -u URL QUEUE                  # RQ imports ``batch_peers.noop`` by name
    arq batch_peers.ArqWorker               # VICTOR_BENCH_PEER=arq

Workers read ``VICTOR_BENCH_PEER``, ``VICTOR_BENCH_PEER_URL`` and ``VICTOR_BENCH_PEER_NS``.
Every peer keeps its keys under the namespace or deletes them by id when the client is done.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

TIMEOUT_S = 600.0


def noop(value: Any) -> Any:
    """The work of one item: return it (the same as the fleet's ``noop`` skill)."""
    return value


def _env(name: str) -> str:
    return os.environ.get(name, "")


# --- Celery -----------------------------------------------------------------------------------


def _celery_app(url: str, namespace: str) -> Any:
    from celery import Celery

    app = Celery("batch_peers", broker=url, backend=url)
    app.conf.task_default_queue = f"{namespace}.celery"
    app.conf.result_expires = 600
    app.conf.worker_hijack_root_logger = False
    app.task(name="batch_peers.noop")(noop)
    return app


def _celery_client(url: str, namespace: str, items: list[Any]) -> list[Any]:
    from celery import group

    app = _celery_app(url, namespace)
    task = app.tasks["batch_peers.noop"]
    result = group(task.s(item) for item in items).apply_async()
    values = list(result.get(timeout=TIMEOUT_S))
    result.forget()
    return values


# --- Dramatiq ---------------------------------------------------------------------------------


def _dramatiq_setup(url: str, namespace: str) -> Any:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    broker = RedisBroker(url=url, namespace=f"{namespace}-dramatiq")
    # Result keys under the namespace (Dramatiq 2's option; they are hashed names otherwise).
    backend = RedisBackend(url=url, namespace=f"{namespace}-res", use_namespace_prefix_keys=True)
    broker.add_middleware(Results(backend=backend))
    dramatiq.set_broker(broker)
    return dramatiq.actor(noop, actor_name="noop", store_results=True, max_retries=0)


def _dramatiq_client(url: str, namespace: str, items: list[Any]) -> list[Any]:
    import dramatiq

    actor = _dramatiq_setup(url, namespace)
    batch = dramatiq.group(actor.message(item) for item in items).run()
    return list(batch.get_results(block=True, timeout=int(TIMEOUT_S * 1000)))


# --- RQ ---------------------------------------------------------------------------------------


def _rq_client(url: str, namespace: str, items: list[Any]) -> list[Any]:
    from redis import Redis
    from rq import Queue
    from rq.job import Job, JobStatus

    connection = Redis.from_url(url)
    queue = Queue(f"{namespace}-rq", connection=connection)
    module = os.path.splitext(os.path.basename(__file__))[0]
    jobs = queue.enqueue_many(
        [Queue.prepare_data(f"{module}.noop", args=(item,), result_ttl=600) for item in items]
    )
    ids = [job.id for job in jobs]
    values: dict[str, Any] = {}
    deadline = time.monotonic() + TIMEOUT_S
    position = 0  # jobs run in queue order: wait on the oldest unfinished ones, a page at a time
    while position < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"RQ left {len(ids) - position} jobs unfinished")
        page = ids[position : position + 200]
        for job_id, job in zip(page, Job.fetch_many(page, connection), strict=True):
            if job is None:
                raise RuntimeError(f"RQ lost job {job_id}")
            status = job.get_status(refresh=False)
            if status == JobStatus.FAILED:
                raise RuntimeError(f"RQ job {job_id} failed")
            if status != JobStatus.FINISHED:
                break
            values[job_id] = job.return_value(refresh=False)
            position += 1
        else:
            continue
        time.sleep(0.05)
    for start in range(0, len(ids), 500):
        for job in Job.fetch_many(ids[start : start + 500], connection):
            if job is not None:
                job.delete()
    queue.delete(delete_jobs=True)
    return [values[job_id] for job_id in ids]


# --- arq --------------------------------------------------------------------------------------


async def _arq_noop(ctx: dict[str, Any], value: Any) -> Any:
    return value


def _arq_client(url: str, namespace: str, items: list[Any]) -> list[Any]:
    async def run() -> list[Any]:
        from arq import create_pool
        from arq.connections import RedisSettings

        pool = await create_pool(RedisSettings.from_dsn(url))
        queue = f"{namespace}:arq"
        jobs = [await pool.enqueue_job("noop", item, _queue_name=queue) for item in items]
        values = [await job.result(timeout=TIMEOUT_S, poll_delay=0.05) for job in jobs if job]
        keys = [f"arq:result:{job.job_id}" for job in jobs if job]
        for start in range(0, len(keys), 500):
            await pool.delete(*keys[start : start + 500])
        await pool.aclose()
        return values

    return asyncio.run(run())


def _arq_worker_settings() -> type:
    from arq.connections import RedisSettings

    class ArqWorker:
        functions = [_arq_noop_named()]
        redis_settings = RedisSettings.from_dsn(_env("VICTOR_BENCH_PEER_URL"))
        queue_name = f"{_env('VICTOR_BENCH_PEER_NS')}:arq"
        keep_result = 600

    return ArqWorker


def _arq_noop_named() -> Any:
    from arq.worker import func

    return func(_arq_noop, name="noop")


# --- the worker side: what each peer's CLI imports --------------------------------------------

_PEER = _env("VICTOR_BENCH_PEER")
if _PEER == "celery":
    app = _celery_app(_env("VICTOR_BENCH_PEER_URL"), _env("VICTOR_BENCH_PEER_NS"))
elif _PEER == "dramatiq":
    _dramatiq_setup(_env("VICTOR_BENCH_PEER_URL"), _env("VICTOR_BENCH_PEER_NS"))
elif _PEER == "arq":
    ArqWorker = _arq_worker_settings()

CLIENTS = {
    "celery": _celery_client,
    "dramatiq": _dramatiq_client,
    "rq": _rq_client,
    "arq": _arq_client,
}


def main(argv: list[str]) -> int:
    """``client PEER URL NAMESPACE INPUT OUTPUT``: read, run every item, write; print timing."""
    _, peer, url, namespace, input_path, output_path = argv
    started = time.perf_counter()
    with open(input_path, "rb") as stream:
        items = [json.loads(line)["value"] for line in stream if line.strip()]
    values = CLIENTS[peer](url, namespace, items)
    with open(output_path, "w") as stream:
        for index, value in enumerate(values):
            stream.write(json.dumps({"index": index, "ok": True, "result": value}) + "\n")
    elapsed = time.perf_counter() - started
    correct = sum(1 for index, value in enumerate(values) if value == items[index])
    json.dump({"items": len(items), "correct": correct, "elapsed_s": elapsed}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
