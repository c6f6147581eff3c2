"""Coherence across the fleet: invalidations broadcast on Redis pub/sub, applied and acknowledged.

Each manager's maintenance thread (``maintain``) listens on ``Keys.cache_channel()``, applies
other processes' invalidations to this process's L1 and acknowledges them, publishes this
process's stats (with a TTL) so fleet-wide figures include every process, and, with
``cache_auto_invalidate``, sweeps expired entries every ``cache_auto_invalidate_interval``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from workers.cache.backends import L2Backend, Subscription
from workers.cache.named import NamedCache
from workers.core.errors import BackendUnavailableError
from workers.core.keys import Keys
from workers.core.settings import Settings

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0
STATS_TTL_S = 30
STATS_REFRESH_S = STATS_TTL_S / 3
ACK_WAIT_S = 2.0


class Coherence:
    """One process's end of the cache channel: it broadcasts, listens, applies and acknowledges.

    ``apply_invalidation(caches, match)`` removes matching keys from this process's L1;
    ``closed`` is set when the owner closes, and cuts short every wait here.
    """

    def __init__(
        self,
        l2: L2Backend | None,
        keys: Keys,
        process_id: str,
        caches: Mapping[str, NamedCache],
        apply_invalidation: Callable[[list[str], str], int],
        closed: threading.Event,
    ) -> None:
        self.l2 = l2
        self.keys = keys
        self.process_id = process_id
        self.caches = caches
        self.apply_invalidation = apply_invalidation
        self.closed = closed
        self.subscription: Subscription | None = None
        self.errors = 0
        self._resubscribed = False
        self._subscribed_once_ok = True  # False while subscribing keeps failing

    def subscribe(self) -> bool:
        """Subscribe to the channel unless subscribed already; False while the L2 is down."""
        if self.l2 is None or self.subscription is not None:
            return self.subscription is not None
        try:
            self.subscription = self.l2.subscribe(self.keys.cache_channel())
        except BackendUnavailableError as exc:
            self.errors += 1
            # Once per outage: the listener retries every back-off until the L2 returns.
            log = logger.warning if self._subscribed_once_ok else logger.debug
            self._subscribed_once_ok = False
            log("%s", exc)
            return False
        self._subscribed_once_ok = True
        if self._resubscribed:
            # Invalidations sent while we were cut off are lost: drop what L1 may hold stale.
            for cache in self.caches.values():
                cache.l1.clear()
        self._resubscribed = True
        return True

    def listen_once(self, timeout_s: float) -> None:
        """Handle at most one broadcast, waiting up to ``timeout_s`` (re-subscribing if cut off)."""
        if self.l2 is None:
            self.closed.wait(timeout_s)
            return
        if self.subscription is None and not self.subscribe():
            self.closed.wait(min(timeout_s, self.l2.retry_after_s))
            return
        assert self.subscription is not None
        try:
            message = self.subscription.poll(timeout_s)
        except BackendUnavailableError as exc:
            self.errors += 1
            logger.warning("%s", exc)
            self.subscription.close()
            self.subscription = None
            self.closed.wait(min(timeout_s, self.l2.retry_after_s))
            return
        if message is not None:
            self.handle_message(message)

    def broadcast(self, message: dict[str, Any], wait_s: float) -> dict[str, int]:
        """Publish ``message`` to the other processes and wait up to ``wait_s`` for their acks."""
        assert self.l2 is not None
        notified = self.l2.publish(self.keys.cache_channel(), json.dumps(message).encode())
        if self.subscription is not None:
            notified = max(0, notified - 1)  # this process applied it already, and stays quiet
        acknowledged = 0
        if notified and wait_s > 0:
            acknowledged = self.l2.wait_acks(self.keys.cache_ack(message["id"]), notified, wait_s)
        return {"processes_notified": notified, "processes_acknowledged": acknowledged}

    def handle_message(self, raw: bytes) -> None:
        """Apply one broadcast from the channel, then acknowledge it."""
        try:
            message = json.loads(raw)
            op = message["op"]
            ident = str(message["id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed cache broadcast: %r", raw[:200])
            return
        if message.get("origin") == self.process_id:
            return
        if op == "invalidate":
            caches = [str(name) for name in message.get("caches", [])]
            match = str(message.get("match", ""))
            if match.startswith(f"{self.keys.prefix}:"):
                self.apply_invalidation(caches, match)
        elif op == "clear_expired":
            for cache in self.caches.values():
                cache.clear_expired()
        if self.l2 is not None:
            try:
                self.l2.push_ack(self.keys.cache_ack(ident), STATS_TTL_S)
            except BackendUnavailableError as exc:
                logger.warning("%s", exc)

    def close(self) -> None:
        """Leave the channel."""
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None


class Maintained(Protocol):
    """What the maintenance loop needs of the manager it serves."""

    @property
    def settings(self) -> Settings: ...

    @property
    def caches(self) -> Mapping[str, NamedCache]: ...

    @property
    def coherence(self) -> Coherence: ...

    def sweep_l2(self) -> int: ...

    def publish_stats(self) -> bool: ...


def maintain(ref: Callable[[], Maintained | None], closed: threading.Event) -> None:
    """The maintenance loop of a manager held by weak reference ``ref``; ends when the manager
    is closed or collected."""
    next_sweep = 0.0
    next_stats = 0.0
    last_stats: float | None = None  # a process that never had figures publishes none
    while not closed.is_set():
        manager = ref()
        if manager is None:
            return
        try:
            manager.coherence.listen_once(0.2)
            for cache in manager.caches.values():
                cache.l1.fit()  # a size bound lowered on the live settings
            now = time.monotonic()
            settings = manager.settings
            if settings.cache_auto_invalidate:
                if next_sweep == 0.0:
                    next_sweep = now + settings.cache_auto_invalidate_interval
                elif now >= next_sweep:
                    for cache in manager.caches.values():
                        cache.clear_expired()
                    manager.sweep_l2()
                    next_sweep = now + settings.cache_auto_invalidate_interval
            changed = any(c.changed for c in manager.caches.values())
            # On change at most every STATS_INTERVAL_S; and well within the TTL when idle, so
            # an idle process's figures do not expire from the fleet's view.
            refresh = last_stats is not None and now >= last_stats + STATS_REFRESH_S
            if (now >= next_stats and changed) or refresh:
                manager.publish_stats()
                next_stats = now + STATS_INTERVAL_S
                last_stats = now
        except Exception:  # the loop must outlive any one bad tick
            logger.exception("cache maintenance tick failed")
            closed.wait(1.0)
        finally:
            del manager
