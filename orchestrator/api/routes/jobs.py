"""/v1/jobs: submit, list, read, page results, follow events, revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from orchestrator.api import fast_submit, jobs
from orchestrator.api.errors import event_stream_responses, responses
from orchestrator.api.models import Job, JobAccepted, JobPage, ResultPage
from orchestrator.api.security import (
    AsyncSubmitPrincipal,
    ReadPrincipal,
    ServicesDep,
    SubmitPrincipal,
)
from orchestrator.api.streams import JobEvents, parse_cursor
from orchestrator.core.outcomes import job_failures

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="The job's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and same body: the same job. Same key, other body: 422.",
    ),
]

GOAL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GoalSpec"}}},
    }
}


EVENTS_DESCRIPTION = (
    "A Server-Sent Events stream (`retry: 1000` first). Each event has an `event:` name, an "
    "`id:` to resume from with Last-Event-ID, and one `data:` line of JSON: `result` carries a "
    "TaskResult (#/components/schemas/TaskResult) as each task is recorded; `item.delta` a "
    "piece of text a streaming skill (chat) produced for an item before its result, as "
    '`{"task_id", "item", "offset", "text"}` (join the pieces by offset); `progress` a '
    "JobProgress after each batch of results or status change; `end` the Job, once, when the "
    "job is terminal and every result was sent; `error` a StreamError when the stream cannot "
    "go on (reconnect to resume). Comment lines (`: keep-alive`) keep idle connections open."
)
EVENTS_EXAMPLE = (
    "retry: 1000\n\n"
    "event: item.delta\nid: 0:0-0:1700000000000-0\n"
    'data: {"task_id": "0f3c.0", "item": 0, "offset": 0, "text": "The answer "}\n\n'
    "event: result\nid: 1:1700000000001-0:1700000000000-0\n"
    'data: {"seq": 1, "task_id": "0f3c.0", "worker": "w1@host", "outcome": [{"ok": true}]}\n\n'
    "event: progress\nid: 1:1700000000001-0:1700000000000-0\n"
    'data: {"done": 1, "total": 1, "status": "succeeded"}\n\n'
    "event: end\nid: 1:1700000000001-0:1700000000000-0\n"
    'data: {"job_id": "0f3c", "status": "succeeded", "...": "the Job"}\n\n'
)


# What a client does next with an accepted job: OpenAPI links (clients and stateful tests
# follow them from the 202's job_id).
JOB_LINKS = {
    name: {
        "operationId": operation,
        "parameters": {"job_id": "$response.body#/job_id"},
        "description": description,
    }
    for name, operation, description in (
        ("ReadJob", "read_job_v1_jobs__job_id__get", "Read the job."),
        ("ReadResults", "read_results_v1_jobs__job_id__results_get", "Page its results."),
        ("FollowEvents", "follow_events_v1_jobs__job_id__events_get", "Follow its events."),
        ("RevokeJob", "revoke_job_v1_jobs__job_id__delete", "Revoke it."),
    )
}


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses={**responses(400, 409, 413, 415, 422), 202: {"links": JOB_LINKS}},
    openapi_extra=GOAL_BODY,
    summary="Submit a goal spec as a job",
)
async def submit_job(
    request: Request,
    principal: AsyncSubmitPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Plan the goal, record the job in the ledger, queue its tasks, then answer 202.

    ``fast_submit.FastSubmitMiddleware`` answers most submissions before the router does; this
    route answers the rest (and is the one the schema documents), through the same code.
    """
    return await fast_submit.answer(request, principal, idempotency_key)


@router.get("", response_model=JobPage, responses=responses(422), summary="List your jobs")
def list_jobs(
    principal: ReadPrincipal,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The caller's tenant's jobs, newest first."""
    items, following = jobs.list_jobs(services, principal, offset, limit)
    return {"items": items, "next": following}


@router.get("/{job_id}", response_model=Job, responses=responses(404, 422), summary="Read a job")
def read_job(job_id: JobId, principal: ReadPrincipal, services: ServicesDep) -> dict[str, Any]:
    job = jobs.get_job(services, principal, job_id)
    view = jobs.job_view(job)
    if job.failed_items:
        view["failures"] = job_failures(services.ledger, job_id)
    return view


@router.get(
    "/{job_id}/results",
    response_model=ResultPage,
    responses=responses(404, 422),
    summary="Page through a job's task results",
)
def read_results(
    job_id: JobId,
    principal: ReadPrincipal,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, le=100_000_000, description="Last seq seen.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Task results in completion order, after ``after`` (a ``seq``)."""
    items, following = jobs.results(services, principal, job_id, after, limit)
    return {"items": items, "next": following}


@router.get(
    "/{job_id}/events",
    responses=event_stream_responses(EVENTS_DESCRIPTION, EVENTS_EXAMPLE),
    response_class=StreamingResponse,
    summary="Follow a job as Server-Sent Events",
)
async def follow_events(
    job_id: JobId,
    principal: ReadPrincipal,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
    after: Annotated[int | None, Query(ge=0, le=100_000_000)] = None,
) -> StreamingResponse:
    """Each task result as it is recorded, progress after each batch, and a final ``end``."""
    await run_in_threadpool(jobs.get_job, services, principal, job_id)
    seq, stream_id = parse_cursor(last_event_id, after)
    events = JobEvents(services, principal, job_id)
    return StreamingResponse(
        events.stream(seq, stream_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.delete(
    "/{job_id}",
    response_model=Job,
    responses=responses(404, 409, 422),
    summary="Revoke a job's tasks",
    description=(
        "Revokes the job: its queued and running tasks are revoked and its status becomes "
        "`revoked`. The record is kept, not deleted: the job, its results recorded so far and "
        "its events stay readable until they expire (`result_expires_s`). A finished job "
        "cannot be revoked (409)."
    ),
)
def revoke_job(job_id: JobId, principal: SubmitPrincipal, services: ServicesDep) -> dict[str, Any]:
    return jobs.job_view(jobs.revoke(services, principal, job_id))
