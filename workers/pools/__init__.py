"""Execution pools for victor-fleet workers."""

from .prefork import PreforkPool
from .threads import ResizableThreadPool

__all__ = ["PreforkPool", "ResizableThreadPool"]
