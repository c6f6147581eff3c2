"""Compact, immutable copies of JSON values for an L1 that holds many small, similar entries.

``freeze`` turns lists into tuples and shares equal atoms between entries: short strings are
interned, and numbers and small tuples of atoms (a ``(name, score)`` pair) come from one
bounded table. A thousand tool rankings then hold mostly pointers to the same few pairs.
The frozen value serializes to the same JSON as the original.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

MAX_SHARED = 65_536  # distinct shared atoms and pairs; beyond it values are kept as they are
SHORT_STRING = 64

_shared: dict[Any, Any] = {}
_lock = threading.Lock()


def _share(value: Any) -> Any:
    # Keyed with the types too: 1 == 1.0 == True, but their JSON differs.
    key = (value, tuple(map(type, value))) if type(value) is tuple else (value, type(value))
    found = _shared.get(key)
    if found is not None:
        return found
    with _lock:
        if len(_shared) < MAX_SHARED:
            return _shared.setdefault(key, value)
    return value


def _atom(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return sys.intern(value) if len(value) <= SHORT_STRING else value
    if kind is float or kind is int:
        return _share(value)  # bool and None are singletons already
    return value


_ATOMS = (str, int, float)


def freeze(value: Any) -> Any:
    """An immutable, shared-where-possible copy of the JSON value ``value``."""
    kind = type(value)
    if kind is list or kind is tuple:
        items = tuple(freeze(item) for item in value)
        if len(items) <= 4 and all(type(item) in _ATOMS for item in items):
            return _share(items)
        return items
    if kind is dict:
        return {_atom(key): freeze(item) for key, item in value.items()}
    return _atom(value)


def shared_count() -> int:
    """How many atoms and pairs are shared now (bounded by ``MAX_SHARED``)."""
    return len(_shared)
