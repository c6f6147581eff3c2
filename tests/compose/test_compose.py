"""compose/ against the code: commands exist, VICTOR_* names are settings, ports agree."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import yaml

from orchestrator.cli import app as victor_app
from workers.core.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
SERVICES = {"redis", "api", "worker", "tuner", "beat", "flower", "prometheus", "grafana"}


def load(path: str) -> Any:
    return yaml.safe_load((COMPOSE / path).read_text())


def load_all(path: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all((COMPOSE / path).read_text()) if doc]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("compose.yml")  # type: ignore[no-any-return]


def victor_command(argv: list[str]) -> Any:
    """The command ``argv`` names, after checking every option it passes exists."""
    assert argv[0] == "victor", argv
    command: Any = typer.main.get_command(victor_app)
    rest = argv[1:]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):  # a group
        name, rest = rest[0], rest[1:]
        found = command.get_command(None, name)
        assert found is not None, f"victor has no command {name!r}"
        command = found
    check_options(command, rest, " ".join(argv))
    return command


def celery_command(argv: list[str]) -> click.Command:
    from celery.bin.celery import celery

    assert argv[:3] == ["celery", "-A", "workers"], argv
    import workers

    assert workers.app is not None  # `-A workers` finds the app
    group: click.Group = celery
    command = group.get_command(click.Context(group), argv[3])
    assert command is not None, f"celery has no command {argv[3]!r}"
    check_options(command, argv[4:], " ".join(argv))
    return command


def check_options(command: Any, args: list[str], shown: str) -> None:
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for token in args:
        if token.startswith("-"):
            assert token.split("=")[0] in known, f"{shown}: unknown option {token}"


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(VICTOR_[A-Z0-9_]+)\b", text))


def test_compose_has_every_service(compose) -> None:
    assert set(compose["services"]) >= SERVICES


def test_redis_has_a_password_aof_and_noeviction(compose) -> None:
    command = compose["services"]["redis"]["command"]
    assert "--requirepass" in command
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--maxmemory-policy") == "noeviction"
    url = compose["services"]["api"]["environment"]["VICTOR_REDIS_URL"]
    assert url.startswith("redis://:${REDIS_PASSWORD")


def test_every_victor_service_runs_a_real_command(compose) -> None:
    ran = set()
    for service in compose["services"].values():
        command = service.get("command")
        if isinstance(command, list) and command[0] == "victor":
            ran.add(victor_command(command).name)
    assert {"api", "worker", "tuner", "beat", "flower"} <= ran


def test_healthchecks_use_real_commands_and_the_served_ports(compose) -> None:
    services = compose["services"]
    worker_check = services["worker"]["healthcheck"]["test"]
    assert worker_check[0] == "CMD-SHELL"
    celery_command(shlex.split(worker_check[1].replace("$$", "$")))
    worker_argv = services["worker"]["command"]
    assert option(worker_argv, "--hostname").startswith("worker@")
    assert "worker@$$HOSTNAME" in worker_check[1]
    for name, route in (("api", "/healthz"), ("flower", "/healthcheck")):
        port = option(services[name]["command"], "--port")
        assert f"127.0.0.1:{port}{route}" in " ".join(services[name]["healthcheck"]["test"])
        assert any(mapping.endswith(f":{port}") for mapping in services[name]["ports"])
        assert all(mapping.startswith("127.0.0.1:") for mapping in services[name]["ports"])
    assert "/healthz" in api_paths()


def api_paths() -> set[str]:
    """The API's routes as its OpenAPI schema lists them (building the app needs no Redis)."""
    from orchestrator.api.app import create_api

    return set(create_api(Settings(redis_url="redis://127.0.0.1:1/0")).openapi()["paths"])


def test_flower_is_behind_basic_auth(compose) -> None:
    flower = compose["services"]["flower"]
    assert flower["environment"]["VICTOR_FLOWER_BASIC_AUTH"].startswith("${VICTOR_FLOWER_BASIC")
    assert "--insecure-local" not in flower["command"]


def test_every_victor_env_name_is_a_setting() -> None:
    fields = {f"VICTOR_{name.upper()}" for name in Settings.model_fields}
    for path in ("compose.yml", ".env.example", "k8s/worker-keda.yaml"):
        unknown = env_names((COMPOSE / path).read_text()) - fields - {"VICTOR_DATA_DIR"}
        assert not unknown, f"{path}: not settings: {sorted(unknown)}"


def test_env_example_sets_every_required_variable() -> None:
    text = (COMPOSE / "compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    example = {
        line.split("=", 1)[0]
        for line in (COMPOSE / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required <= example, required - example


def test_prometheus_scrapes_the_api_and_grafana_reads_prometheus(compose) -> None:
    scrape = load("prometheus/prometheus.yml")["scrape_configs"][0]
    api_port = option(compose["services"]["api"]["command"], "--port")
    assert scrape["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert scrape["metrics_path"] in api_paths()
    assert compose["services"]["api"]["environment"]["VICTOR_API_PUBLIC_METRICS"] == "true"
    source = load("grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    prometheus_port = compose["services"]["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{prometheus_port}"
    provider = load("grafana/provisioning/dashboards/victor.yml")["providers"][0]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((COMPOSE / "grafana/dashboards/victor-fleet.json").read_text())
    names = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "victor-prometheus"
        for target in panel["targets"]:
            names |= set(re.findall(r"\b(victor_[a-z0-9_]+)", target["expr"]))
    return names


def test_dashboard_covers_latency_throughput_memory_concurrency_and_cache() -> None:
    names = dashboard_metrics()
    for needed in (
        "victor_fleet_latency_ms",
        "victor_fleet_throughput_tasks_per_s",
        "victor_worker_memory_mb",
        "victor_worker_pool_size",
        "victor_queue_depth",
        "victor_cache_hit_rate",
    ):
        assert needed in names


@pytest.mark.redis
@pytest.mark.integration
def test_dashboard_metrics_are_served_by_the_api(redis_settings, worker_factory) -> None:
    """Run a job on a real worker, scrape the API's /metrics: every dashboard series is there."""
    import time

    from orchestrator.core.dispatcher import dispatch_plan, wait_job
    from orchestrator.core.plan import GoalSpec, StepSpec
    from orchestrator.core.planner import plan_goal
    from orchestrator.core.session import Session
    from tests.orchestrator.api.conftest import serve

    settings = redis_settings(api_public_metrics=True, chunk_size=1)
    worker_factory(settings, concurrency=2)
    goal = GoalSpec(steps=[StepSpec(skill="sleep", items=[{"ms": 5}] * 20)])
    with Session(settings) as session:
        wait_job(dispatch_plan(session.app, plan_goal(goal, settings, session.app.victor.registry)))
    time.sleep(settings.metrics_flush_interval_s * 2.5)
    live = serve(settings)
    try:
        text = live.client().get("/metrics").text
    finally:
        live.stop()
    served = set(re.findall(r"^(victor_[a-z0-9_]+)", text, re.MULTILINE))
    missing = dashboard_metrics() - served
    assert not missing, f"dashboard uses series the API does not serve: {sorted(missing)}"


def test_dockerfile_is_multi_stage_and_runs_as_non_root(compose) -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE)
    assert len(stages) >= 2
    final = text[text.rindex("FROM ") :]
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    exposed = set(re.findall(r"^EXPOSE\s+(.+)$", final, re.MULTILINE)[0].split())
    for name in ("api", "flower"):
        assert option(compose["services"][name]["command"], "--port") in exposed
    import tomllib

    pyproject = tomllib.loads((COMPOSE.parent / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    for used in re.findall(r"\[([a-z,]+)\]", text):
        assert set(used.split(",")) <= extras, used
    for copied in re.findall(r"^COPY\s+(\w+)\s", text, re.MULTILINE):
        assert (COMPOSE.parent / copied).exists(), copied


def test_the_tuner_service_runs_the_tuner_loop_on_the_fleet(compose) -> None:
    tuner = compose["services"]["tuner"]
    command = victor_command(tuner["command"])
    assert tuner["command"] == ["victor", "tuner"] and command.name == "tuner"
    assert "--dry-run" not in tuner["command"]
    environment = tuner["environment"]
    assert environment["VICTOR_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0",
        **{
            name.removeprefix("VICTOR_").lower(): value
            for name, value in environment.items()
            if name.startswith("VICTOR_TUNER_")
        },
    )
    assert settings.tuner_enabled and settings.tuner_interval_s == 2
    # The workers it resizes run a pool that answers pool_grow/pool_shrink.
    assert option(compose["services"]["worker"]["command"], "--pool") in ("prefork", "threads")


def test_keda_scales_workers_on_the_tuners_replica_recommendation() -> None:
    documents = load_all("k8s/worker-keda.yaml")
    deployments = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Deployment"}
    deployment = deployments["victor-worker"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    victor_command(container["command"])
    probe = container["livenessProbe"]["exec"]["command"]
    celery_command(shlex.split(probe[-1]))
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    tuner = deployments["victor-tuner"]["spec"]["template"]["spec"]["containers"][0]
    assert victor_command(tuner["command"]).name == "tuner"
    (scaled,) = [doc for doc in documents if doc["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["threshold"] == "1"  # replicas = the recommendation itself
    series = re.findall(r"\b(victor_[a-z0-9_]+)", trigger["metadata"]["query"])
    assert series == ["victor_tuner_desired_replicas"]
    assert series[0] in served_tuner_series()


def served_tuner_series() -> set[str]:
    """The tuner's series in the fleet collector's text (what /metrics serves) for a summary."""
    from workers.telemetry.fleet import metrics_registry
    from workers.telemetry.windows import window_figures

    metrics = {
        "fleet": window_figures({}, 1.0),
        "memory_usage": {"fleet_mb": 0},
        "queue": {"queued": 0, "reserved": 0, "active": 0, "depth": 0, "oldest_age_s": None},
        "skills": {},
        "workers": {},
        "tuner": {
            "desired_replicas": 3.0,
            "raw_replicas": 3.0,
            "capacity_per_replica": 4.0,
            "depth": 12.0,
            "decisions": {"grow": 2},
        },
    }
    text = metrics_registry(metrics).prometheus_text()
    return set(re.findall(r"^(victor_[a-z0-9_]+)", text, re.MULTILINE))
