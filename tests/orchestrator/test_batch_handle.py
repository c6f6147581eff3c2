"""``Orchestrator.batch``: await the handle for the summary, or iterate it for each line once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.batch.handle import inline_input_path
from orchestrator.batch.record import RunFinishedError
from orchestrator.facade import Orchestrator
from workers.core.settings import Settings


def _orchestrator(embedded_settings: Callable[..., Settings], tmp_path: Path) -> Orchestrator:
    return Orchestrator(embedded_settings(cache_dir=str(tmp_path / "cache")))


def test_awaiting_a_batch_of_inline_items_returns_its_summary(
    embedded_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    out = str(tmp_path / "o.jsonl")

    async def run() -> dict[str, Any]:
        async with _orchestrator(embedded_settings, tmp_path) as orchestrator:
            items = ({"value": index} for index in range(130))
            summary: dict[str, Any] = await orchestrator.batch(
                items, "noop", out=out, chunk_size=20
            )
            return summary

    summary = asyncio.run(run())
    assert summary["status"] == "succeeded" and summary["items"] == 130
    lines = [json.loads(line) for line in Path(out).read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(130))
    assert all(line["result"] == line["index"] for line in lines)
    assert len(Path(inline_input_path(out)).read_text().splitlines()) == 130


def test_iterating_a_batch_yields_every_line_once_with_failures(
    embedded_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"value": i, "ms": "x" if i == 7 else 0}) + "\n" for i in range(90))
    )

    async def run() -> list[dict[str, Any]]:
        async with _orchestrator(embedded_settings, tmp_path) as orchestrator:
            handle = orchestrator.batch(str(source), "sleep", out=str(tmp_path / "o.jsonl"))
            return [line async for line in handle]

    lines = asyncio.run(run())
    assert sorted(line["index"] for line in lines) == list(range(90))
    failed = [line for line in lines if not line["ok"]]
    assert [line["index"] for line in failed] == [7]


def test_a_second_identical_call_finds_the_finished_run(
    embedded_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    out = str(tmp_path / "o.jsonl")

    async def run() -> None:
        async with _orchestrator(embedded_settings, tmp_path) as orchestrator:
            await orchestrator.batch([{"value": 1}], "noop", out=out)
            await orchestrator.batch([{"value": 1}], "noop", out=out)

    with pytest.raises(RunFinishedError, match="already finished"):
        asyncio.run(run())
