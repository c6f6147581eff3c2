"""Declarations of the shipped skills (the ``victor.skills`` entry points point here).

Only input models and names live here: importing this module imports no implementation.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from workers.skills.spec import SkillSpec


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The guide passes a file skill's path as ``file``: it is another name for ``path``.
PATH_NAMES = AliasChoices("path", "file")


class ReadFileInput(_Input):
    path: str = Field(min_length=1, max_length=4096, validation_alias=PATH_NAMES)
    max_bytes: int | None = Field(None, ge=1)


class AnalyzeCodeInput(_Input):
    path: str = Field(min_length=1, max_length=4096, validation_alias=PATH_NAMES)


class SearchCodeInput(_Input):
    path: str = Field(min_length=1, max_length=4096, validation_alias=PATH_NAMES)
    pattern: str = Field(min_length=1, max_length=1000)
    regex: bool = False
    ignore_case: bool = False
    max_matches: int = Field(100, ge=1, le=10_000)


class ReportInput(_Input):
    results: list[Any] = Field(default_factory=list)
    top: int = Field(10, ge=1, le=1000)


class NoopInput(_Input):
    value: Any = None


class SleepInput(_Input):
    ms: int = Field(100, ge=0, le=600_000)
    value: Any = None


class RunTestsInput(_Input):
    path: str = Field(".", min_length=1, max_length=4096, validation_alias=PATH_NAMES)
    keyword: str | None = Field(None, min_length=1, max_length=1000, description="pytest -k")
    timeout_s: float | None = Field(
        None, gt=0, le=86_400, description="at most the task's soft time limit less 1 s"
    )


class EffectInput(_Input):
    key: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    ms: int = Field(0, ge=0, le=600_000)
    poison: bool = False
    nondeterministic: bool = False
    results: list[Any] | None = None


class LeakInput(_Input):
    mb: int = Field(1, ge=0, le=4096)
    keep: bool = True
    fail: bool = False
    value: Any = None


class EmbedInput(_Input):
    texts: list[str] = Field(min_length=1, max_length=1000)
    dimensions: int = Field(256, ge=8, le=4096)


class SelectToolsInput(_Input):
    query: str = Field(min_length=1, max_length=10_000)
    context: str = Field("", max_length=10_000)
    max_tools: int | None = Field(None, ge=1, le=1000)


class ChatMessage(_Input):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)


class ChatInput(_Input):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    persona: str | None = Field(None, min_length=1, max_length=200)
    system: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, min_length=1, max_length=200)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    use_cache: bool = True


class SummarizeInput(_Input):
    text: str = Field(min_length=1, max_length=5_000_000)
    max_sentences: int = Field(3, ge=1, le=100)
    persona: str | None = Field(None, min_length=1, max_length=200)
    use_cache: bool = True


# A header name is an RFC 9110 token; a value is printable ASCII (so no error can echo a
# secret value back through an encoding failure).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]{0,8192}$")
_CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class FetchInput(_Input):
    url: str = Field(min_length=1, max_length=8192)
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    body: str | None = Field(None, max_length=1024 * 1024)
    timeout_s: float | None = Field(None, gt=0, le=3600)

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name[:64]!r} is not a valid HTTP token")
            if name.lower() in _CLIENT_HEADERS:
                raise ValueError(f"header {name!r} is set by the fetch skill; remove it")
            # The value is never quoted: it may be a credential.
            if not _HEADER_VALUE.match(text):
                raise ValueError(
                    f"header {name!r} has a value that is not printable ASCII (or is over "
                    "8192 characters); no CR, LF or other control characters"
                )
        return {name: text.strip() for name, text in value.items()}

    @model_validator(mode="after")
    def _body_needs_post(self) -> FetchInput:
        if self.body is not None and self.method != "POST":
            raise ValueError(f"body is sent only with POST, not {self.method}; set method POST")
        return self


READ_FILE = SkillSpec(
    name="read_file",
    description="Read a text file inside the allowed roots.",
    input_model=ReadFileInput,
    implementation="tasks.files:read_file",
    cacheable=True,
    file_param="path",
    keywords=("read", "file", "open", "content", "cat", "show"),
)

ANALYZE_CODE = SkillSpec(
    name="analyze_code",
    description=(
        "Measure a source file: lines (total, code, comment, blank), functions, classes, "
        "cyclomatic complexity per function, TODO/FIXME markers."
    ),
    input_model=AnalyzeCodeInput,
    implementation="tasks.analyze:analyze_code",
    version="6",  # 6: Swift's catch is a decision; Kotlin methods carry their class's name
    cacheable=True,
    file_param="path",
    keywords=("analyze", "analyse", "code", "complexity", "metrics", "lines", "functions"),
)

SEARCH_CODE = SkillSpec(
    name="search_code",
    description="Find lines matching a literal or regular expression in a source file.",
    input_model=SearchCodeInput,
    implementation="tasks.search:search_code",
    cacheable=True,
    file_param="path",
    keywords=("search", "find", "grep", "pattern", "match", "where"),
)

REPORT = SkillSpec(
    name="report",
    description=(
        "Reduce analyze_code results into a report (totals, largest files, hot spots) and "
        "search_code results into matches by file, with line numbers."
    ),
    input_model=ReportInput,
    implementation="tasks.report:report",
    keywords=("report", "summary", "totals"),
)

NOOP = SkillSpec(
    name="noop",
    description="Return its input unchanged (for dispatch benchmarks and health checks).",
    input_model=NoopInput,
    implementation="tasks.probes:noop",
    keywords=("noop", "ping", "echo"),
)

SLEEP = SkillSpec(
    name="sleep",
    description="Wait the given milliseconds, then return its value (simulated I/O).",
    input_model=SleepInput,
    implementation="tasks.probes:sleep",
    keywords=("sleep", "wait", "delay"),
)

EFFECT = SkillSpec(
    name="effect",
    description=(
        "Fault-test probe: record the execution in the audit oracle (VICTOR_AUDIT_PATH), "
        "apply a once-only side effect (SET NX), optionally sleep or kill its own process."
    ),
    input_model=EffectInput,
    implementation="tasks.probes:effect",
    keywords=("effect", "probe", "audit"),
)

LEAK = SkillSpec(
    name="leak",
    description=(
        "Fault-test probe: allocate ``mb`` MB per call and keep it in its process (a memory "
        "leak) or free it (keep=false: a spike), optionally fail; shows memory limits and "
        "pool-child recycling."
    ),
    input_model=LeakInput,
    implementation="tasks.probes:leak",
    keywords=("leak", "memory", "probe"),
)

SELECT_TOOLS = SkillSpec(
    name="select_tools",
    description="Rank the installed skills for a goal text (cached in the tool_selection cache).",
    input_model=SelectToolsInput,
    implementation="tasks.selection:select_tools",
    keywords=("select", "rank", "tools", "skills", "choose"),
)

EMBED = SkillSpec(
    name="embed",
    description="Embed texts as L2-normalised hashed n-gram vectors (numpy; embedding cache).",
    input_model=EmbedInput,
    implementation="tasks.embed:embed",
    extra="embed",
    requires=("numpy",),
    keywords=("embed", "embedding", "vector", "similarity"),
)

# The response cache is the skill's own (use_cache=False skips it), keyed without the API key.
CHAT = SkillSpec(
    name="chat",
    description=(
        "Send chat messages to the configured model provider (OpenAI, Anthropic or a local "
        "OpenAI-compatible server) and return the answer text (response cache)."
    ),
    input_model=ChatInput,
    implementation="tasks.chat:chat",
    extra="providers",
    keywords=("chat", "ask", "answer", "llm", "model", "prompt", "question", "explain"),
)

SUMMARIZE = SkillSpec(
    name="summarize",
    description=(
        "Summarize a text: through the model provider when one is configured, else an "
        "extractive summary of its most central sentences."
    ),
    input_model=SummarizeInput,
    implementation="tasks.summarize:summarize",
    keywords=("summarize", "summarise", "summary", "tldr", "condense", "shorten", "digest"),
)

# Tests are not pure (they read clocks, files and the network): not cacheable. No file_param:
# a directory is one run, not one run per file.
RUN_TESTS = SkillSpec(
    name="run_tests",
    description=(
        "Run pytest on a file or directory inside the allowed roots, in a subprocess with a "
        "timeout; passed, failed and error counts and the failing test ids."
    ),
    input_model=RunTestsInput,
    implementation="tasks.run_tests:run_tests",
    cacheable=False,
    keywords=("test", "tests", "pytest", "unittest", "verify"),
)

# HTTP is not pure (the same URL may answer differently each time): not cacheable.
FETCH = SkillSpec(
    name="fetch",
    description=(
        "HTTP GET, HEAD or POST to a host listed in fetch_allowed_hosts (checked after DNS and "
        "on every redirect hop); status, a subset of headers and the body, bounded."
    ),
    input_model=FetchInput,
    implementation="tasks.fetch:fetch",
    cacheable=False,
    keywords=("fetch", "http", "https", "url", "download", "web", "request"),
)
