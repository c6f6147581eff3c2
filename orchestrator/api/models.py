"""Response models of the API (they make the OpenAPI schema say what each route returns)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["accepted", "running", "succeeded", "partial", "failed", "revoked"]


class FieldProblem(BaseModel):
    """One invalid field of a request: where it is and what is wrong with it."""

    field: str = Field(description="Dotted path of the field, for example steps.0.skill.")
    message: str


class ErrorBody(BaseModel):
    """The error itself: a stable code, a message that names the fix, and field problems."""

    code: str = Field(description="Stable machine-readable code, for example rate_limited.")
    message: str
    fields: list[FieldProblem] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the API has this shape."""

    error: ErrorBody


class JobLinks(BaseModel):
    """Where to read a job, its results and its event stream."""

    self: str
    results: str
    events: str


class JobAccepted(BaseModel):
    """Answer to a submission: the job is recorded in the ledger and its tasks are queued."""

    job_id: str
    status: JobStatus
    total_tasks: int
    links: JobLinks


class Job(BaseModel):
    """A job as the ledger holds it."""

    job_id: str
    name: str
    status: JobStatus
    created_at: float = Field(description="Unix time, seconds.")
    updated_at: float = Field(description="Unix time, seconds.")
    total_tasks: int
    done_tasks: int
    items: int = Field(0, description="Items in the job's plan.")
    failed_items: int = Field(0, description="Items whose skill call failed.")
    result: Any = Field(None, description="The reduce step's value, when the job has one.")
    error: str | None = None
    failures: dict[str, Any] | None = Field(
        None, description="Failed items grouped by reason, with examples (read a job)."
    )
    links: JobLinks


class JobPage(BaseModel):
    """One page of the caller's jobs, newest first."""

    items: list[Job]
    next: str | None = Field(None, description="URL of the next page, or null on the last.")


class TaskResult(BaseModel):
    """One finished task of a job: its outcomes in completion order (seq starts at 1)."""

    seq: int
    task_id: str
    worker: str
    outcome: Any = Field(description="The task's list of per-item outcomes.")


class JobProgress(BaseModel):
    """The data of a ``progress`` event: tasks done of all, and the job's status."""

    done: int
    total: int
    status: JobStatus


class StreamError(BaseModel):
    """The data of an ``error`` event; reconnect with Last-Event-ID to resume."""

    message: str


class ResultPage(BaseModel):
    """One page of a job's task results, in completion order."""

    items: list[TaskResult]
    next: str | None = Field(None, description="URL of the next page, or null when caught up.")


class Skill(BaseModel):
    """An installed skill and its input schema."""

    name: str
    description: str
    task: str
    cacheable: bool
    input_schema: dict[str, Any]


class SkillList(BaseModel):
    items: list[Skill]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether the API can take jobs: Redis answers and at least one worker is ready."""

    status: Literal["ready", "not_ready"]
    redis: bool
    workers: int


class CacheStats(BaseModel):
    """Hit and miss figures (L1 and L2), rates, sizes and bytes, per cache and summed."""

    model_config = ConfigDict(extra="allow")

    scope: str = Field(description="fleet (every process on this Redis) or process.")
    l2: str = Field(description="up, down or none.")
    caches: dict[str, dict[str, Any]]


class CacheInvalidation(BaseModel):
    """Which entries to drop: one cache or all, and a glob over ``skill:version:digest``."""

    model_config = ConfigDict(extra="forbid")

    cache: Literal["all", "tool_selection", "response", "embedding"] = "all"
    pattern: str = Field("*", min_length=1, max_length=500)


class CacheInvalidated(BaseModel):
    """What an invalidation removed (the caller's tenant only)."""

    model_config = ConfigDict(extra="allow")

    match: str
    l1_removed: int
    l2_removed: int


class FleetMetrics(BaseModel):
    """Fleet figures over the metrics window: latency, throughput, memory, queue depth."""

    model_config = ConfigDict(extra="allow")

    window_s: float
    fleet: dict[str, Any]
    skills: dict[str, Any]
    workers: dict[str, Any]
    queue: dict[str, Any] = Field(
        description="queued, reserved, active and depth (= queued + reserved + active)."
    )


class TunerDecision(BaseModel):
    """One tuner decision and its reason (an entry of the tuner's decision stream)."""

    model_config = ConfigDict(extra="allow")

    worker: str
    current: int
    target: int
    action: Literal["grow", "shrink", "hold"]
    rule: str = Field(description="clamp, memory, pool, cooldown, demand or climb.")
    reason: str
    at: float
    applied: str = Field(description="applied, partly, failed, held or dry-run.")


class TunerWorker(BaseModel):
    """One live worker as the tuner sees it: size, bounds, figures, last decisions."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["pool", "autoscale", "fixed"] = Field(
        description="pool: pool_grow/pool_shrink; autoscale: the autoscale bounds; fixed: none."
    )
    pool_type: str | None
    pool_size: int | None
    tracked_size: int | None
    bounds: dict[str, int]
    tuned: bool
    note: str
    decisions: list[TunerDecision]


class TunerStatus(BaseModel):
    """The tuner's view: the acting tuner (lease), replica advice and each worker."""

    model_config = ConfigDict(extra="allow")

    at: float
    enabled: bool
    interval_s: float
    lease: dict[str, Any] = Field(description="holder (the acting tuner) and expires_in_s.")
    fleet: dict[str, Any] | None = Field(
        description="desired_replicas, raw_replicas, capacity_per_replica, depth, decisions."
    )
    workers: dict[str, TunerWorker]


BatchStatus = Literal["running", "interrupted", "succeeded", "partial", "failed", "cancelled"]


class BatchSpec(BaseModel):
    """A batch run: one skill over inline items, as ``victor batch`` runs over a file."""

    model_config = ConfigDict(extra="forbid")

    skill: str = Field(min_length=1, max_length=200, description="The skill run on every item.")
    items: list[dict[str, Any]] = Field(
        min_length=1,
        description="The items, one object each (at most api_max_batch_items, and the body "
        "limit); each merged over params must fit the skill's input schema (GET /v1/skills).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Merged under each item (an item's own fields win)."
    )
    id_field: str | None = Field(
        None, min_length=1, max_length=200, description="Item field copied to each output line."
    )
    reduce: str | None = Field(
        None, min_length=1, max_length=200, description="A skill run over all results at the end."
    )
    reduce_params: dict[str, Any] = Field(default_factory=dict, description="For the reduce.")
    chunk_size: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Items per task (default: sized from the skill's observed time per item).",
    )


class BatchLinks(BaseModel):
    """Where to read a batch run, stream its output lines, follow its progress, cancel it."""

    self: str
    results: str
    events: str
    cancel: str


class BatchAccepted(BaseModel):
    """Answer to a batch submission: the run is recorded and its driver has started."""

    id: str
    status: BatchStatus
    items: int
    links: BatchLinks


class BatchRun(BaseModel):
    """A batch run as its record holds it, with its progress."""

    id: str
    status: BatchStatus
    skill: str
    created_at: float = Field(description="Unix time, seconds.")
    updated_at: float = Field(description="Unix time, seconds.")
    items: int | None = Field(None, description="Items in the run's input.")
    done_items: int = Field(description="Items written to the output (succeeded or failed).")
    failed_items: int
    cache_hits: int | None = Field(
        None, description="Response-cache hits while the run ran (fleet-wide; null: unknown)."
    )
    items_per_s: float | None = Field(None, description="Items run per second so far.")
    elapsed_s: float | None = Field(None, description="The driver's time, once the run ended.")
    error: str | None = None
    result: Any = Field(None, description="The reduce's value, when the run has one.")
    links: BatchLinks


class BatchRunList(BaseModel):
    """The caller's tenant's batch runs, newest first."""

    items: list[BatchRun]


class BatchProgress(BaseModel):
    """The data of a batch ``progress`` event."""

    done: int
    failed: int
    total: int | None
    status: BatchStatus
    cache_hits: int | None
    items_per_s: float | None
