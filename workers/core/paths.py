"""Confine file skills to the allowed roots."""

from __future__ import annotations

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
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = Path(roots[0]) / candidate
    resolved = candidate.resolve()
    for root in roots:
        root_resolved = Path(root).resolve()
        if resolved == root_resolved or resolved.is_relative_to(root_resolved):
            return resolved
    shown = ", ".join(str(Path(root)) for root in roots)
    raise AccessDeniedError(
        f"path {path!r} resolves to {str(resolved)!r}, outside the allowed roots ({shown}); "
        "add its directory to VICTOR_ALLOWED_ROOTS or pass a path inside them"
    )


def not_a_file(path: Path, shown: str) -> AccessDeniedError:
    """The error for a confined ``path`` that cannot be read as a file: it is missing, or it is
    a directory, a FIFO or a device (``shown`` is the path as the caller gave it)."""
    if not path.exists():
        return AccessDeniedError(f"path {shown!r} does not exist (looked for {str(path)!r})")
    return AccessDeniedError(f"path {shown!r} is not a regular file")
