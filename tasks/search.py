"""search_code: lines of a file that match a literal or a regular expression."""

from __future__ import annotations

import re
from typing import Any

from tasks.catalog import SearchCodeInput
from workers.core.errors import SkillInputError
from workers.core.paths import confine, not_a_file
from workers.skills.spec import SkillContext


def search_code(params: SearchCodeInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"path", "matches": [[line, text], ...], "truncated"}``."""
    path = confine(params.path, context.settings.allowed_roots)
    if not path.is_file():
        raise not_a_file(path, params.path)
    flags = re.IGNORECASE if params.ignore_case else 0
    source = params.pattern if params.regex else re.escape(params.pattern)
    try:
        pattern = re.compile(source, flags)
    except re.error as exc:
        raise SkillInputError(
            f"pattern {params.pattern!r} is not a valid regular expression ({exc}); "
            "fix it or pass regex=false for a literal search"
        ) from exc
    text = path.read_bytes()[: context.settings.max_file_bytes].decode("utf-8", "replace")
    matches: list[list[Any]] = []
    truncated = False
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            if len(matches) >= params.max_matches:
                truncated = True
                break
            matches.append([number, line[:500]])
    return {"path": str(path), "matches": matches, "truncated": truncated}
