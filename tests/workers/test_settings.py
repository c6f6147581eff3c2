"""Settings: the guide's names and defaults, profiles, validation that names the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workers.core.errors import ConfigError
from workers.core.settings import PROFILES, Mode, Settings

# Every setting of the performance guide (DESIGN.md's table) with the guide's default.
GUIDE_DEFAULTS: dict[str, Any] = {
    # lazy loading
    "lazy_loading_enabled": True,
    "lazy_loading_memory_threshold": 512,
    "lazy_loading_cpu_threshold": 0.7,
    "lazy_load_planning": True,
    "lazy_load_memory": True,
    "lazy_load_skills": True,
    "lazy_load_personas": True,
    "lazy_load_tool_executor": False,
    # parallel execution
    "parallel_execution_enabled": True,
    "max_parallel_workers": 4,
    "parallel_threshold": 3,
    "skill_chaining_parallel_enabled": True,
    # caching
    "tool_selection_cache_enabled": True,
    "tool_selection_cache_size": 1000,
    "tool_selection_cache_ttl": 3600,
    "tool_selection_cache_query": True,
    "tool_selection_cache_context": True,
    "tool_selection_cache_rl": True,
    "tool_selection_max_tools": 10,
    "response_cache_enabled": True,
    "response_cache_size": 1000,
    "response_cache_ttl": 3600,
    "embedding_cache_enabled": True,
    "embedding_cache_size": 10_000,
    "cache_auto_invalidate": True,
    "cache_auto_invalidate_interval": 300,
    # memory
    "memory_limit_mb": 1024,
    "memory_warning_threshold": 0.8,
    "episodic_memory_max_episodes": 1000,
    "semantic_memory_max_facts": 5000,
    "enable_episodic_memory": True,
    "enable_semantic_memory": True,
    "use_memory_pools": True,
    "memory_pool_size": 10,
    # providers
    "provider": "none",
    "model": "",
    "anthropic_timeout": 60.0,
    "anthropic_max_retries": 3,
    "anthropic_concurrent_requests": 5,
    "openai_timeout": 60.0,
    "openai_max_retries": 3,
    "openai_concurrent_requests": 5,
    "local_provider_timeout": 120.0,
    "local_provider_batch_size": 8,
    "connection_pool_size": 10,
    "connection_pool_max_overflow": 20,
    # planning
    "enable_hierarchical_planning": False,
}

# (setting, a value outside its range, the bounds the message must show)
OUT_OF_RANGE: list[tuple[str, Any, tuple[str, ...]]] = [
    ("max_parallel_workers", 0, ("1", "256")),
    ("max_parallel_workers", 257, ("1", "256")),
    ("lazy_loading_cpu_threshold", 1.5, ("0", "1")),
    ("memory_warning_threshold", 0.0, ("0", "1")),
    ("parallel_threshold", 0, ("1",)),
    ("tool_selection_cache_size", 0, ("1",)),
    ("memory_limit_mb", 8, ("32",)),
    ("chunk_size", 0, ("1",)),
    ("openai_max_retries", -1, ("0", "20")),
]


def test_every_guide_setting_exists_with_its_default() -> None:
    settings = Settings()
    missing = [name for name in GUIDE_DEFAULTS if name not in Settings.model_fields]
    assert not missing, f"guide settings missing from Settings: {missing}"
    wrong = {
        name: getattr(settings, name)
        for name, default in GUIDE_DEFAULTS.items()
        if getattr(settings, name) != default
    }
    assert not wrong, f"settings whose default differs from the guide: {wrong}"


def test_every_setting_reads_its_victor_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_TOOL_SELECTION_CACHE_SIZE", "500")
    monkeypatch.setenv("VICTOR_LAZY_LOADING_ENABLED", "false")
    monkeypatch.setenv("VICTOR_LAZY_LOADING_CPU_THRESHOLD", "0.5")
    monkeypatch.setenv("VICTOR_PROVIDER", "ollama")
    settings = Settings()
    assert settings.tool_selection_cache_size == 500
    assert settings.lazy_loading_enabled is False
    assert settings.lazy_loading_cpu_threshold == 0.5
    assert settings.provider == "ollama"


def test_env_list_settings_parse_as_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VICTOR_ALLOWED_ROOTS", f'["{tmp_path}", "/srv/code"]')
    assert Settings().allowed_roots == [tmp_path, Path("/srv/code")]


@pytest.mark.parametrize(
    "value", ["{root}", "{root}:/srv/code", "{root}, /srv/code", "{root}:/srv/code:"]
)
def test_allowed_roots_take_plain_paths_as_users_write_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    # The error messages say "set VICTOR_ALLOWED_ROOTS": a plain path must work (it raised
    # pydantic-settings' own traceback in every process, worker start included).
    monkeypatch.setenv("VICTOR_ALLOWED_ROOTS", value.format(root=tmp_path))
    expected = [tmp_path] if ("/srv" not in value) else [tmp_path, Path("/srv/code")]
    assert Settings().allowed_roots == expected


def test_a_malformed_allowed_roots_list_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_ALLOWED_ROOTS", '["/srv/code"')
    with pytest.raises(ConfigError, match=r"VICTOR_ALLOWED_ROOTS.*not a JSON list"):
        Settings()


def test_empty_env_values_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_MAX_PARALLEL_WORKERS", "")
    assert Settings().max_parallel_workers == 4


def test_explicit_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_MAX_PARALLEL_WORKERS", "12")
    assert Settings(max_parallel_workers=3).max_parallel_workers == 3


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_paralel_workers"):
        Settings(max_paralel_workers=3)


@pytest.mark.parametrize("name", ["production", "high_throughput", "low_latency"])
def test_profile_fills_its_preset(name: str) -> None:
    settings = Settings(profile=name)
    assert PROFILES[name], f"profile {name} presets nothing"
    for key, value in PROFILES[name].items():
        assert getattr(settings, key) == value, key


def test_default_profile_changes_nothing() -> None:
    assert Settings(profile="default").model_dump() == Settings().model_dump()


def test_profiles_differ_where_the_guide_says() -> None:
    production = Settings(profile="production")
    throughput = Settings(profile="high_throughput")
    latency = Settings(profile="low_latency")
    assert production.max_parallel_workers == 8
    assert production.lazy_loading_enabled is True
    assert throughput.max_parallel_workers == 16
    assert throughput.lazy_loading_enabled is False
    assert latency.lazy_loading_enabled is False
    assert latency.response_cache_ttl == 7200


def test_explicit_settings_override_the_preset() -> None:
    settings = Settings(profile="high_throughput", max_parallel_workers=3)
    assert settings.max_parallel_workers == 3
    assert settings.lazy_loading_enabled is False  # the rest of the preset still applies


def test_victor_profile_env_selects_a_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_PROFILE", "production")
    settings = Settings()
    assert settings.profile == "production"
    assert settings.max_parallel_workers == 8
    assert settings.memory_limit_mb == 2048


def test_env_setting_overrides_the_env_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_PROFILE", "high_throughput")
    monkeypatch.setenv("VICTOR_MAX_PARALLEL_WORKERS", "6")
    settings = Settings()
    assert settings.max_parallel_workers == 6
    assert settings.chunk_size == 200


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(profile="turbo")
    message = str(caught.value)
    assert "'turbo'" in message
    for name in PROFILES:
        assert name in message


@pytest.mark.parametrize(("name", "value", "bounds"), OUT_OF_RANGE)
def test_out_of_range_value_names_the_setting_and_range(
    name: str, value: Any, bounds: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**{name: value})
    message = str(caught.value)
    assert name in message
    assert f"VICTOR_{name.upper()}" in message
    assert repr(value) in message
    for bound in bounds:
        assert bound in message


def test_message_states_the_accepted_range() -> None:
    with pytest.raises(ConfigError, match=r"accepted range: 1 <= max_parallel_workers <= 256"):
        Settings(max_parallel_workers=0)


def test_assignment_is_validated() -> None:
    settings = Settings()
    with pytest.raises(ConfigError, match="max_parallel_workers") as caught:
        settings.max_parallel_workers = 0
    assert "256" in str(caught.value)
    assert settings.max_parallel_workers == 4


def test_assignment_the_guide_way_works() -> None:
    settings = Settings()
    settings.max_parallel_workers = 8
    settings.tool_selection_cache_size = 500
    assert settings.max_parallel_workers == 8
    assert settings.tool_selection_cache_size == 500


def test_assignment_that_breaks_timeout_ordering_is_refused() -> None:
    settings = Settings()
    with pytest.raises(ConfigError, match="visibility_timeout_s"):
        settings.task_time_limit_s = settings.visibility_timeout_s


def test_invalid_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_MAX_PARALLEL_WORKERS", "0")
    with pytest.raises(ConfigError, match="VICTOR_MAX_PARALLEL_WORKERS") as caught:
        Settings()
    assert "256" in str(caught.value)


def test_unparsable_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VICTOR_LAZY_LOADING_MEMORY_THRESHOLD", "lots")
    with pytest.raises(ConfigError, match=r"lazy_loading_memory_threshold.*'lots'"):
        Settings()


def test_bad_literal_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"provider.*'ollama'"):
        Settings(provider="gpt")


@pytest.mark.parametrize(
    "values",
    [
        {"task_time_limit_s": 600},  # equal to the visibility timeout
        {"visibility_timeout_s": 900},  # equal to the reconciler's stale-after
        {"task_time_limit_s": 100, "visibility_timeout_s": 50, "task_soft_time_limit_s": 90},
    ],
)
def test_delivery_timeouts_must_be_ordered(values: dict[str, int]) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**values)
    message = str(caught.value)
    assert "task_time_limit_s < visibility_timeout_s < reconciler_stale_after_s" in message
    assert "VICTOR_VISIBILITY_TIMEOUT_S" in message


def test_soft_time_limit_must_not_exceed_the_hard_one() -> None:
    with pytest.raises(ConfigError, match="task_soft_time_limit_s"):
        Settings(task_soft_time_limit_s=301, task_time_limit_s=300)


def test_ordered_timeouts_are_accepted() -> None:
    settings = Settings(
        task_time_limit_s=10,
        task_soft_time_limit_s=9,
        visibility_timeout_s=20,
        reconciler_stale_after_s=30,
    )
    assert settings.task_time_limit_s < settings.visibility_timeout_s


def test_no_broker_url_means_embedded_mode() -> None:
    settings = Settings()
    assert settings.mode is Mode.EMBEDDED
    assert settings.effective_broker_url == "memory://"
    assert settings.effective_backend_url == "cache+memory://"


def test_redis_url_means_distributed_mode_for_every_service() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/3")
    assert settings.mode is Mode.DISTRIBUTED
    assert settings.effective_broker_url == "redis://127.0.0.1:6379/3"
    assert settings.effective_backend_url == "redis://127.0.0.1:6379/3"
    assert settings.effective_cache_url == "redis://127.0.0.1:6379/3"


def test_separate_urls_override_the_redis_url() -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:6379/0",
        broker_url="redis://127.0.0.1:6379/1",
        result_backend_url="redis://127.0.0.1:6379/2",
        cache_url="redis://127.0.0.1:6379/3",
    )
    assert settings.effective_broker_url.endswith("/1")
    assert settings.effective_backend_url.endswith("/2")
    assert settings.effective_cache_url == "redis://127.0.0.1:6379/3"


def test_worker_concurrency_defaults_to_max_parallel_workers() -> None:
    assert Settings(max_parallel_workers=6).effective_concurrency == 6
    assert Settings(max_parallel_workers=6, worker_concurrency=2).effective_concurrency == 2


@pytest.mark.parametrize("prefix", ["", "has space", "a:b", "x" * 65])
def test_key_prefix_must_be_a_plain_name(prefix: str) -> None:
    with pytest.raises(ConfigError, match="key_prefix"):
        Settings(key_prefix=prefix)
