"""select_tools weighs skills by observed outcomes: success rate and latency in semantic memory.

The weights live in the tool selection cache's ``rl`` namespace and are read again from
semantic memory when that entry expires.
"""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel

from tasks.catalog import SelectToolsInput
from tasks.selection import select_tools
from workers.cache import CacheProvider
from workers.core.settings import Settings
from workers.maintenance.episodes import memories_for
from workers.skills.outcome_weights import outcome_weights, weighted
from workers.skills.registry import SkillRegistry
from workers.skills.spec import SkillContext, SkillSpec


class _Input(BaseModel):
    text: str = ""


def _twins() -> SkillRegistry:
    """Two skills that match any goal equally well by their words (only their names differ)."""
    description = "Frobnicate the widgets of a project and report the frobnication."
    return SkillRegistry(
        SkillSpec(name, description, _Input, "tests.nowhere:run", keywords=("widget",))
        for name in ("alpha_probe", "beta_probe")
    )


def _settings(**values: object) -> Settings:
    return Settings(cache_dir="", key_prefix=f"vt{uuid.uuid4().hex[:10]}", **values)  # type: ignore[arg-type]


def _facts(failing: str, healthy: str) -> dict[str, dict[str, float]]:
    return {
        failing: {"tasks": 40, "failure_rate": 0.5, "latency_p50_ms": 20.0},
        healthy: {"tasks": 40, "failure_rate": 0.0, "latency_p50_ms": 20.0},
    }


def _first(goal: str, context: SkillContext) -> str:
    tools = select_tools(SelectToolsInput(query=goal), context)["tools"]
    assert len(tools) == 2
    return str(tools[0][0])


def test_of_two_equal_lexical_matches_the_one_without_failures_ranks_first() -> None:
    settings = _settings()
    context = SkillContext(settings, {"registry": _twins()})
    tools = select_tools(SelectToolsInput(query="frobnicate widgets"), context)["tools"]
    assert tools[0][1] == tools[1][1] and tools[0][0] == "alpha_probe"  # a tie, by name
    memories_for(settings)[1].replace(_facts(failing="alpha_probe", healthy="beta_probe"))
    assert _first("frobnicate widgets", context) == "beta_probe"


def test_the_cached_weights_are_refreshed_when_their_rl_entry_expires() -> None:
    settings = _settings(tool_selection_cache_ttl=1)
    context = SkillContext(settings, {"registry": _twins(), "cache": CacheProvider(settings)})
    semantic = memories_for(settings)[1]
    semantic.replace(_facts(failing="alpha_probe", healthy="beta_probe"))
    assert _first("frobnicate widgets", context) == "beta_probe"
    cache = context.services["cache"]().tool_selection  # type: ignore[operator]
    assert cache.stats()["namespaces"]["rl"]["misses"] == 2  # the index and the weights

    semantic.replace(_facts(failing="beta_probe", healthy="alpha_probe"))
    # A new goal misses the ranking cache, but the weights still come from the rl entry.
    assert _first("report the frobnication", context) == "beta_probe"
    time.sleep(1.2)  # tool_selection_cache_ttl: the rl entries expire
    assert _first("frobnicate the widgets", context) == "alpha_probe"


def test_weights_follow_success_and_latency_within_bounds() -> None:
    weights = outcome_weights(
        {
            "steady": {"tasks": 100, "failure_rate": 0.0, "latency_p50_ms": 10.0},
            "flaky": {"tasks": 100, "failure_rate": 0.3, "latency_p50_ms": 10.0},
            "broken": {"tasks": 1000, "failure_rate": 1.0, "latency_p50_ms": 10_000.0},
            "new": {"tasks": 1, "failure_rate": 1.0, "latency_p50_ms": 10.0},
        }
    )
    assert weights["steady"] == 1.0
    assert 0.8 < weights["flaky"] < 0.9
    assert 0.4 <= weights["broken"] < 0.41  # the floor: half for failures, 0.8 for latency
    assert weights["new"] > 0.8  # one failed task is not yet a record: the prior holds it up
    assert weighted({"steady": 1.0, "unknown": 1.0}, weights) == {"steady": 1.0, "unknown": 1.0}


def test_a_much_better_lexical_match_still_wins_over_a_better_record() -> None:
    weights = outcome_weights(
        {
            "strong": {"tasks": 1000, "failure_rate": 1.0, "latency_p50_ms": 10_000.0},
            "weak": {"tasks": 1000, "failure_rate": 0.0, "latency_p50_ms": 1.0},
        }
    )
    scores = weighted({"strong": 2.6, "weak": 1.0}, weights)
    assert scores["strong"] > scores["weak"]
