"""Alerts on the guide's thresholds: a pure state machine (``step``) and the I/O around it.

Rules: ``avg_latency`` above ``alert_avg_latency_ms`` (fleet and per skill), ``error_rate``
above ``alert_error_rate`` (fleet and per skill, once ``alert_min_tasks`` tasks ran in the
window), ``memory`` above ``alert_memory_fraction`` of ``memory_limit_mb`` (per worker
process). A breach must last ``alert_debounce_s`` before it fires, once; it resolves, once,
after it has been clear for as long. A subject that stops reporting counts as clear.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from workers.core.keys import Keys
from workers.core.redis_client import redis_client, translated
from workers.core.settings import Mode, Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    """One rule's value for one subject at one evaluation."""

    rule: str
    subject: str
    value: float
    threshold: float

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.subject}"

    @property
    def breached(self) -> bool:
        return self.value > self.threshold


@dataclass
class AlertState:
    """Where one (rule, subject) stands: breach or clear start, and whether it is firing."""

    rule: str
    subject: str
    firing: bool = False
    breach_since: float | None = None
    clear_since: float | None = None
    value: float = 0.0
    threshold: float = 0.0


def step(
    states: dict[str, AlertState],
    observations: list[Observation],
    now: float,
    debounce_s: float,
) -> tuple[dict[str, AlertState], list[dict[str, Any]]]:
    """Advance every alert by one evaluation; return the new states and the events to emit."""
    seen = {observation.key: observation for observation in observations}
    out: dict[str, AlertState] = {}
    events: list[dict[str, Any]] = []
    for key in sorted(set(states) | set(seen)):
        observation = seen.get(key)
        previous = states.get(key)
        state = (
            AlertState(**asdict(previous))
            if previous
            else AlertState(
                rule=observation.rule if observation else "",
                subject=observation.subject if observation else "",
            )
        )
        breached = observation is not None and observation.breached
        if observation is not None:
            state.value, state.threshold = observation.value, observation.threshold
        if breached:
            state.clear_since = None
            if state.breach_since is None:
                state.breach_since = now
            if not state.firing and now - state.breach_since >= debounce_s:
                state.firing = True
                events.append(_event("alert", state, now, state.breach_since))
        else:
            state.breach_since = None
            if state.firing:
                if state.clear_since is None:
                    state.clear_since = now
                if now - state.clear_since >= debounce_s:
                    state.firing = False
                    events.append(_event("resolved", state, now, state.clear_since))
        if state.firing or state.breach_since is not None:
            out[key] = state
    return out, events


def _event(kind: str, state: AlertState, now: float, since: float) -> dict[str, Any]:
    return {
        "event": kind,
        "rule": state.rule,
        "subject": state.subject,
        "value": round(state.value, 6),
        "threshold": state.threshold,
        "since": since,
        "at": now,
    }


def observations(metrics: dict[str, Any], settings: Settings) -> list[Observation]:
    """The rules' values in one ``get_metrics()`` snapshot."""
    found: list[Observation] = []
    scopes = [("fleet", metrics["fleet"])] + [
        (f"skill:{skill}", figures) for skill, figures in metrics["skills"].items()
    ]
    for subject, figures in scopes:
        if figures.get("avg_latency") is not None:
            found.append(
                Observation(
                    "avg_latency", subject, figures["avg_latency"], settings.alert_avg_latency_ms
                )
            )
        if figures.get("tasks", 0) >= settings.alert_min_tasks:
            found.append(
                Observation("error_rate", subject, figures["error_rate"], settings.alert_error_rate)
            )
    for worker, figures in metrics["workers"].items():
        for process in figures["processes"]:
            limit = process.get("memory_limit_mb") or settings.memory_limit_mb
            found.append(
                Observation(
                    "memory",
                    f"process:{worker}:{process['pid']}",
                    process["rss_mb"] / limit,
                    settings.alert_memory_fraction,
                )
            )
    return found


class Monitor:
    """Evaluates the rules on fresh figures and emits alerts (log line, optional webhook).

    State lives in Redis in distributed mode (so any process can evaluate, one at a time under
    a short lock) and in this object otherwise.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._states: dict[str, AlertState] = {}
        self._lock = threading.Lock()

    def _redis(self) -> Any:
        return redis_client(self.settings.state_url)

    def check(
        self, metrics: dict[str, Any] | None = None, now: float | None = None
    ) -> list[dict[str, Any]]:
        """One evaluation; returns the events it emitted."""
        if metrics is None:
            from workers.telemetry.fleet import get_metrics

            metrics = get_metrics(self.settings)
        now = time.time() if now is None else now
        found = observations(metrics, self.settings)
        if self.settings.mode is not Mode.DISTRIBUTED:
            with self._lock:
                self._states, events = step(
                    self._states, found, now, self.settings.alert_debounce_s
                )
        else:
            events = self._check_shared(found, now)
        for event in events:
            self.emit(event)
        return events

    def _check_shared(self, found: list[Observation], now: float) -> list[dict[str, Any]]:
        client = self._redis()
        token = uuid.uuid4().hex
        with translated("evaluating alerts"):
            if not client.set(self.keys.monitor_lock(), token, nx=True, px=10_000):
                return []  # another process is evaluating right now
            try:
                raw = client.get(self.keys.monitor_state())
                states = {
                    key: AlertState(**value) for key, value in json.loads(raw or "{}").items()
                }
                states, events = step(states, found, now, self.settings.alert_debounce_s)
                client.set(
                    self.keys.monitor_state(),
                    json.dumps({key: asdict(state) for key, state in states.items()}),
                    ex=86_400,
                )
            finally:
                if client.get(self.keys.monitor_lock()) == token.encode():
                    client.delete(self.keys.monitor_lock())
        return events

    def emit(self, event: dict[str, Any]) -> None:
        """Log one structured line; post to ``alert_webhook_url`` when set."""
        level = logging.WARNING if event["event"] == "alert" else logging.INFO
        logger.log(level, "victor %s", json.dumps(event, sort_keys=True), extra={"alert": event})
        url = self.settings.alert_webhook_url
        if url:
            import httpx

            try:
                httpx.post(url, json=event, timeout=5.0).raise_for_status()
            except httpx.HTTPError as exc:
                logger.warning("alert webhook %s failed: %s", url, exc)

    def firing(self) -> list[AlertState]:
        if self.settings.mode is not Mode.DISTRIBUTED:
            return [state for state in self._states.values() if state.firing]
        with translated("reading alerts"):
            raw = self._redis().get(self.keys.monitor_state())
        states = [AlertState(**value) for value in json.loads(raw or "{}").values()]
        return [state for state in states if state.firing]
