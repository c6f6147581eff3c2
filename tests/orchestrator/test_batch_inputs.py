"""Batch inputs, the committed-chunk set and the SQLite run store (one process, no Redis)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.batch import BatchInputError, input_source
from orchestrator.batch.driver import chunks_of
from orchestrator.batch.inputs import read_records
from orchestrator.batch.output import OutputFiles
from orchestrator.batch.record import ChunkSet, Progress, RunRecord
from orchestrator.batch.sqlite_store import SqliteRunStore
from workers.core.settings import Settings


def _settings(root: Path) -> Settings:
    return Settings(allowed_roots=[root])


def test_malformed_jsonl_lines_become_errors_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"value": 1}\n{bad\n\n[1, 2]\n{"value": NaN}\n\xff\xfe\n' + b"[" * 100_000 + b"\n"
        b'{"value": 2}\n'
    )
    records = list(read_records(input_source(str(path)), _settings(tmp_path)))
    assert [r.index for r in records] == list(range(7))
    assert records[0].item == {"value": 1} and records[-1].item == {"value": 2}
    errors = {r.line: r.error for r in records if r.error}
    assert set(errors) == {2, 4, 5, 6, 7}
    assert "invalid JSON" in errors[2] and "expected a JSON object" in errors[4]
    assert "NaN" in errors[5] and "not UTF-8" in errors[6] and "line 7" in errors[7]


def test_csv_rows_are_items_named_by_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('value,ms\n"a,b",\n1,2,3\nc,5\n')
    records = list(read_records(input_source(str(path)), _settings(tmp_path)))
    assert records[0].item == {"value": "a,b"}  # empty cells are left out
    assert records[1].error is not None and "3 fields" in records[1].error
    assert records[2].item == {"value": "c", "ms": "5"}


def test_directory_input_yields_one_item_per_file(tmp_path: Path) -> None:
    for name in ("b.py", "a.py", "c.txt"):
        (tmp_path / name).write_text("x = 1\n")
    source = input_source(str(tmp_path), include=["*.py"], file_param="path")
    items = [r.item for r in read_records(source, _settings(tmp_path))]
    assert items == [{"path": str(tmp_path / "a.py")}, {"path": str(tmp_path / "b.py")}]


def test_a_directory_needs_a_skill_with_a_path_input(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="takes no file path"):
        input_source(str(tmp_path))
    with pytest.raises(BatchInputError, match="does not exist"):
        input_source(str(tmp_path / "missing.jsonl"))


def test_committed_chunks_are_skipped_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"value": {i}}}\n' for i in range(10)))
    committed = ChunkSet()
    committed.add(0)
    committed.add(2)
    records = read_records(
        input_source(str(path)), _settings(tmp_path), parse=lambda i: i // 3 not in committed
    )
    chunks = list(chunks_of(records, 3, committed, "run"))
    assert [c.number for c in chunks] == [1, 3]
    assert [r.item for r in chunks[0].records] == [{"value": 3}, {"value": 4}, {"value": 5}]
    assert chunks[1].task_id == "run.3"


def test_chunk_set_matches_redis_bit_order() -> None:
    chunks = ChunkSet(b"\x80\x01")  # SETBIT 0 and SETBIT 15
    assert 0 in chunks and 15 in chunks and 1 not in chunks and len(chunks) == 2


def test_sqlite_store_commits_chunks_and_reports_a_cancel(tmp_path: Path) -> None:
    store = SqliteRunStore(str(tmp_path / "cache.sqlite3"))
    record = RunRecord("r1", "t", "fp", "running", "noop", "in", "out", "err", 10)
    store.create(record)
    assert store.commit("r1", [0, 3], Progress(10, 0, 20, 0, 2)) == "running"
    assert store.find_latest("t", "fp") is not None
    other = SqliteRunStore(str(tmp_path / "cache.sqlite3"))  # another process: victor batch cancel
    other.update("r1", status="cancelled")
    assert store.commit("r1", [4], Progress(15, 0, 30, 0, 3)) == "cancelled"
    assert 3 in store.chunks("r1") and 4 in store.chunks("r1") and len(store.chunks("r1")) == 3
    assert store.get("r1").out_bytes == 15


def test_output_is_cut_back_to_the_committed_size(tmp_path: Path) -> None:
    out, err = str(tmp_path / "o.jsonl"), str(tmp_path / "e.jsonl")
    files = OutputFiles(out, err)
    files.append([b"committed\n"], [])
    committed, _ = files.flush()
    files.append([b"written after the commit\n"], [])
    files.close()
    OutputFiles(out, err, committed, 0).close()
    assert Path(out).read_bytes() == b"committed\n"
    with pytest.raises(BatchInputError, match="committed"):
        OutputFiles(out, err, committed + 5, 0)
