"""The async Python facade of the performance guide: ``Orchestrator(settings=...)``.

Every call the guide makes is a coroutine, awaited as the guide writes it. The cache, metrics
and memory calls also run without an event loop on ``orchestrator.sync`` (the functions the
CLI and the API call). Assignments on ``orchestrator.settings`` take effect at the next call:
the parallel window, parallel_threshold, and the caches' bounds, TTLs and switches (the live
caches are retuned, not emptied).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from orchestrator.core.plan import GoalSpec, Plan, PlannedStep, StepSpec
from orchestrator.core.session import Session
from orchestrator.facade.admin import AdminCalls, EpisodicMemoryCalls
from workers.core.errors import JobError, PlanError
from workers.core.paths import confine
from workers.core.setting_status import warn_no_effect
from workers.core.settings import Settings, load_settings
from workers.runtime import runtime_of
from workers.skills.executor import SkillExecutor

# One dict for every tool, or one per tool (the guide writes both).
ToolParameters = Mapping[str, Any] | list[dict[str, Any]] | None

# Components of the guide's lazy_load_* settings and the modules that implement them.
COMPONENT_MODULES: dict[str, tuple[str, ...]] = {
    "planning": ("orchestrator.core.planner", "orchestrator.core.text_planning"),
    "memory": ("workers.maintenance.episodes",),
}


class Orchestrator:
    """Run skills, plans and chains on the fleet (or the embedded worker) from asyncio code."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        warn_no_effect(self.settings)
        self._session: Session | None = None
        self._lock = threading.Lock()
        self.loaded_components: set[str] = set()
        self.planning = Planning(self)
        self.skills = Skills(self)
        self.sync = AdminCalls(lambda: self.settings, self.load_component)
        self.episodic_memory = EpisodicMemoryCalls(self.sync)
        for component in COMPONENT_MODULES:
            if not self._lazy(component):
                self.load_component(component)

    def _lazy(self, component: str) -> bool:
        return self.settings.lazy_loading_enabled and bool(
            getattr(self.settings, f"lazy_load_{component}", True)
        )

    def load_component(self, component: str) -> None:
        """Import a component's modules (on first use when lazy, at start when eager)."""
        for module in COMPONENT_MODULES[component]:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
        self.loaded_components.add(component)

    @property
    def session(self) -> Session:
        with self._lock:
            if self._session is None:
                self._session = Session(self.settings).start()
            return self._session

    async def started_session(self) -> Session:
        """The session, started in a thread (an embedded worker takes a moment to start)."""
        if self._session is not None:
            return self._session
        return await asyncio.to_thread(lambda: self.session)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await asyncio.to_thread(session.close)

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- running ------------------------------------------------------------------------
    async def execute_tool(
        self, name: str, parameters: Mapping[str, Any] | None = None, /, **params: Any
    ) -> Any:
        """Run one skill and return its value.

        Parameters come as a dict, as keywords, or both. Input that does not fit the skill
        raises ``SkillInputError`` naming the field before anything runs; a failure while it
        runs raises ``JobError``.
        """
        results = await self.execute_tools_parallel(
            [name], [{**(parameters or {}), **params}], max_workers=1
        )
        outcome = results[0]
        if not outcome["ok"]:
            raise JobError(f"skill {name!r} failed: {outcome['error']}")
        return outcome["value"]

    async def chat(
        self, message: str | list[dict[str, str]], use_cache: bool = True, **options: Any
    ) -> str:
        """Send a message (or a list of ``{"role", "content"}``) to the provider; the answer.

        Runs the ``chat`` skill on the fleet; ``options`` are its other fields (``persona``,
        ``system``, ``model``, ``temperature``, ``max_tokens``).
        """
        messages = [{"role": "user", "content": message}] if isinstance(message, str) else message
        value = await self.execute_tool("chat", messages=messages, use_cache=use_cache, **options)
        return str(value["text"])

    async def execute_tools_parallel(
        self,
        tools: list[str],
        parameters: ToolParameters = None,
        max_workers: int | None = None,
    ) -> list[dict[str, Any]]:
        """Run skills concurrently with a rolling window; results keep the request order.

        ``parameters``: one dict given to every tool, or a list with one dict per tool. Each
        result is ``{"tool", "ok", "value"}`` or ``{"tool", "ok": false, "error"}``. Every input
        is checked before anything runs. Below ``parallel_threshold`` calls (or with parallel
        execution off) they run inline; ``max_workers`` defaults to ``max_parallel_workers``.
        """
        per_tool = tool_parameters(tools, parameters)
        window = max_workers or self.settings.max_parallel_workers
        if window < 1:
            raise PlanError(f"max_workers={window} is invalid; pass 1 or more")
        session = await self.started_session()
        executor = runtime_of(session.app).executor
        for tool, params in zip(tools, per_tool, strict=True):
            check_input(executor, tool, params)
        steps = [
            PlannedStep(skill=tool, items=[params])
            for tool, params in zip(tools, per_tool, strict=True)
        ]
        inline = (not self.settings.parallel_execution_enabled) or (
            len(tools) < self.settings.parallel_threshold
        )
        plan = Plan(name="tools", steps=steps, chunk_size=1, inline=inline)
        outcomes = await asyncio.to_thread(self._run_windowed, plan, window)
        return [dict(outcome, tool=tool) for tool, outcome in zip(tools, outcomes, strict=True)]

    def _run_windowed(self, plan: Plan, window: int) -> list[dict[str, Any]]:
        from orchestrator.core.dispatcher import dispatch_plan, publish_window, record_job

        app = self.session.app
        if plan.inline:
            handle = dispatch_plan(app, plan)
            events = runtime_of(app).ledger.events(handle.job_id)
            by_task = {event.task_id: event.outcome for event in events}
            return [by_task[task_id][0] for task_id in handle.task_ids]
        job_id, task_ids, chunks = record_job(app, plan, tenant=self.settings.tenant)
        by_task = publish_window(app, job_id, task_ids, chunks, window)
        return [by_task[task_id][0] for task_id in task_ids]

    async def plan(self, text: str) -> Plan:
        """Plan a goal sentence without running it (``planning.plan_for_goal`` on text)."""
        return await self.planning.plan_for_goal(text)

    async def execute_task(self, task: GoalSpec | dict[str, Any] | str) -> dict[str, Any]:
        """Plan and run a goal (spec, dict or text) to its end; return the finished job."""
        from orchestrator.core.dispatcher import dispatch_plan, wait_job

        plan = await self.planning.plan_for_goal(task)
        session = await self.started_session()
        handle = await asyncio.to_thread(dispatch_plan, session.app, plan)
        job = await asyncio.to_thread(wait_job, handle)
        return job.as_dict()

    def batch(self, items: Any, skill: str, *, out: str, **options: Any) -> Any:
        """A resumable batch run of ``skill`` over ``items`` (a JSONL/CSV file, a directory or
        an iterable of dicts) into ``out``: ``await`` the handle for the run's summary, or
        ``async for`` over it for each output line. ``options``: params, id_field, chunk_size,
        window."""
        from orchestrator.batch.handle import start_batch  # on first use: its modules are many

        return start_batch(
            lambda: self.session.app, self.settings, items, skill, out=out, **options
        )

    # --- caches, metrics, memory: ``self.sync`` holds the calls, awaited here in a thread --
    async def get_cache_stats(self) -> dict[str, Any]:
        """``hit_rate``, ``miss_rate``, ``current_size``, ``max_size``, ``evictions`` and the
        rest of the caches' figures, summed over the fleet."""
        return await asyncio.to_thread(self.sync.get_cache_stats)

    async def invalidate_cache(
        self, cache_type: str | None = None, pattern: str = "*"
    ) -> dict[str, Any]:
        """Remove matching entries (``cache_type``: tool_selection, response, embedding, or
        None for all; ``pattern``: a glob such as ``"*auth*"``) from L2 and every L1."""
        return await asyncio.to_thread(self.sync.invalidate_cache, cache_type, pattern)

    async def clear_expired_cache(self) -> dict[str, Any]:
        """Drop expired entries now, in every process of the fleet."""
        return await asyncio.to_thread(self.sync.clear_expired_cache)

    async def get_metrics(self) -> dict[str, Any]:
        """``avg_latency`` (ms), ``error_rate`` (0..1), ``memory_usage`` (MB, the largest
        process: compare it with ``memory_limit_mb``), and the per-skill and per-worker detail."""
        return await asyncio.to_thread(self.sync.get_metrics)

    async def consolidate_memories(self) -> dict[str, Any]:
        """Turn finished jobs (episodes) into per-skill facts for the planner and the tuner."""
        return await asyncio.to_thread(self.sync.consolidate_memories)


def tool_parameters(tools: list[str], parameters: ToolParameters) -> list[dict[str, Any]]:
    """One parameter dict per tool: a single dict is given (copied) to every tool."""
    if parameters is None:
        return [{} for _ in tools]
    if isinstance(parameters, Mapping):
        return [dict(parameters) for _ in tools]
    if len(parameters) != len(tools):
        raise PlanError(
            f"{len(tools)} tools but {len(parameters)} parameter sets; pass one dict for "
            "every tool, or a list with one dict per tool"
        )
    return [dict(params) for params in parameters]


def check_input(executor: SkillExecutor, tool: str, params: dict[str, Any]) -> None:
    """Refuse an unknown skill, input its model rejects (naming the field) or a file outside
    the allowed roots, before anything is dispatched."""
    spec, model = executor.validate(tool, params)
    if spec.file_param:
        confine(str(getattr(model, spec.file_param)), executor.settings.allowed_roots)


class Planning:
    """``orchestrator.planning``: goals to plans."""

    def __init__(self, owner: Orchestrator) -> None:
        self._owner = owner

    async def plan_for_goal(self, goal: GoalSpec | dict[str, Any] | str) -> Plan:
        """Turn a goal (spec, dict or sentence) into a Plan.

        A sentence is planned by ``text_planning``: skills ranked by ``select_tools`` (through
        the tool_selection cache), split into sub-goals first with
        ``enable_hierarchical_planning``.
        """
        self._owner.load_component("planning")
        from orchestrator.core.goals import parse_goal
        from orchestrator.core.planner import plan_goal
        from orchestrator.core.text_planning import plan_for_goal

        settings = self._owner.settings
        runtime = runtime_of((await self._owner.started_session()).app)
        registry = runtime.registry
        if isinstance(goal, str):
            executor = runtime.executor

            def rank(query: str) -> list[list[Any]]:
                return list(executor.run("select_tools", {"query": query[:10_000]})["tools"])

            text = goal
            ranker = rank if "select_tools" in registry.names() else None
            spec = await asyncio.to_thread(
                lambda: plan_for_goal(text, settings, registry, ranker=ranker)
            )
        elif isinstance(goal, dict):
            spec = parse_goal(goal)
        else:
            spec = goal
        return await asyncio.to_thread(plan_goal, spec, settings, registry)


class Skills:
    """``orchestrator.skills``: skill chains."""

    def __init__(self, owner: Orchestrator) -> None:
        self._owner = owner

    async def plan_chain(
        self,
        goal: str,
        skills: list[str],
        execution_strategy: str = "parallel",
        params: dict[str, Any] | None = None,
        paths: list[str] | None = None,
    ) -> Plan:
        """One step per skill over the same inputs; parallel steps run as one group,
        sequential ones as a chain (only when skill_chaining_parallel_enabled allows)."""
        if execution_strategy not in ("parallel", "sequential"):
            raise PlanError(
                f"execution_strategy {execution_strategy!r} is invalid; use 'parallel' or "
                "'sequential'"
            )
        settings = self._owner.settings
        if execution_strategy == "parallel" and not settings.skill_chaining_parallel_enabled:
            execution_strategy = "sequential"
        steps = [
            StepSpec(
                skill=skill,
                paths=paths or [],
                params=params or {},
                items=[] if paths else [dict(params or {})],
            )
            for skill in skills
        ]
        spec = GoalSpec(name=goal[:200] or "chain", steps=steps, strategy=execution_strategy)
        return await self._owner.planning.plan_for_goal(spec)

    async def execute_chain(self, chain: Plan) -> dict[str, Any]:
        """Run a planned chain; returns the job with every task's outcomes by step."""
        from orchestrator.core.dispatcher import dispatch_plan, wait_job

        app = (await self._owner.started_session()).app
        handle = await asyncio.to_thread(dispatch_plan, app, chain)
        job = await asyncio.to_thread(wait_job, handle)
        events = runtime_of(app).ledger.events(handle.job_id, 0, len(handle.task_ids) + 1)
        by_task = {event.task_id: event.outcome for event in events}
        steps: list[list[Any]] = [[] for _ in chain.steps]
        for task_id, (step, _, _) in zip(handle.task_ids, chain.chunks(), strict=True):
            steps[step].extend(by_task.get(task_id, []))
        return {**job.as_dict(), "steps": steps}


def wait_for(predicate: Any, timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll ``predicate`` until true or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())
