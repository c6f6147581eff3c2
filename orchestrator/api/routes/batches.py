"""/v1/batches: start a batch run with inline items, list, read, stream output, follow, cancel."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from orchestrator.api import jobs
from orchestrator.api.batch_events import BatchEvents, parse_last_event_id
from orchestrator.api.batch_views import run_view
from orchestrator.api.batches import BatchRunner
from orchestrator.api.errors import event_stream_responses, responses
from orchestrator.api.models import BatchAccepted, BatchRun, BatchRunList, BatchSpec
from orchestrator.api.security import ReadPrincipal, SubmitPrincipal

router = APIRouter(prefix="/v1/batches", tags=["batches"])


async def get_runner(request: Request) -> BatchRunner:
    return request.app.state.batch_runner  # type: ignore[no-any-return]


Runner = Annotated[BatchRunner, Depends(get_runner)]
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="The run's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and same body: the same run. Same key, other body: 422.",
    ),
]

BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchSpec"}}},
    }
}

# What a client does next with an accepted run (clients and stateful tests follow them).
BATCH_LINKS = {
    name: {
        "operationId": operation,
        "parameters": {"run_id": "$response.body#/id"},
        "description": description,
    }
    for name, operation, description in (
        ("ReadBatch", "read_batch_v1_batches__run_id__get", "Read the run."),
        ("ReadBatchResults", "read_batch_results_v1_batches__run_id__results_get", "Its output."),
        ("FollowBatchEvents", "follow_batch_v1_batches__run_id__events_get", "Its progress."),
        ("CancelBatch", "cancel_batch_v1_batches__run_id__cancel_post", "Cancel it."),
    )
}

RESULTS_DESCRIPTION = (
    "The run's output as JSON lines (`application/x-ndjson`), one per item written so far, "
    "each item once: `index` (its position in `items`), `id` (with `id_field`), `ok`, then "
    "`result` or `error` and `type`. With `failed=true`, the errors file instead: one line per "
    "failed item with `index`, `skill`, `error`, `type` and the `item`. Lines are in the order "
    "chunks finished, not by index."
)
EVENTS_DESCRIPTION = (
    "A Server-Sent Events stream (`retry: 1000` first). `progress` carries a BatchProgress "
    "(#/components/schemas/BatchProgress) each time items are written or the status changes; "
    "`end` the BatchRun, once, when the run is no longer running, and the stream closes; "
    "`error` a StreamError when the stream cannot go on. Event ids are the items done: "
    "reconnect with Last-Event-ID to skip progress already seen. Comment lines "
    "(`: keep-alive`) keep idle connections open."
)
EVENTS_EXAMPLE = (
    "retry: 1000\n\n"
    "event: progress\nid: 50\n"
    'data: {"done": 50, "failed": 0, "total": 100, "status": "running", "cache_hits": 0, '
    '"items_per_s": 812.4}\n\n'
    "event: end\nid: 100\n"
    'data: {"id": "3f2a9c1d0b7e4a65", "status": "succeeded", "...": "the BatchRun"}\n\n'
)


@router.post(
    "",
    status_code=202,
    response_model=BatchAccepted,
    responses={**responses(400, 409, 413, 415, 422), 202: {"links": BATCH_LINKS}},
    openapi_extra=BATCH_BODY,
    summary="Start a batch run over inline items",
    description=(
        "Checks the skill, the params and every item (422 naming the field), writes the items "
        "as the run's input on the server, records the run with the key's tenant and drives "
        "it in the background; 202 with its id and links (Location: the run). The body is "
        "bounded by the body limit (413) and `api_max_batch_items`."
    ),
)
async def submit_batch(
    request: Request,
    principal: SubmitPrincipal,
    runner: Runner,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    data = jobs.decode_json(await request.body(), request.headers.get("content-type"))
    try:
        spec = BatchSpec.model_validate(data)
    except ValidationError as exc:
        raise jobs.validation_error(exc) from exc
    accepted, replayed = await run_in_threadpool(runner.start, principal, spec, idempotency_key)
    headers = {"Location": accepted["links"]["self"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        json.dumps(accepted), status_code=202, media_type="application/json", headers=headers
    )


@router.get("", response_model=BatchRunList, responses=responses(422), summary="List your runs")
def list_batches(
    principal: ReadPrincipal,
    runner: Runner,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The caller's tenant's batch runs, newest first (as victor batch list)."""
    return {"items": [run_view(record) for record in runner.list_runs(principal, limit)]}


@router.get(
    "/{run_id}", response_model=BatchRun, responses=responses(404, 422), summary="Read a run"
)
def read_batch(run_id: RunId, principal: ReadPrincipal, runner: Runner) -> dict[str, Any]:
    """Status and progress: items done and failed, cache hits, items/s (as victor batch show)."""
    return run_view(runner.get(principal, run_id))


@router.get(
    "/{run_id}/results",
    responses={
        **responses(404, 422),
        200: {
            "description": RESULTS_DESCRIPTION,
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": RESULTS_DESCRIPTION},
                    "example": '{"index":0,"ok":true,"result":1}\n'
                    '{"index":1,"ok":false,"error":"...","type":"SkillInputError"}\n',
                }
            },
        },
    },
    response_class=StreamingResponse,
    summary="Stream a run's output lines",
)
def read_batch_results(
    run_id: RunId,
    principal: ReadPrincipal,
    runner: Runner,
    failed: Annotated[bool, Query(description="The errors file: failed items only.")] = False,
) -> StreamingResponse:
    return StreamingResponse(
        runner.output(principal, run_id, failed), media_type="application/x-ndjson"
    )


@router.get(
    "/{run_id}/events",
    responses=event_stream_responses(EVENTS_DESCRIPTION, EVENTS_EXAMPLE),
    response_class=StreamingResponse,
    summary="Follow a run's progress as Server-Sent Events",
)
async def follow_batch(
    run_id: RunId,
    principal: ReadPrincipal,
    runner: Runner,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
) -> StreamingResponse:
    await run_in_threadpool(runner.get, principal, run_id)
    events = BatchEvents(runner, principal, run_id)
    return StreamingResponse(
        events.stream(parse_last_event_id(last_event_id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/{run_id}/cancel",
    response_model=BatchRun,
    responses=responses(404, 409, 422),
    summary="Cancel a run",
    description=(
        "Marks the run cancelled (as `victor batch cancel`); its driver stops at its next "
        "check, within seconds. The record and the lines written so far stay readable. A "
        "finished run cannot be cancelled (409); cancelling a cancelled run answers it again."
    ),
)
def cancel_batch(run_id: RunId, principal: SubmitPrincipal, runner: Runner) -> dict[str, Any]:
    return run_view(runner.cancel(principal, run_id))
