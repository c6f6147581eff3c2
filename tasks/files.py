"""read_file: the text of a file inside the allowed roots."""

from __future__ import annotations

import hashlib
from typing import Any

from tasks.catalog import ReadFileInput
from workers.core.paths import confine, not_a_file
from workers.skills.spec import SkillContext


def read_file(params: ReadFileInput, context: SkillContext) -> dict[str, Any]:
    """Return the file's text (decoded as UTF-8 with replacement), size and sha256."""
    path = confine(params.path, context.settings.allowed_roots)
    if not path.is_file():
        raise not_a_file(path, params.path)
    limit = min(
        params.max_bytes or context.settings.max_file_bytes, context.settings.max_file_bytes
    )
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    truncated = len(data) > limit
    data = data[:limit]
    return {
        "path": str(path),
        "size": path.stat().st_size,
        "sha256": hashlib.sha256(data).hexdigest(),
        "truncated": truncated,
        "text": data.decode("utf-8", errors="replace"),
    }
