"""Single-flight leases: a lock's short TTL, renewed from one thread while its owner lives.

A process that takes a single-flight lock holds it as a lease of ``lease_s``, renewed every
``lease_s / 3`` by this process's renewer thread. The owner drops the lease when its value is
stored (then releases the lock as before). If the owner dies (``kill -9`` of a pool child), no
one renews: the lock lapses within ``lease_s`` and a waiter computes the value itself, instead
of waiting out ``cache_single_flight_timeout_s``.

Renewal compares the token before it extends the TTL, so a renewal that races a release (or an
invalidation) never brings a lock back. A forked child starts with no leases and no thread: the
leases it inherited are its parent's, not its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from workers.core.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 3


class Renewable(Protocol):
    """What the renewer needs from an L2 backend."""

    def available(self) -> bool: ...

    def renew(self, lock_key: str, token: str, ttl_s: float) -> bool: ...


@dataclass(eq=False)
class Lease:
    """One lock this process holds: renewed every ``lease_s / 3`` until dropped."""

    backend: Renewable
    lock_key: str
    token: str
    lease_s: float
    due: float  # monotonic time of the next renewal
    renewals: int = 0


class LeaseRenewer:
    """The thread that renews every lease this process holds (started on the first lease)."""

    def __init__(self) -> None:
        self._leases: set[Lease] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.lost = 0  # leases found taken or gone when renewed

    def hold(self, backend: Renewable, lock_key: str, token: str, lease_s: float) -> Lease:
        """Renew ``lock_key`` (taken with ``token`` for ``lease_s``) until ``drop``."""
        lease = Lease(backend, lock_key, token, lease_s, time.monotonic() + lease_s / 3)
        with self._changed:
            self._leases.add(lease)
            if not self._stopped and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(
                    target=self._run, name="victor-lease-renewer", daemon=True
                )
                self._thread.start()
            self._changed.notify()
        return lease

    def drop(self, lease: Lease) -> None:
        """Stop renewing ``lease`` (its owner releases the lock next)."""
        with self._changed:
            self._leases.discard(lease)

    def held(self) -> int:
        with self._changed:
            return len(self._leases)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop renewing without releasing anything: what a dead owner does (tests)."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._changed:
                due = self._wait_for_due()
                if due is None:
                    return
            for lease in due:
                self._renew(lease)

    def _wait_for_due(self) -> list[Lease] | None:
        """The leases due for renewal (waiting until some are); None once stopped."""
        while not self._stopped:
            now = time.monotonic()
            due = [lease for lease in self._leases if lease.due <= now]
            if due:
                for lease in due:
                    lease.due = now + lease.lease_s / RENEWALS_PER_LEASE
                return due
            next_due = min((lease.due for lease in self._leases), default=None)
            self._changed.wait(None if next_due is None else next_due - now)
        return None

    def _renew(self, lease: Lease) -> None:
        backend = lease.backend
        if not backend.available():
            return  # down for its back-off: the lease may lapse, a waiter then computes
        try:
            kept = backend.renew(lease.lock_key, lease.token, lease.lease_s)
        except BackendUnavailableError as exc:
            logger.warning("%s", exc)
            return
        if kept:
            lease.renewals += 1
            return
        with self._changed:
            if lease not in self._leases:
                return  # dropped (and released) while we renewed: nothing was lost
            self._leases.discard(lease)
            self.lost += 1
        logger.warning(
            "single-flight lock %s lapsed or was taken before its renewal (a %s s lease); "
            "another process may compute the same value",
            lease.lock_key,
            lease.lease_s,
        )


_renewer: LeaseRenewer | None = None
_renewer_lock = threading.Lock()


def lease_renewer() -> LeaseRenewer:
    """This process's renewer (made on first use, and again in a forked child)."""
    global _renewer
    with _renewer_lock:
        if _renewer is None:
            _renewer = LeaseRenewer()
        return _renewer


def _forget_after_fork() -> None:
    # The parent's leases are not the child's to renew, its thread did not cross the fork, and
    # its locks may have been held by that thread: start from nothing.
    global _renewer, _renewer_lock
    _renewer, _renewer_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
