"""Batch inputs read as a stream: JSONL, CSV, a directory (one item per file) or stdin.

Each input record gets an index (its position among the records, from 0) and a line number;
a record that cannot be read is yielded with its error, never raised, so one bad line never
stops a run. ``parse`` says which records to decode: a resumed run skips the others cheaply.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrator.core.planner import expand_paths
from workers.core.errors import PlanError
from workers.core.settings import Settings

MAX_LINE_BYTES = 1 << 20  # a JSONL line longer than this is an error, not an item
MAX_SHOWN = 200  # characters of a bad line kept in the errors file
FORMATS = ("auto", "jsonl", "csv")


class BatchInputError(PlanError):
    """Raised when a batch input cannot be opened or has the wrong shape (exit 2)."""


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One input record: an item, or the reason it is not one (``skipped``: not decoded)."""

    index: int
    line: int
    item: dict[str, Any] | None = None
    error: str | None = None
    raw: str | None = None
    skipped: bool = False


@dataclass(frozen=True)
class InputSource:
    """Where a run's items come from and how to read them."""

    location: str  # a path, or "-" for standard input
    kind: str  # jsonl, csv or dir
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    file_param: str | None = None  # the skill's path parameter (directory inputs)

    @property
    def is_stdin(self) -> bool:
        return self.location == "-"


def input_source(
    location: str,
    fmt: str = "auto",
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    file_param: str | None = None,
) -> InputSource:
    """Decide the input's kind; check that it exists (a missing file is exit 2, not a run)."""
    if fmt not in FORMATS:
        raise BatchInputError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")
    if location == "-":
        kind = "csv" if fmt == "csv" else "jsonl"
    else:
        path = Path(location)
        if path.is_dir():
            kind = "dir"
            if not file_param:
                raise BatchInputError(
                    f"input {location!r} is a directory, but the skill takes no file path; "
                    "pick a skill with a path input or pass a JSONL/CSV file"
                )
        elif path.is_file():
            suffix_csv = path.suffix.lower() in {".csv", ".tsv"}
            kind = fmt if fmt != "auto" else ("csv" if suffix_csv else "jsonl")
        else:
            raise BatchInputError(
                f"input {location!r} does not exist; pass a file, a directory or -"
            )
        location = str(path.resolve())
    return InputSource(
        location=location,
        kind=kind,
        include=include or ["*"],
        exclude=exclude or [],
        file_param=file_param,
    )


def read_records(
    source: InputSource, settings: Settings, parse: Callable[[int], bool] = lambda _: True
) -> Iterator[InputRecord]:
    """The input's records in order; only those ``parse(index)`` wants are decoded."""
    if source.kind == "dir":
        yield from _directory_records(source, settings, parse)
    elif source.kind == "csv":
        with _open(source) as stream:
            yield from _csv_records(stream, source.location, parse)
    else:
        with _open(source) as stream:
            yield from _jsonl_records(stream, parse)


def count_records(source: InputSource, settings: Settings) -> int | None:
    """How many records the input holds (None for standard input: it is read once)."""
    if source.is_stdin:
        return None
    return sum(1 for _ in read_records(source, settings, parse=lambda _: source.kind == "csv"))


def _open(source: InputSource) -> IO[bytes]:
    if source.is_stdin:
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    try:
        return open(source.location, "rb")
    except OSError as exc:
        raise BatchInputError(f"cannot read input {source.location!r}: {exc.strerror}") from exc


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _jsonl_records(stream: IO[bytes], parse: Callable[[int], bool]) -> Iterator[InputRecord]:
    index = 0
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drop the rest of the oversized line
                raw = stream.readline(MAX_LINE_BYTES)
            yield InputRecord(
                index, number, error=f"line {number}: longer than {MAX_LINE_BYTES} bytes"
            )
            index += 1
            continue
        if not raw.strip():
            continue  # blank lines are not items
        if not parse(index):
            yield InputRecord(index, number, skipped=True)
        else:
            yield _decode_json_line(index, number, raw)
        index += 1


def _decode_json_line(index: int, number: int, raw: bytes) -> InputRecord:
    shown = raw[:MAX_SHOWN].decode("utf-8", "replace").rstrip("\n")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"line {number}: not UTF-8 (byte {exc.start}); re-encode the file as UTF-8"
        return InputRecord(index, number, error=reason, raw=shown)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return InputRecord(index, number, error=f"line {number}: JSON nested too deep", raw=shown)
    except ValueError as exc:
        return InputRecord(index, number, error=f"line {number}: invalid JSON: {exc}", raw=shown)
    if not isinstance(value, dict):
        reason = f"line {number}: expected a JSON object, got {type(value).__name__}"
        return InputRecord(index, number, error=reason, raw=shown)
    return InputRecord(index, number, item=value)


def _csv_records(
    stream: IO[bytes], location: str, parse: Callable[[int], bool]
) -> Iterator[InputRecord]:
    import io

    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise BatchInputError(f"input {location!r}: the header row is not CSV: {exc}") from exc
    if not header or any(not name.strip() for name in header) or _has_surrogates(header):
        raise BatchInputError(
            f"input {location!r}: the first row must name every column (UTF-8 text)"
        )
    index = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = f"line {reader.line_num}: not CSV: {exc}"
            yield InputRecord(index, reader.line_num, error=reason)
            index += 1
            continue
        if not row:
            continue
        yield _csv_record(index, reader.line_num, header, row, parse)
        index += 1


def _csv_record(
    index: int, number: int, header: list[str], row: list[str], parse: Callable[[int], bool]
) -> InputRecord:
    if not parse(index):
        return InputRecord(index, number, skipped=True)
    shown = ",".join(row)[:MAX_SHOWN]
    if len(row) != len(header):
        reason = f"line {number}: {len(row)} fields, the header names {len(header)}"
        return InputRecord(index, number, error=reason, raw=shown)
    if _has_surrogates(row):
        reason = f"line {number}: not UTF-8; re-encode the file as UTF-8"
        return InputRecord(
            index, number, error=reason, raw=shown.encode("utf-8", "replace").decode()
        )
    # Empty cells are left out, so the skill's defaults apply.
    return InputRecord(index, number, item={k: v for k, v in zip(header, row, strict=True) if v})


def _has_surrogates(values: list[str]) -> bool:
    return any(any("\udc80" <= char <= "\udcff" for char in value) for value in values)


def _directory_records(
    source: InputSource, settings: Settings, parse: Callable[[int], bool]
) -> Iterator[InputRecord]:
    assert source.file_param is not None
    paths = expand_paths(source.location, source.include, source.exclude, settings)
    for index, path in enumerate(paths):
        if not parse(index):
            yield InputRecord(index, 0, skipped=True)
        else:
            yield InputRecord(index, 0, item={source.file_param: path})
