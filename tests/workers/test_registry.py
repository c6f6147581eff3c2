"""The skill registry: declarations through entry points, implementations imported on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator.harness import WorkerProcess
from tests.conftest import ROOT, settings_env
from workers.celery_app.factory import create_app
from workers.core.errors import MissingExtraError, SkillError, UnknownSkillError
from workers.core.settings import Settings
from workers.skills import SkillRegistry, SkillSpec, load_registry
from workers.skills.executor import SkillExecutor
from workers.skills.spec import SkillContext

SHIPPED = {"read_file", "analyze_code", "search_code", "report", "noop", "sleep", "select_tools"}
IMPLEMENTATIONS = {"tasks.analyze", "tasks.files", "tasks.search", "tasks.report"}

# Loaded into a child process through PYTHONPATH: records every import of a skill package
# module (importlib.import_module bypasses -X importtime, so a meta-path finder watches).
IMPORT_PROBE = """
import os
import sys

_LOG = os.environ.get("IMPORT_PROBE_LOG")


class _ImportProbe:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if _LOG and name.startswith("tasks."):
            with open(_LOG, "a") as handle:
                handle.write(f"{os.getpid()} {name}\\n")
        return None


sys.meta_path.insert(0, _ImportProbe)
"""


class ProbeInput(BaseModel):
    value: int = 0


@pytest.fixture
def import_probe(tmp_path: Path) -> Callable[[], tuple[dict[str, str], Path]]:
    """An environment whose Python processes log each ``tasks.*`` import to a file."""

    def build() -> tuple[dict[str, str], Path]:
        site = tmp_path / "probe-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(IMPORT_PROBE)
        log = tmp_path / f"imports-{time.monotonic_ns()}.log"
        log.touch()
        env = {"PYTHONPATH": f"{site}:{ROOT}", "IMPORT_PROBE_LOG": str(log)}
        return env, log

    return build


def imported(log: Path) -> set[str]:
    return {line.split()[1] for line in log.read_text().splitlines() if line.strip()}


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- listing is cheap ---------------------------------------------------------------------


def test_the_shipped_skills_are_declared_through_entry_points() -> None:
    registry = SkillRegistry.from_entry_points()
    assert SHIPPED <= set(registry.names())
    for spec in registry.specs():
        assert spec.task_name == f"victor.skill.{spec.name}"
        assert issubclass(spec.input_model, BaseModel)
        assert spec.description


def test_listing_skills_imports_no_implementation() -> None:
    output = run_python(
        """
        import json, sys
        from workers.skills.registry import load_registry
        specs = load_registry().specs()
        schemas = [spec.input_model.model_json_schema() for spec in specs]
        print(json.dumps({"skills": [spec.name for spec in specs],
                          "modules": sorted(m for m in sys.modules if m.startswith("tasks"))}))
        """
    )
    found = json.loads(output)
    assert SHIPPED <= set(found["skills"])
    assert set(found["modules"]) <= {"tasks", "tasks.catalog"}, found["modules"]


def test_victor_skills_json_imports_no_implementation(
    import_probe: Callable[[], tuple[dict[str, str], Path]],
) -> None:
    env, log = import_probe()
    victor = Path(sys.executable).with_name("victor")
    result = subprocess.run(
        [sys.executable, str(victor), "skills", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**_clean_env(), **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = {row["name"] for row in json.loads(result.stdout)}
    assert SHIPPED <= listed
    assert "tasks.catalog" in imported(log)  # the probe works: it saw the declarations
    assert not imported(log) & IMPLEMENTATIONS, imported(log)


def test_building_the_celery_app_imports_no_implementation() -> None:
    output = run_python(
        """
        import json, sys
        from workers.celery_app.factory import create_app
        from workers.core.settings import Settings
        app = create_app(Settings())
        app.finalize()
        print(json.dumps({"tasks": sorted(app.tasks),
                          "modules": sorted(m for m in sys.modules if m.startswith("tasks"))}))
        """
    )
    found = json.loads(output)
    assert {f"victor.skill.{name}" for name in SHIPPED} <= set(found["tasks"])
    assert not set(found["modules"]) & IMPLEMENTATIONS, found["modules"]


# --- first use ----------------------------------------------------------------------------


@pytest.fixture
def counting_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A skill module that counts its imports in a file; yields its module name."""
    name = f"victor_probe_skill_{time.monotonic_ns()}"
    counter = tmp_path / "imports.count"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            _COUNTER = Path({str(counter)!r})
            _COUNTER.write_text(str(int(_COUNTER.read_text() or 0) + 1) if _COUNTER.exists()
                                else "1")

            def run(params, context):
                return params.value * 2
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def probe_spec(module: str, **extra: object) -> SkillSpec:
    return SkillSpec(
        name="probe",
        description="doubles",
        input_model=ProbeInput,
        implementation=f"{module}:run",
        **extra,  # type: ignore[arg-type]
    )


def test_first_use_imports_the_module_once(counting_module: str, tmp_path: Path) -> None:
    registry = SkillRegistry([probe_spec(counting_module)])
    assert counting_module not in sys.modules
    assert not registry.is_loaded("probe")
    first = registry.load("probe")
    assert registry.is_loaded("probe")
    assert counting_module in sys.modules
    # Later uses take the loaded function; they do not go through the import system again.
    del sys.modules[counting_module]
    assert registry.load("probe") is first
    assert counting_module not in sys.modules
    assert (tmp_path / "imports.count").read_text() == "1"


def test_concurrent_first_uses_import_once(counting_module: str, tmp_path: Path) -> None:
    registry = SkillRegistry([probe_spec(counting_module)])
    loaded: list[object] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        loaded.append(registry.load("probe"))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(loaded) == 8
    assert len({id(function) for function in loaded}) == 1
    assert (tmp_path / "imports.count").read_text() == "1"


def test_executor_runs_a_skill_through_its_lazy_import(counting_module: str) -> None:
    registry = SkillRegistry([probe_spec(counting_module)])
    executor = SkillExecutor(Settings(), registry)
    assert executor.run("probe", {"value": 21}) == 42
    assert registry.is_loaded("probe")


def test_first_use_in_a_fresh_process_imports_only_that_skill() -> None:
    output = run_python(
        """
        import json, sys
        from workers.skills.registry import load_registry
        registry = load_registry()
        registry.load("analyze_code")
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("tasks"))))
        """
    )
    modules = set(json.loads(output))
    assert "tasks.analyze" in modules
    assert not modules & {"tasks.search", "tasks.report", "tasks.files"}, modules


def test_load_all_imports_every_implementation() -> None:
    output = run_python(
        """
        import json, sys
        from workers.skills.registry import load_registry
        registry = load_registry()
        registry.load_all()
        print(json.dumps({"loaded": [n for n in registry.names() if registry.is_loaded(n)],
                          "modules": sorted(m for m in sys.modules if m.startswith("tasks"))}))
        """
    )
    found = json.loads(output)
    assert SHIPPED <= set(found["loaded"])
    assert IMPLEMENTATIONS <= set(found["modules"])


# --- errors -------------------------------------------------------------------------------


def test_unknown_skill_lists_known_skills() -> None:
    registry = SkillRegistry.from_entry_points()
    with pytest.raises(UnknownSkillError) as caught:
        registry.get("anlyze")
    message = str(caught.value)
    assert "'anlyze'" in message
    for name in ("analyze_code", "read_file", "search_code", "report"):
        assert name in message


def test_unknown_skill_through_the_executor() -> None:
    executor = SkillExecutor(Settings(), SkillRegistry.from_entry_points())
    with pytest.raises(UnknownSkillError, match=r"known skills: .*analyze_code"):
        executor.run("anlyze", {})


def test_empty_registry_says_none_are_installed() -> None:
    with pytest.raises(UnknownSkillError, match="none installed"):
        SkillRegistry([]).get("anything")


def test_skill_with_missing_dependency_names_the_extra() -> None:
    spec = probe_spec("victor_no_such_module", extra="embed", requires=("victor_missing_dep",))
    registry = SkillRegistry([spec])
    with pytest.raises(MissingExtraError) as caught:
        registry.load("probe")
    message = str(caught.value)
    assert "'embed'" in message
    assert "pip install 'victor-fleet[embed]'" in message
    assert not registry.is_loaded("probe")


def test_dotted_requirement_whose_parent_is_missing_names_the_extra() -> None:
    spec = probe_spec("victor_no_such_module", extra="ml", requires=("victor_missing_dep.sub",))
    with pytest.raises(MissingExtraError, match=r"victor-fleet\[ml\]"):
        SkillRegistry([spec]).load("probe")


def test_module_failing_on_a_required_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The required package is present but incomplete: the module's own import fails.
    name = f"victor_probe_needs_dep_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text("import json.victor_no_such_submodule\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = probe_spec(name, extra="ml", requires=("json",))
    with pytest.raises(MissingExtraError, match=r"victor-fleet\[ml\]"):
        SkillRegistry([spec]).load("probe")
    sys.modules.pop(name, None)


def test_missing_extra_defaults_to_the_skill_name() -> None:
    spec = probe_spec("victor_no_such_module", requires=("victor_missing_dep",))
    with pytest.raises(MissingExtraError, match=r"victor-fleet\[probe\]"):
        SkillRegistry([spec]).load("probe")


def test_load_all_skips_skills_whose_extra_is_missing(counting_module: str) -> None:
    good = probe_spec(counting_module)
    missing = SkillSpec(
        name="embed",
        description="needs numpy-like",
        input_model=ProbeInput,
        implementation="victor_no_such_module:run",
        extra="embed",
        requires=("victor_missing_dep",),
    )
    registry = SkillRegistry([good, missing])
    registry.load_all()
    assert registry.is_loaded("probe")
    assert not registry.is_loaded("embed")


def test_missing_extra_in_a_batch_is_an_outcome_not_a_crash() -> None:
    spec = probe_spec("victor_no_such_module", extra="embed", requires=("victor_missing_dep",))
    executor = SkillExecutor(Settings(), SkillRegistry([spec]))
    [outcome] = executor.run_batch("probe", [{"value": 1}])
    assert outcome["ok"] is False
    assert outcome["type"] == "MissingExtraError"
    assert "victor-fleet[embed]" in outcome["error"]


def test_implementation_that_is_not_callable_is_reported(counting_module: str) -> None:
    spec = SkillSpec(
        name="probe",
        description="bad path",
        input_model=ProbeInput,
        implementation=f"{counting_module}:_COUNTER",
    )
    with pytest.raises(SkillError, match="does not name a callable"):
        SkillRegistry([spec]).load("probe")


def test_a_skill_declared_twice_is_refused() -> None:
    spec = probe_spec("anything")
    with pytest.raises(SkillError, match="declared twice"):
        SkillRegistry([spec, spec])


def test_process_registry_is_built_once() -> None:
    assert load_registry() is load_registry()


def test_skill_context_carries_settings() -> None:
    settings = Settings()
    assert SkillContext(settings=settings).settings is settings


# --- eager and lazy workers ---------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("VICTOR_")}


@pytest.mark.redis
@pytest.mark.integration
@pytest.mark.parametrize(
    ("overrides", "eager"),
    [
        ({}, False),
        ({"lazy_loading_enabled": False}, True),
        ({"lazy_load_skills": False}, True),
    ],
    ids=["lazy", "lazy_loading_disabled", "lazy_load_skills_off"],
)
def test_worker_imports_skills_at_start_only_when_eager(
    overrides: dict[str, bool],
    eager: bool,
    redis_settings: Callable[..., Settings],
    import_probe: Callable[[], tuple[dict[str, str], Path]],
) -> None:
    settings = redis_settings(lazy_loading_prewarm_delay_s=3600, **overrides)
    env, log = import_probe()
    worker = WorkerProcess({**settings_env(settings), **env}, concurrency=1)
    try:
        worker.start()
        at_start = imported(log)
        assert "tasks.catalog" in at_start  # the probe is live in the worker
        if eager:
            assert IMPLEMENTATIONS <= at_start, at_start
        else:
            assert not at_start & IMPLEMENTATIONS, at_start
            app = create_app(settings)
            try:
                result = app.send_task("victor.skill.noop", kwargs={"value": 7})
                # The caller is no task, whatever an in-process worker earlier left flagged.
                assert result.get(timeout=30, disable_sync_subtasks=False) == 7
            finally:
                app.close()
            after_use = imported(log)
            assert "tasks.probes" in after_use
            assert not after_use & IMPLEMENTATIONS, after_use
    finally:
        worker.kill()
