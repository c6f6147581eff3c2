"""Settings: the performance guide's knobs, connections and delivery (env prefix VICTOR_)."""

from __future__ import annotations

import json
import math
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from workers.core.errors import ConfigError
from workers.core.profiles import PROFILES, ProfileName
from workers.core.setting_rules import check_ordering, fetch_host, fit_single_flight


class Mode(StrEnum):
    """Where tasks run: in this process (embedded) or on a Redis-backed fleet (distributed)."""

    EMBEDDED = "embedded"
    DISTRIBUTED = "distributed"


# Presets from the guide. A preset only fills settings the caller did not give explicitly.

_ENV_PREFIX = "VICTOR_"


class Settings(BaseSettings):
    """All settings of a victor-fleet process; build once per entry point and pass down."""

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX,
        validate_assignment=True,
        extra="forbid",
        env_ignore_empty=True,
    )

    profile: ProfileName = "default"

    # --- lazy loading -----------------------------------------------------------------
    lazy_loading_enabled: bool = True
    lazy_loading_memory_threshold: int = Field(512, ge=16, le=1_048_576, description="MB")
    lazy_loading_cpu_threshold: float = Field(0.7, gt=0.0, le=1.0)
    lazy_load_planning: bool = True
    lazy_load_memory: bool = True
    lazy_load_skills: bool = True
    lazy_load_personas: bool = True
    lazy_load_tool_executor: bool = False
    lazy_loading_prewarm_delay_s: float = Field(30.0, ge=0, le=86_400)

    # --- parallel execution -----------------------------------------------------------
    parallel_execution_enabled: bool = True
    max_parallel_workers: int = Field(4, ge=1, le=256)
    parallel_threshold: int = Field(3, ge=1, le=1_000_000)
    skill_chaining_parallel_enabled: bool = True

    # --- caching ------------------------------------------------------------------------
    tool_selection_cache_enabled: bool = True
    tool_selection_cache_size: int = Field(1000, ge=1, le=10_000_000)
    tool_selection_cache_ttl: int = Field(3600, ge=1, le=31_536_000, description="seconds")
    tool_selection_cache_query: bool = True
    tool_selection_cache_context: bool = True
    tool_selection_cache_rl: bool = True
    tool_selection_max_tools: int = Field(10, ge=1, le=1000)
    response_cache_enabled: bool = True
    response_cache_size: int = Field(1000, ge=1, le=10_000_000)
    response_cache_ttl: int = Field(3600, ge=1, le=31_536_000, description="seconds")
    embedding_cache_enabled: bool = True
    embedding_cache_size: int = Field(10_000, ge=1, le=10_000_000)
    embedding_cache_ttl: int = Field(86_400, ge=1, le=31_536_000, description="seconds")
    cache_auto_invalidate: bool = True
    cache_auto_invalidate_interval: int = Field(300, ge=1, le=86_400, description="seconds")
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="L1 byte bound per cache")
    cache_hmac_key: SecretStr = SecretStr("victor-fleet-dev-key-change-me")
    # Unset, the two below shrink to fit a short soft time limit (see _fit_single_flight).
    cache_single_flight_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="how long a miss waits for another process's value"
    )
    cache_single_flight_lease_s: float = Field(
        3.0, gt=0, le=3600, description="a single-flight lock's lease, renewed by its live owner"
    )
    # Embedded mode's persistent L2 (a SQLite file in this directory) when no cache_url is set;
    # "" or "none" keeps no file (L1 only).
    cache_dir: str = Field(default_factory=lambda: _default_cache_dir())

    # --- memory ---------------------------------------------------------------------------
    memory_limit_mb: int = Field(1024, ge=32, le=1_048_576)
    memory_warning_threshold: float = Field(0.8, gt=0.0, le=1.0)
    episodic_memory_max_episodes: int = Field(1000, ge=1, le=10_000_000)
    semantic_memory_max_facts: int = Field(5000, ge=1, le=10_000_000)
    enable_episodic_memory: bool = True
    enable_semantic_memory: bool = True
    use_memory_pools: bool = True
    memory_pool_size: int = Field(10, ge=1, le=10_000)
    episodic_memory_retention_days: int = Field(30, ge=1, le=3650)
    memory_consolidate_interval_s: int = Field(300, ge=1, le=86_400)

    # --- metrics and monitoring -----------------------------------------------------------
    metrics_enabled: bool = True
    metrics_flush_interval_s: float = Field(1.0, gt=0, le=60)
    metrics_bucket_s: int = Field(10, ge=1, le=3600)
    metrics_retention_s: int = Field(900, ge=10, le=86_400)
    metrics_window_s: int = Field(60, ge=1, le=86_400)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9808, ge=1, le=65_535)
    alert_avg_latency_ms: float = Field(2000.0, gt=0, le=86_400_000)
    alert_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)
    alert_error_rate: float = Field(0.05, ge=0.0, le=1.0)
    alert_min_tasks: int = Field(5, ge=1, le=1_000_000)
    alert_debounce_s: float = Field(30.0, ge=0, le=86_400)
    alert_webhook_url: str = ""
    monitor_interval_s: float = Field(10.0, gt=0, le=86_400)

    # --- tuner (orchestrator.tuner; a worker's own values also bound it, or opt it out) ----
    tuner_enabled: bool = True
    tuner_min_concurrency: int = Field(1, ge=1, le=256)
    tuner_max_concurrency: int = Field(16, ge=1, le=256)
    tuner_interval_s: float = Field(2.0, gt=0, le=3600)
    tuner_max_step: int = Field(8, ge=1, le=256)
    tuner_cooldown_s: float = Field(2.0, ge=0, le=86_400)
    tuner_decisions_ttl_s: int = Field(86_400, ge=60, le=2_592_000)
    tuner_scale_down_intervals: int = Field(30, ge=1, le=100_000)

    # --- providers ------------------------------------------------------------------------
    provider: Literal["none", "openai", "anthropic", "ollama", "vllm", "local"] = "none"
    model: str = ""
    provider_base_url: str = ""
    provider_api_key: SecretStr = SecretStr("")
    anthropic_timeout: float = Field(60.0, gt=0, le=3600)
    anthropic_max_retries: int = Field(3, ge=0, le=20)
    anthropic_concurrent_requests: int = Field(5, ge=1, le=1000)
    openai_timeout: float = Field(60.0, gt=0, le=3600)
    openai_max_retries: int = Field(3, ge=0, le=20)
    openai_concurrent_requests: int = Field(5, ge=1, le=1000)
    local_provider_timeout: float = Field(120.0, gt=0, le=3600)
    local_provider_batch_size: int = Field(8, ge=1, le=4096)
    connection_pool_size: int = Field(10, ge=1, le=1000)
    connection_pool_max_overflow: int = Field(20, ge=0, le=1000)
    local_provider_max_retries: int = Field(2, ge=0, le=20)
    local_provider_concurrent_requests: int = Field(4, ge=1, le=1000)
    # Embeddings model ("" = the provider's usual one; local servers use ``model``).
    embedding_model: str = ""
    # A fleet-wide provider slot is a lease: renewed while its call runs, freed this long after
    # its holder dies.
    provider_slot_lease_s: float = Field(10.0, ge=0.5, le=3600)
    # Persona presets (YAML files); "" = none.
    personas_dir: str = ""

    # --- planning -------------------------------------------------------------------------
    enable_hierarchical_planning: bool = False

    # --- connections ----------------------------------------------------------------------
    redis_url: str | None = None
    broker_url: str | None = None
    result_backend_url: str | None = None
    cache_url: str | None = None
    key_prefix: str = Field("victor", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    tenant: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    # --- delivery -------------------------------------------------------------------------
    task_time_limit_s: int = Field(300, ge=1, le=86_400)
    task_soft_time_limit_s: int = Field(270, ge=1, le=86_400)
    visibility_timeout_s: int = Field(600, ge=2, le=604_800)
    reconciler_stale_after_s: int = Field(900, ge=3, le=604_800)
    max_deliveries: int = Field(5, ge=1, le=100)
    worker_prefetch_multiplier: int = Field(1, ge=1, le=1000)
    worker_concurrency: int | None = Field(None, ge=1, le=256)
    result_expires_s: int = Field(86_400, ge=60, le=2_592_000)
    embedded_polling_interval_s: float = Field(0.001, gt=0, le=5)
    # Restore sweep for unacked messages of dead workers (kombu; 0 = visibility_timeout_s / 5).
    unacked_restore_interval_s: int = Field(0, ge=0, le=86_400)
    # Presence: a worker's main process refreshes its heartbeat every interval; a worker whose
    # heartbeat is older than the TTL is dead, and the tasks it held go back to the queue.
    worker_heartbeat_interval_s: float = Field(2.0, gt=0, le=600)
    worker_heartbeat_ttl_s: float = Field(6.0, gt=0, le=3600)
    # Where the effect probe records its executions (fault tests' oracle); unset = disabled.
    audit_path: Path | None = None

    # --- API, client and Flower ------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65_535)
    api_keys_file: Path | None = None
    api_max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    api_rate_limit: int = Field(600, ge=1, le=10_000_000, description="requests per window")
    api_rate_window_s: int = Field(60, ge=1, le=86_400)
    api_idempotency_ttl_s: int = Field(86_400, ge=60, le=2_592_000)
    api_public_metrics: bool = False
    # FastAPI's own OpenTelemetry spans, metrics and logs per request (FastAPI 0.165 and later,
    # with opentelemetry installed): off unless asked for, since /metrics already serves the
    # fleet's figures and each request pays for them.
    api_opentelemetry: bool = False
    # Per tenant, read by orchestrator/api/quotas.py when a job is submitted.
    api_probe_skills_enabled: bool = False  # leak, effect, sleep: test probes, off for tenants
    api_max_items_per_job: int = Field(10_000, ge=1, le=10_000_000)
    api_max_jobs_in_flight: int = Field(20, ge=1, le=100_000)
    # Items of a tenant's jobs in flight (its queued work); a job is refused past it unless the
    # tenant has nothing in flight.
    api_max_items_in_flight: int = Field(100_000, ge=1, le=100_000_000)
    # Batch runs through the API (orchestrator/api/batches.py): inline items per run, and the
    # directory where the API keeps each run's input and output files ("" = cache_dir/batches).
    api_max_batch_items: int = Field(100_000, ge=1, le=10_000_000)
    batch_dir: str = ""
    api_url: str = "http://127.0.0.1:8000"
    api_key: SecretStr = SecretStr("")
    flower_basic_auth: SecretStr = SecretStr("")

    # --- planner / skills -----------------------------------------------------------------
    chunk_size: int = Field(50, ge=1, le=100_000)
    # Batch runs without --chunk-size size their chunks so one takes about this long on a
    # worker, from the skill's observed time per item (0: always chunk_size).
    batch_chunk_target_ms: float = Field(250.0, ge=0, le=3_600_000)
    max_fan_out: int = Field(200_000, ge=1, le=10_000_000)
    # VICTOR_ALLOWED_ROOTS: one path, paths joined by ":" (as PATH) or ",", or a JSON list.
    allowed_roots: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [Path.cwd()])
    max_file_bytes: int = Field(2 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024)
    # The fetch skill (C8): the hosts it may reach, as names or addresses, comma-separated or a
    # JSON list; empty = fetch is off. A name never allows a loopback, private, link-local or
    # metadata address it resolves to: list that address itself.
    fetch_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    fetch_timeout_s: float = Field(10.0, gt=0, le=3600, description="whole request")
    fetch_max_bytes: int = Field(1024 * 1024, ge=1, le=1024 * 1024 * 1024)
    fetch_max_redirects: int = Field(5, ge=0, le=50)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from exc
        except SettingsError as exc:  # an environment value that does not decode
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            raise ConfigError(f"{exc}{cause}; a list setting takes a JSON list") from exc

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from exc

    @field_validator(
        "tool_selection_cache_ttl", "response_cache_ttl", "embedding_cache_ttl", mode="before"
    )
    @classmethod
    def _whole_ttl_seconds(cls, value: Any) -> Any:
        # The guide scales TTLs on a live system (``settings.tool_selection_cache_ttl *= 1.5``):
        # a fractional result rounds up to whole seconds instead of failing.
        if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
            return math.ceil(value)
        return value

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir(cls, value: str) -> str:
        value = value.strip()
        return "" if value.lower() == "none" else os.path.expanduser(value)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _allowed_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list of paths ({exc.msg})") from exc
            parts = [part.strip() for part in text.replace(",", os.pathsep).split(os.pathsep)]
            value = [part for part in parts if part]
            if not value:
                raise ValueError("no path given: name at least one directory")
        return value

    @field_validator("fetch_allowed_hosts", mode="before")
    @classmethod
    def _fetch_allowed_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(value, list | tuple):
            return value  # the type check reports it
        return [fetch_host(str(entry)) for entry in value if str(entry).strip()]

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("profile", "default")
        if name not in PROFILES:
            known = ", ".join(PROFILES)
            raise ValueError(f"unknown profile {name!r}; known profiles: {known}")
        for key, value in PROFILES[name].items():
            data.setdefault(key, value)
        fit_single_flight(data, cls.model_fields)  # after the profile: it may set time limits
        return data

    @model_validator(mode="after")
    def _check_ordering(self) -> Settings:
        check_ordering(self)
        return self

    # --- derived --------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        """Embedded when no broker URL is set, else distributed."""
        return Mode.DISTRIBUTED if (self.broker_url or self.redis_url) else Mode.EMBEDDED

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url or "memory://"

    @property
    def effective_backend_url(self) -> str:
        return self.result_backend_url or self.redis_url or "cache+memory://"

    @property
    def state_url(self) -> str:
        """The Redis that holds the fleet's state (ledger, metrics, presence, alerts, episodes).

        The one answer every process uses: the result backend's Redis, else ``redis_url``, else
        the broker's. Only meaningful in distributed mode.
        """
        return self.result_backend_url or self.redis_url or self.effective_broker_url

    @property
    def effective_cache_url(self) -> str | None:
        return self.cache_url or self.redis_url

    @property
    def effective_concurrency(self) -> int:
        return self.worker_concurrency or self.max_parallel_workers


def _default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/victor-fleet``, else ``~/.cache/victor-fleet``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "victor-fleet")


def _describe(exc: ValidationError) -> str:
    """Turn a pydantic error into lines that name the setting, its env var and the rule."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        env = f" (env {_ENV_PREFIX}{field.upper()})" if error["loc"] else ""
        shown = error.get("input")
        value = "" if isinstance(shown, dict) else f" = {shown!r}"
        accepted = _accepted_range(field)
        lines.append(f"invalid setting {field}{env}{value}: {error['msg']}{accepted}")
    return "; ".join(lines)


def _accepted_range(field: str) -> str:
    """``"; accepted range: 1 <= name <= 256"`` from the field's bounds, or ``""``."""
    info = Settings.model_fields.get(field)
    if info is None:
        return ""
    low = high = ""
    for bound in info.metadata:
        if getattr(bound, "ge", None) is not None:
            low = f"{bound.ge} <= "
        elif getattr(bound, "gt", None) is not None:
            low = f"{bound.gt} < "
        elif getattr(bound, "le", None) is not None:
            high = f" <= {bound.le}"
        elif getattr(bound, "lt", None) is not None:
            high = f" < {bound.lt}"
    if not (low or high):
        return ""
    return f"; accepted range: {low}{field}{high}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and explicit overrides (the entry points' one call)."""
    return Settings(**overrides)
