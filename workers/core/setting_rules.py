"""Rules of the settings: cross-field ordering, derived defaults, fetch host entries.

``Settings`` calls these from its validators; each error names the ``VICTOR_`` variables to
change.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any


def check_ordering(s: Any) -> None:
    """Raise ValueError when settings that must be ordered are not (``s`` is a Settings)."""
    if not s.metrics_bucket_s <= s.metrics_window_s <= s.metrics_retention_s:
        raise ValueError(
            "metrics windows must be ordered metrics_bucket_s <= metrics_window_s <= "
            f"metrics_retention_s; got {s.metrics_bucket_s} <= {s.metrics_window_s} "
            f"<= {s.metrics_retention_s}: raise VICTOR_METRICS_RETENTION_S or lower "
            "VICTOR_METRICS_WINDOW_S"
        )
    _check_tuner(s)
    if not s.task_soft_time_limit_s <= s.task_time_limit_s:
        raise ValueError(
            f"task_soft_time_limit_s ({s.task_soft_time_limit_s}) must not exceed "
            f"task_time_limit_s ({s.task_time_limit_s})"
        )
    lease, wait = s.cache_single_flight_lease_s, s.cache_single_flight_timeout_s
    if not lease < wait < s.task_soft_time_limit_s:
        raise ValueError(
            "cache single-flight times must be ordered cache_single_flight_lease_s < "
            f"cache_single_flight_timeout_s < task_soft_time_limit_s; got {lease} < {wait} "
            f"< {s.task_soft_time_limit_s} (a dead owner's lock must lapse before a "
            "waiter gives up on it, and a waiter must give up before its own soft time "
            "limit): lower VICTOR_CACHE_SINGLE_FLIGHT_LEASE_S / "
            "VICTOR_CACHE_SINGLE_FLIGHT_TIMEOUT_S or raise VICTOR_TASK_SOFT_TIME_LIMIT_S"
        )
    if not s.task_time_limit_s < s.visibility_timeout_s < s.reconciler_stale_after_s:
        raise ValueError(
            "delivery timeouts must be ordered task_time_limit_s < visibility_timeout_s "
            f"< reconciler_stale_after_s; got {s.task_time_limit_s} < "
            f"{s.visibility_timeout_s} < {s.reconciler_stale_after_s}: raise "
            "VICTOR_VISIBILITY_TIMEOUT_S / VICTOR_RECONCILER_STALE_AFTER_S or lower "
            "VICTOR_TASK_TIME_LIMIT_S"
        )
    if not 2 * s.worker_heartbeat_interval_s <= s.worker_heartbeat_ttl_s:
        raise ValueError(
            "the heartbeat TTL must cover two beats: 2 x worker_heartbeat_interval_s <= "
            f"worker_heartbeat_ttl_s; got 2 x {s.worker_heartbeat_interval_s} <= "
            f"{s.worker_heartbeat_ttl_s}: raise VICTOR_WORKER_HEARTBEAT_TTL_S or lower "
            "VICTOR_WORKER_HEARTBEAT_INTERVAL_S"
        )


def _check_tuner(s: Any) -> None:
    """Tuner bounds ordered; decisions kept longer than one interval (the runner reads at
    least one metrics flush per interval: it waits max(interval, flush interval))."""
    low, high, interval = s.tuner_min_concurrency, s.tuner_max_concurrency, s.tuner_interval_s
    if not low <= high:
        raise ValueError(
            f"tuner_min_concurrency ({low}) must not exceed tuner_max_concurrency ({high})"
        )
    if not interval <= s.tuner_decisions_ttl_s:
        raise ValueError(
            f"tuner_interval_s ({interval}) must not exceed tuner_decisions_ttl_s "
            f"({s.tuner_decisions_ttl_s})"
        )


def fit_single_flight(data: dict[str, Any], fields: dict[str, Any]) -> None:
    """Shrink the single-flight times the caller left unset to fit a short soft time limit.

    Unset, the timeout is 30 s but at most half the soft time limit (a waiter keeps half its
    budget to compute the value itself), and the lease 3 s but at most a third of the timeout.
    Values given explicitly are only checked (``_check_ordering``).
    """
    soft_field, wait_field, lease_field = (
        "task_soft_time_limit_s",
        "cache_single_flight_timeout_s",
        "cache_single_flight_lease_s",
    )
    defaults = {name: fields[name].default for name in (soft_field, wait_field)}
    try:
        soft, wait = (float(data.get(name, default)) for name, default in defaults.items())
    except (TypeError, ValueError):
        return  # field validation names the bad value
    if wait_field not in data and wait > soft / 2:
        wait = data[wait_field] = soft / 2
    if lease_field not in data and fields[lease_field].default > wait / 3:
        data[lease_field] = wait / 3


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


def fetch_host(entry: str) -> str:
    """One ``fetch_allowed_hosts`` entry, lower-cased; an address in its canonical form."""
    host = entry.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_NAME.match(host):
        raise ValueError(
            f"{entry.strip()!r} is not a host name or an IP address; list bare hosts such as "
            "example.org or 10.0.0.5 (no scheme, port or path; non-ASCII names as xn--)"
        )
    return host
