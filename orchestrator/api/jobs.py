"""Jobs as the API sees them: submit (ledger first, idempotent), read, page results, revoke."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from email.message import Message
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from orchestrator.api.keystore import Principal
from orchestrator.api.quotas import admit_in_flight
from orchestrator.api.services import Services, broker_translated
from orchestrator.core.dispatcher import dispatch_plan, new_job_id, release
from orchestrator.core.plan import GoalSpec, Plan
from workers.core.errors import (
    BackendUnavailableError,
    BadRequestError,
    IdempotencyError,
    JobNotFoundError,
    JobStateError,
    UnsupportedMediaTypeError,
)
from workers.core.redis_client import translated
from workers.ledger import TERMINAL, JobRecord

MAX_REPORTED_PROBLEMS = 20
# A goal spec nests a few levels; deeper JSON (which the parser accepts up to the recursion
# limit) would only fail later, when it is validated or serialized, as a 500.
MAX_JSON_DEPTH = 64
# A reserved Idempotency-Key whose job is still unrecorded after this long was abandoned.
IN_FLIGHT_S = 30.0


def links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {"self": base, "results": f"{base}/results", "events": f"{base}/events"}


def job_view(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "name": job.name,
        "status": job.status,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "total_tasks": job.total_tasks,
        "done_tasks": job.done_tasks,
        "items": job.items,
        "failed_items": job.failed_items,
        "result": job.result,
        "error": job.error,
        "links": links(job.job_id),
    }


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; send numbers only")


def decode_json(body: bytes, content_type: str | None) -> Any:
    """Check the content type (415) and parse strict JSON (400: no NaN, no deep nesting)."""
    message = Message()
    message["content-type"] = content_type or ""
    subtype = message.get_content_subtype()
    if message.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        raise UnsupportedMediaTypeError(
            f"content type {content_type or '(none)'!r} is not supported; send "
            "'Content-Type: application/json'"
        )
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if json_depth(data) > MAX_JSON_DEPTH:
        raise BadRequestError(
            f"request body nests deeper than {MAX_JSON_DEPTH} levels of arrays and objects; "
            "flatten the values"
        )
    return data


def json_depth(data: Any) -> int:
    """How deeply arrays and objects nest in ``data`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def _problems(exc: ValidationError, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": ("body", *prefix, *error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()[:MAX_REPORTED_PROBLEMS]
    ]


def validation_error(exc: ValidationError) -> RequestValidationError:
    """A body model's errors as the API's 422 (fields named from the body's root)."""
    return RequestValidationError(_problems(exc, ()))


def parse_goal_body(data: Any) -> GoalSpec:
    """Validate the goal spec (422 naming the field)."""
    try:
        return GoalSpec.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def goal_hash(goal: GoalSpec) -> str:
    """The goal's canonical hash: the same body under an Idempotency-Key gives the same job."""
    canonical = json.dumps(goal.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_plan(
    services: Services,
    principal: Principal,
    goal: GoalSpec,
    plan: Plan,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Record and publish a planned goal through Celery's canvas (a chord or a chain).

    Only jobs that need Celery's joins come here (``orchestrator.api.submit`` takes the rest);
    with an Idempotency-Key, the same key and body give the same job, another body is refused.
    """
    idem_key = None
    body_hash = goal_hash(goal)
    if idempotency_key is not None:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        idem_key = services.keys.idempotency(principal.tenant, digest)
        replay = _replay(services, idem_key, body_hash)
        if replay is not None:
            return replay, True
    # The API never runs skills itself: small jobs go to the fleet too.
    plan = plan.model_copy(update={"inline": False})
    job_id = new_job_id()
    admit_in_flight(
        services.redis,
        services.keys,
        services.settings,
        principal.tenant,
        job_id,
        plan.item_count,
    )
    if idem_key is not None:
        key = idem_key
        replay = reserve_idempotency_key(
            services,
            key,
            {"body": body_hash, "job_id": job_id},
            lambda: _replay(services, key, body_hash),
        )
        if replay is not None:
            return replay, True
    try:
        # Celery's result consumer keeps one pub/sub connection per app: one canvas at a time.
        with services.dispatch_lock, broker_translated("publishing a job"):
            handle = dispatch_plan(services.app, plan, tenant=principal.tenant, job_id=job_id)
            release(handle)
    except BackendUnavailableError:
        if idem_key is not None:
            _forget_unrecorded(services, idem_key, job_id)
        raise
    accepted = {
        "job_id": job_id,
        "status": "running",
        "total_tasks": len(handle.task_ids),
        "links": links(job_id),
    }
    return accepted, False


def reserve_idempotency_key(
    services: Services,
    idem_key: str,
    record: dict[str, str],
    replay: Callable[[], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """Reserve ``idem_key`` for a new job or run (``record``: the body's hash and its id).

    None once reserved. A key already held gives what ``replay`` answers for it (the same
    request again), or a 409 while the request holding it is still being recorded.
    """
    stored = json.dumps({**record, "at": time.time()})
    with translated("reserving an Idempotency-Key"):
        reserved = services.redis.set(
            idem_key, stored, nx=True, ex=services.settings.api_idempotency_ttl_s
        )
    if reserved:
        return None
    replayed = replay()
    if replayed is not None:
        return replayed
    raise IdempotencyError("Idempotency-Key is in use by a request still in flight", in_flight=True)


def _replay(services: Services, idem_key: str, body_hash: str) -> dict[str, Any] | None:
    with translated("reading an Idempotency-Key"):
        raw = services.redis.get(idem_key)
    if raw is None:
        return None
    return replay_stored(services, raw, body_hash, idem_key)


def replay_stored(
    services: Services, raw: bytes | str, body_hash: str, idem_key: str
) -> dict[str, Any] | None:
    """The job an Idempotency-Key's stored value names; None when the key is free again."""
    stored = json.loads(raw)
    if stored["body"] != body_hash:
        raise IdempotencyError(
            "Idempotency-Key was already used with a different body; use a new key for a new job"
        )
    try:
        job = services.ledger.get_job(stored["job_id"])
    except JobNotFoundError as exc:
        if time.time() - float(stored.get("at", 0)) > IN_FLIGHT_S:
            # Reserved but never recorded (or the job expired): the key is free again.
            with translated("releasing an Idempotency-Key"):
                services.redis.delete(idem_key)
            return None
        raise IdempotencyError(
            "a request with this Idempotency-Key is still being recorded; retry in a second",
            in_flight=True,
        ) from exc
    return {
        "job_id": job.job_id,
        "status": job.status,
        "total_tasks": job.total_tasks,
        "links": links(job.job_id),
    }


def _forget_unrecorded(services: Services, idem_key: str, job_id: str) -> None:
    """After a failed submission, free its Idempotency-Key unless the job was recorded."""
    try:
        services.ledger.get_job(job_id)
    except JobNotFoundError:
        with contextlib.suppress(BackendUnavailableError), translated("freeing a key"):
            services.redis.delete(idem_key)
    except BackendUnavailableError:
        return  # Redis is down: the reservation ages out after IN_FLIGHT_S


def get_job(services: Services, principal: Principal, job_id: str) -> JobRecord:
    """The caller's job; another tenant's job is reported as missing (404, never 403)."""
    job = services.ledger.get_job(job_id)
    if job.tenant != principal.tenant:
        raise JobNotFoundError(f"no job with id {job_id!r}")
    return refresh(services, job)


def refresh(services: Services, job: JobRecord) -> JobRecord:
    """Mark a job failed when its reduce (the chord body) failed: nothing else would."""
    if job.status in TERMINAL or not job.meta.get("has_reduce"):
        return job
    if job.done_tasks < job.total_tasks:
        return job
    with broker_translated("reading the reduce step's state"):
        result = services.app.AsyncResult(f"{job.job_id}.reduce")
        state = result.state
        if state == "FAILURE":
            error = f"reduce step failed: {type(result.result).__name__}: {result.result}"
    if state != "FAILURE":
        return job
    services.ledger.set_status(job.job_id, "failed", error=error)
    return services.ledger.get_job(job.job_id)


def list_jobs(
    services: Services, principal: Principal, offset: int, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    jobs = services.ledger.list_jobs(principal.tenant, offset, limit)
    views = [job_view(job) for job in jobs]
    following = f"/v1/jobs?offset={offset + limit}&limit={limit}" if len(jobs) == limit else None
    return views, following


def results(
    services: Services, principal: Principal, job_id: str, after: int, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    get_job(services, principal, job_id)
    events = services.ledger.events(job_id, after, limit)
    items = [
        {
            "seq": event.seq,
            "task_id": event.task_id,
            "worker": event.worker,
            "outcome": event.outcome,
        }
        for event in events
    ]
    following = None
    if len(events) == limit:
        following = f"/v1/jobs/{job_id}/results?after={events[-1].seq}&limit={limit}"
    return items, following


def revoke(services: Services, principal: Principal, job_id: str) -> JobRecord:
    """Revoke every task of the job (and its reduce); finished jobs cannot be revoked."""
    job = get_job(services, principal, job_id)
    if job.status == "revoked":
        return job
    if job.status in TERMINAL:
        raise JobStateError(f"job {job_id} already {job.status}; only unfinished jobs revoke")
    task_ids = [*services.ledger.task_specs(job_id), f"{job_id}.reduce"]
    with broker_translated("revoking a job's tasks"):
        services.app.control.revoke(task_ids)
    services.ledger.set_status(job_id, "revoked")
    return services.ledger.get_job(job_id)
