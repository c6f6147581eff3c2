"""The doctor's rules: pure functions from figures and settings to findings.

Each finding names the setting to change and the value to try. The figures are what
``get_metrics()``, ``get_cache_stats()`` and ``tuner_status()`` return; ``gather`` reads them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from workers.core.settings import Settings

HIGH_LATENCY_MS = 2000.0  # the guide's thresholds
HIGH_ERROR_RATE = 0.05
LOW_HIT_RATE = 0.5
MIN_LOOKUPS = 50  # a hit rate over fewer lookups says nothing
PINNED_DECISIONS = 3  # decisions in a row at the maximum while throughput still rose

_CACHE_SIZE = {
    "tool_selection": "tool_selection_cache_size",
    "response": "response_cache_size",
    "embedding": "embedding_cache_size",
}
_CACHE_TTL = {"tool_selection": "tool_selection_cache_ttl", "response": "response_cache_ttl"}


@dataclass(frozen=True)
class Finding:
    """One problem: what was seen, the setting to change and the value to try."""

    check: str
    severity: str  # "warning" or "info"
    message: str
    setting: str | None
    try_value: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def env(self) -> str | None:
        return f"VICTOR_{self.setting.upper()}" if self.setting else None


def diagnose(
    settings: Settings,
    metrics: dict[str, Any],
    cache: dict[str, Any] | None = None,
    tuner: dict[str, Any] | None = None,
) -> list[Finding]:
    """Every finding for the fleet, warnings first."""
    findings = [
        *memory_findings(settings, metrics),
        *lazy_loading_findings(settings),
        *cache_findings(settings, cache or {}),
        *latency_findings(settings, metrics),
        *error_findings(metrics),
        *tuner_findings(settings, metrics, tuner or {}),
    ]
    return sorted(findings, key=lambda finding: finding.severity != "warning")


def memory_findings(settings: Settings, metrics: dict[str, Any]) -> list[Finding]:
    """A process at or above ``memory_warning_threshold`` of ``memory_limit_mb``."""
    found = []
    line = settings.memory_warning_threshold * settings.memory_limit_mb
    for name, worker in sorted((metrics.get("workers") or {}).items()):
        for process in worker.get("processes", []):
            rss = float(process.get("rss_mb", 0.0))
            if rss >= line:
                suggested = math.ceil(rss / settings.memory_warning_threshold * 1.25 / 256) * 256
                found.append(
                    Finding(
                        "memory",
                        "warning",
                        f"{name} pid {process.get('pid')} uses {rss:.0f} MB, at or above "
                        f"{settings.memory_warning_threshold:.0%} of memory_limit_mb "
                        f"({settings.memory_limit_mb} MB); children are recycled above the limit",
                        "memory_limit_mb",
                        suggested,
                    )
                )
    return found


def lazy_loading_findings(settings: Settings) -> list[Finding]:
    """Skills imported at start make workers slow to start and heavy when idle."""
    if settings.lazy_loading_enabled and settings.lazy_load_skills:
        return []
    setting = "lazy_loading_enabled" if not settings.lazy_loading_enabled else "lazy_load_skills"
    return [
        Finding(
            "lazy_loading",
            "info",
            f"{setting} is off: every worker imports every skill at start (slower start, "
            "more idle memory); keep it off only for a fleet that must answer its first task warm",
            setting,
            True,
        )
    ]


def cache_findings(settings: Settings, cache: dict[str, Any]) -> list[Finding]:
    """A cache that misses often and evicts: too small (evictions) or too short-lived."""
    found = []
    for name, stats in sorted((cache.get("caches") or {}).items()):
        lookups = int(stats.get("hits", 0)) + int(stats.get("misses", 0))
        if lookups < MIN_LOOKUPS or float(stats.get("hit_rate", 1.0)) >= LOW_HIT_RATE:
            continue
        rate = f"{float(stats.get('hit_rate', 0.0)):.0%} hit rate over {lookups} lookups"
        evictions, expirations = int(stats.get("evictions", 0)), int(stats.get("expirations", 0))
        if evictions and name in _CACHE_SIZE:
            setting = _CACHE_SIZE[name]
            size = int(getattr(settings, setting))
            found.append(
                Finding(
                    "cache",
                    "warning",
                    f"the {name} cache has a {rate} and evicted {evictions} entries: it is "
                    "smaller than the working set",
                    setting,
                    max(2 * size, size + evictions),  # room for what it had to throw away
                )
            )
        elif expirations and name in _CACHE_TTL:
            setting = _CACHE_TTL[name]
            found.append(
                Finding(
                    "cache",
                    "warning",
                    f"the {name} cache has a {rate} and {expirations} entries expired before "
                    "they were used again",
                    setting,
                    int(getattr(settings, setting)) * 2,
                )
            )
    return found


def latency_findings(settings: Settings, metrics: dict[str, Any]) -> list[Finding]:
    """Average task latency over the guide's 2 s: name the slowest skill and a lever."""
    average = metrics.get("avg_latency")
    if average is None or float(average) <= HIGH_LATENCY_MS:
        return []
    skills = metrics.get("skills") or {}
    slowest = max(skills, key=lambda name: skills[name].get("avg_latency") or 0.0, default=None)
    where = f" (slowest: {slowest})" if slowest else ""
    value: Any
    if not settings.response_cache_enabled:
        setting, value, lever = "response_cache_enabled", True, "repeated calls are recomputed"
    else:
        setting, value = "tuner_max_concurrency", settings.tuner_max_concurrency * 2
        lever = "more slots per worker help when the work waits on I/O"
    return [
        Finding(
            "latency",
            "warning",
            f"average task latency {float(average):.0f} ms is over {HIGH_LATENCY_MS:.0f} ms"
            f"{where}; {lever}",
            setting,
            value,
        )
    ]


def error_findings(metrics: dict[str, Any]) -> list[Finding]:
    """An error rate over the guide's 5%: name the skills that fail."""
    rate = metrics.get("error_rate")
    if rate is None or float(rate) <= HIGH_ERROR_RATE:
        return []
    skills = metrics.get("skills") or {}
    failing = sorted(
        (name for name in skills if (skills[name].get("error_rate") or 0) > HIGH_ERROR_RATE),
        key=lambda name: -float(skills[name].get("error_rate") or 0),
    )
    return [
        Finding(
            "errors",
            "warning",
            f"error rate {float(rate):.1%} is over {HIGH_ERROR_RATE:.0%}"
            + (f" (failing most: {', '.join(failing[:3])})" if failing else "")
            + "; victor jobs show JOB_ID lists failed items by reason",
            None,
            None,
        )
    ]


def tuner_findings(
    settings: Settings, metrics: dict[str, Any], tuner: dict[str, Any]
) -> list[Finding]:
    """A tuner pinned at its maximum; ``--autoscale`` and the tuner both acting."""
    found = []
    workers = metrics.get("workers") or {}
    for name, view in sorted((tuner.get("workers") or {}).items()):
        recent = (view.get("decisions") or [])[:PINNED_DECISIONS]  # newest first
        pinned = len(recent) == PINNED_DECISIONS and all(
            "at the maximum" in str(decision.get("reason", "")) for decision in recent
        )
        maximum = (view.get("bounds") or {}).get("max")
        if pinned and maximum:
            found.append(
                Finding(
                    "tuner",
                    "warning",
                    f"the tuner holds {name} at its maximum of {maximum} while throughput still "
                    "rose with concurrency",
                    "tuner_max_concurrency",
                    int(maximum) * 2,
                )
            )
    acting = bool((tuner.get("lease") or {}).get("holder")) and settings.tuner_enabled
    for name, worker in sorted(workers.items()):
        if acting and worker.get("autoscale"):
            found.append(
                Finding(
                    "tuner",
                    "warning",
                    f"{name} was started with --autoscale while a tuner acts on the fleet: the "
                    "tuner can only move its autoscale bounds and Celery's autoscaler still "
                    "grows on any backlog; restart it without --autoscale, or turn the tuner off",
                    "tuner_enabled",
                    False,
                )
            )
    return found
