"""Memory of the fleet: episodic (job history) and semantic (per-skill facts).

Episodic memory: one episode per finished job (timings, outcome, per-skill figures), at most
``episodic_memory_max_episodes``, oldest dropped first, aged out by ``clear_old_episodes``.
Semantic memory: per-skill facts (latency percentiles, RSS growth per task, failure rate) that
``consolidate_memories`` derives from episodes, at most ``semantic_memory_max_facts``.
Both live in Redis in distributed mode and in this process in embedded mode.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode, Settings
from workers.telemetry.histograms import histogram_percentile
from workers.telemetry.store import as_ints, store_for

logger = logging.getLogger(__name__)


# --- episodic memory ------------------------------------------------------------------------


class EpisodicMemory:
    """Bounded job history: episodes keyed by job id, ordered by finish time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.redis: Any = (
            redis_client(settings.state_url) if settings.mode is Mode.DISTRIBUTED else None
        )
        self._lock = threading.Lock()
        self._local: dict[str, dict[str, Any]] = {}

    @property
    def max_episodes(self) -> int:
        return self.settings.episodic_memory_max_episodes

    @property
    def _ttl_s(self) -> int:
        return self.settings.episodic_memory_retention_days * 86_400

    def record(self, episode: dict[str, Any]) -> bool:
        """Store one episode (no-op when episodic memory is off); drop the oldest over the cap."""
        if not self.settings.enable_episodic_memory:
            return False
        job_id = str(episode["job_id"])
        finished = float(episode.get("finished_at") or time.time())
        episode = {**episode, "finished_at": finished}
        if self.redis is None:
            with self._lock:
                self._local.pop(job_id, None)
                self._local[job_id] = episode
                ordered = sorted(self._local.items(), key=lambda kv: kv[1]["finished_at"])
                for old_id, _ in ordered[: max(0, len(ordered) - self.max_episodes)]:
                    del self._local[old_id]
            return True
        data, index = self.keys.episodes(), self.keys.episodes_index()
        with translated("recording an episode"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(data, job_id, json.dumps(episode))
            pipe.zadd(index, {job_id: finished})
            pipe.expire(data, self._ttl_s)
            pipe.expire(index, self._ttl_s)
            pipe.zcard(index)
            count = pipe.execute()[-1]
            excess = int(count) - self.max_episodes
            if excess > 0:
                self._drop(self.redis.zrange(index, 0, excess - 1))
        return True

    def _drop(self, job_ids: list[Any]) -> int:
        if not job_ids:
            return 0
        assert self.redis is not None
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self.keys.episodes_index(), *job_ids)
        pipe.hdel(self.keys.episodes(), *job_ids)
        return int(pipe.execute()[0])

    def episodes(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Episodes, newest first."""
        if self.redis is None:
            with self._lock:
                items = sorted(self._local.values(), key=lambda e: e["finished_at"], reverse=True)
            return items[:limit] if limit else items
        with translated("reading episodes"):
            ids = self.redis.zrevrange(self.keys.episodes_index(), 0, (limit or 0) - 1)
            raw = self.redis.hmget(self.keys.episodes(), ids) if ids else []
        return [json.loads(value) for value in raw if value is not None]

    def update(self, episode: dict[str, Any]) -> None:
        """Rewrite an episode in place (consolidation fills in its per-skill figures)."""
        job_id = str(episode["job_id"])
        if self.redis is None:
            with self._lock:
                if job_id in self._local:
                    self._local[job_id] = episode
            return
        with translated("updating an episode"):
            if self.redis.zscore(self.keys.episodes_index(), job_id) is not None:
                self.redis.hset(self.keys.episodes(), job_id, json.dumps(episode))

    def count(self) -> int:
        if self.redis is None:
            return len(self._local)
        with translated("counting episodes"):
            return int(self.redis.zcard(self.keys.episodes_index()))

    def clear_old_episodes(self, days: float = 30) -> int:
        """Drop episodes that finished more than ``days`` ago; return how many."""
        cutoff = time.time() - days * 86_400
        if self.redis is None:
            with self._lock:
                old = [job_id for job_id, e in self._local.items() if e["finished_at"] < cutoff]
                for job_id in old:
                    del self._local[job_id]
            return len(old)
        with translated("clearing old episodes"):
            return self._drop(self.redis.zrangebyscore(self.keys.episodes_index(), "-inf", cutoff))


# --- semantic memory ------------------------------------------------------------------------


class SemanticMemory:
    """Bounded per-skill facts: ``(skill, name) -> value``, newest kept."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.redis: Any = (
            redis_client(settings.state_url) if settings.mode is Mode.DISTRIBUTED else None
        )
        self._local: dict[str, dict[str, Any]] = {}

    def replace(self, facts: dict[str, dict[str, float]]) -> int:
        """Store ``{skill: {name: value}}``, keeping at most ``semantic_memory_max_facts``
        (skills with the most tasks first); return how many were kept."""
        now = time.time()
        ranked = sorted(facts.items(), key=lambda kv: -kv[1].get("tasks", 0))
        rows: dict[str, str] = {}
        for skill, values in ranked:
            for name, value in values.items():
                if len(rows) >= self.settings.semantic_memory_max_facts:
                    break
                rows[f"{skill}|{name}"] = json.dumps({"value": value, "updated_at": now})
        if self.redis is None:
            self._local = {field: json.loads(value) for field, value in rows.items()}
            return len(rows)
        key = self.keys.facts()
        with translated("storing facts"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(key)
            if rows:
                pipe.hset(key, mapping=rows)
                pipe.expire(key, self.settings.episodic_memory_retention_days * 86_400)
            pipe.execute()
        return len(rows)

    def facts(self, skill: str | None = None) -> dict[str, dict[str, float]]:
        """``{skill: {name: value}}`` (only ``skill``'s when given)."""
        if self.redis is None:
            rows = dict(self._local)
        else:
            with translated("reading facts"):
                raw = self.redis.hgetall(self.keys.facts())
            rows = {field.decode(): json.loads(value) for field, value in raw.items()}
        out: dict[str, dict[str, float]] = {}
        for field, entry in rows.items():
            name_skill, _, name = field.rpartition("|")
            if skill is None or name_skill == skill:
                out.setdefault(name_skill, {})[name] = entry["value"]
        return out

    def count(self) -> int:
        return sum(len(values) for values in self.facts().values())


_memories: dict[tuple[str, str, str], tuple[EpisodicMemory, SemanticMemory]] = {}
_memories_lock = threading.Lock()


def memories_for(settings: Settings) -> tuple[EpisodicMemory, SemanticMemory]:
    """The episodic and semantic memory of ``settings`` (one pair per prefix in a process)."""
    key = (settings.mode.value, settings.state_url, settings.key_prefix)
    with _memories_lock:
        pair = _memories.get(key)
        if pair is None:
            pair = _memories[key] = (EpisodicMemory(settings), SemanticMemory(settings))
        pair[0].settings = pair[1].settings = settings
        return pair


def episode_from_job(job: dict[str, Any]) -> dict[str, Any]:
    """The episode of a finished job (a ledger record as a dict)."""
    meta = job.get("meta") or {}
    finished = float(job.get("updated_at") or time.time())
    created = float(job.get("created_at") or finished)
    return {
        "job_id": job["job_id"],
        "name": job.get("name", ""),
        "tenant": job.get("tenant", ""),
        "status": job.get("status", ""),
        "error": job.get("error"),
        "created_at": created,
        "finished_at": finished,
        "duration_s": round(max(0.0, finished - created), 6),
        "total_tasks": job.get("total_tasks", 0),
        "items": meta.get("items", 0),
        "strategy": meta.get("strategy", ""),
        "skills": None,  # per-skill figures, filled in by consolidation
    }


def record_episode(settings: Settings, job: dict[str, Any]) -> bool:
    """Record a finished job in episodic memory; never fails the caller."""
    try:
        episodic, _ = memories_for(settings)
        return episodic.record(episode_from_job(job))
    except Exception:
        logger.warning("could not record the episode of job %s", job.get("job_id"), exc_info=True)
        return False


def _job_skills(settings: Settings, job_id: str) -> dict[str, dict[str, Any]]:
    raw = as_ints(store_for(settings).hashes([Keys(settings.key_prefix).metrics_job(job_id)])[0])
    skills: dict[str, dict[str, Any]] = {}
    for field, value in raw.items():
        skill, _, name = field.rpartition("|")
        entry = skills.setdefault(skill, {"hist": {}})
        if name.startswith("h:"):
            entry["hist"][name[2:]] = value
        else:
            entry[name] = value
    return skills


def consolidate_memories(
    settings: Settings | None = None, settle_s: float | None = None
) -> dict[str, Any]:
    """Fill in episodes' per-skill figures, then derive per-skill facts from all episodes."""
    if settings is None:
        from workers.core.settings import load_settings

        settings = load_settings()
    episodic, semantic = memories_for(settings)
    settle = settings.metrics_flush_interval_s * 2 if settle_s is None else settle_s
    now = time.time()
    totals: dict[str, dict[str, Any]] = {}
    episodes = episodic.episodes()
    for episode in episodes:
        if episode.get("skills") is None and now - episode["finished_at"] >= settle:
            episode["skills"] = _job_skills(settings, episode["job_id"])
            episodic.update(episode)
        for skill, figures in (episode.get("skills") or {}).items():
            total = totals.setdefault(skill, {"hist": {}, "episodes": 0})
            total["episodes"] += 1
            for name, value in figures.items():
                if name == "hist":
                    for index, count in value.items():
                        total["hist"][int(index)] = total["hist"].get(int(index), 0) + count
                else:
                    total[name] = total.get(name, 0) + value
    facts: dict[str, dict[str, float]] = {}
    for skill, total in totals.items():
        tasks = total.get("n", 0)
        if not tasks:
            continue
        units = total.get("units", 0)
        failed = total.get("ufail", 0)  # a failed task counts all its items as failed
        facts[skill] = {
            "tasks": tasks,
            "episodes": total["episodes"],
            "avg_latency_ms": round(total.get("run_us", 0) / tasks / 1000, 3),
            "latency_p50_ms": round(histogram_percentile(total["hist"], 0.50) or 0.0, 3),
            "latency_p95_ms": round(histogram_percentile(total["hist"], 0.95) or 0.0, 3),
            "latency_p99_ms": round(histogram_percentile(total["hist"], 0.99) or 0.0, 3),
            "failure_rate": round(failed / units, 6) if units else 0.0,
            "rss_growth_kb_per_task": round(total.get("rss_kb", 0) / tasks, 3),
        }
    kept = semantic.replace(facts) if settings.enable_semantic_memory else 0
    return {
        "episodes": len(episodes),
        "skills": len(facts),
        "facts": kept,
        "by_skill": facts if settings.enable_semantic_memory else {},
    }
