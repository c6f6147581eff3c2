"""Execution pools for victor-fleet workers."""

from .threads import ResizableThreadPool

__all__ = ["ResizableThreadPool"]
