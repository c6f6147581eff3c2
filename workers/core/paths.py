"""Confine file skills to the allowed roots."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from workers.core.errors import AccessDeniedError


def confine(path: str, roots: Sequence[Path]) -> Path:
    """Resolve ``path`` (following symlinks) and return it if it lies inside one of ``roots``.

    A relative path is taken relative to the first root. ``..`` escapes and symlinks that point
    out of every root are refused.
    """
    if not roots:
        raise AccessDeniedError("no allowed roots are configured; set VICTOR_ALLOWED_ROOTS")
    if "\x00" in path:
        raise AccessDeniedError(f"path {path!r} contains a NUL byte")
    candidate = os.fspath(path)
    if not os.path.isabs(candidate):
        candidate = os.path.join(os.fspath(roots[0]), candidate)
    resolved = os.path.realpath(candidate)
    for root in _resolved_roots(tuple(os.fspath(root) for root in roots)):
        if resolved == root or resolved.startswith(root if root == os.sep else root + os.sep):
            return Path(resolved)
    shown = ", ".join(str(Path(root)) for root in roots)
    raise AccessDeniedError(
        f"path {path!r} resolves to {str(resolved)!r}, outside the allowed roots ({shown}); "
        "add its directory to VICTOR_ALLOWED_ROOTS or pass a path inside them"
    )


@functools.lru_cache(maxsize=64)
def _resolved_roots(roots: tuple[str, ...]) -> tuple[str, ...]:
    """The roots with their symlinks resolved, once per process and list of roots.

    A root that does not exist yet resolves as far as it exists, as ``Path.resolve`` does; a
    root whose symlink is repointed while the process runs keeps its first target.
    """
    return tuple(os.path.realpath(root) for root in roots)


def not_a_file(path: Path, shown: str) -> AccessDeniedError:
    """The error for a confined ``path`` that cannot be read as a file: it is missing, or it is
    a directory, a FIFO or a device (``shown`` is the path as the caller gave it)."""
    if not path.exists():
        return AccessDeniedError(f"path {shown!r} does not exist (looked for {str(path)!r})")
    return AccessDeniedError(f"path {shown!r} is not a regular file")
