"""The output and errors files of a run: appended a chunk at a time, cut back on resume."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from orchestrator.batch.inputs import BatchInputError


def errors_path_for(out: str) -> str:
    """``results.jsonl`` -> ``results.errors.jsonl`` (next to the output)."""
    path = Path(out)
    return str(path.with_name(f"{path.stem}.errors{path.suffix or '.jsonl'}"))


def timings_path_for(out: str) -> str:
    """``results.jsonl`` -> ``results.chunks.jsonl``: one line a committed chunk (the report's)."""
    path = Path(out)
    return str(path.with_name(f"{path.stem}.chunks.jsonl"))


def fleet_path_for(out: str) -> str:
    """``results.jsonl`` -> ``results.fleet.jsonl``: the pool-size samples and tuner decisions
    taken while the run was driven (the report's pool chart)."""
    path = Path(out)
    return str(path.with_name(f"{path.stem}.fleet.jsonl"))


def dumps(value: Any) -> bytes:
    """One JSON line (compact; values JSON cannot carry become their text)."""
    return json.dumps(value, separators=(",", ":"), default=str).encode() + b"\n"


class OutputFiles:
    """Both files of a run, opened for appending from the committed sizes.

    With ``timings``, a third file takes one line per committed chunk (its items and how long
    it took). It is only appended to: a chunk written again after a resume has two lines, and
    the report keeps the last.
    """

    def __init__(
        self,
        out: str,
        errors: str,
        out_bytes: int = 0,
        err_bytes: int = 0,
        timings: str | None = None,
    ) -> None:
        self.out_path = out
        self.errors_path = errors
        self._out = _open_at(out, out_bytes)
        self._err = _open_at(errors, err_bytes)
        self._timings: IO[bytes] | None = None
        if timings is not None:
            try:
                self._timings = open(timings, "ab")
            except OSError as exc:
                raise BatchInputError(f"cannot write {timings!r}: {exc.strerror}") from exc

    def append(
        self,
        out_lines: list[bytes],
        error_lines: list[bytes],
        timing_lines: list[bytes] | None = None,
    ) -> None:
        if out_lines:
            self._out.write(b"".join(out_lines))
        if error_lines:
            self._err.write(b"".join(error_lines))
        if timing_lines and self._timings is not None:
            self._timings.write(b"".join(timing_lines))

    def flush(self) -> tuple[int, int]:
        """Push the lines to the kernel (a killed driver loses nothing written); the sizes."""
        self._out.flush()
        self._err.flush()
        if self._timings is not None:
            self._timings.flush()
        return self._out.tell(), self._err.tell()

    def close(self) -> None:
        self._out.close()
        self._err.close()
        if self._timings is not None:
            self._timings.close()


def _open_at(path: str, size: int) -> IO[bytes]:
    """Open ``path`` for writing after its first ``size`` bytes (dropping anything later)."""
    try:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise BatchInputError(f"output directory {directory!r} does not exist; create it")
        if size and not os.path.exists(path):
            raise BatchInputError(
                f"output {path!r} is missing but the run wrote {size} bytes to it; "
                "restore the file or start a new run with --new"
            )
        stream = open(path, "r+b" if os.path.exists(path) else "w+b")
        actual = stream.seek(0, os.SEEK_END)
        if actual < size:
            stream.close()
            raise BatchInputError(
                f"output {path!r} holds {actual} bytes but the run committed {size}; "
                "restore the file or start a new run with --new"
            )
        stream.truncate(size)  # lines written after the last commit are written again
        stream.seek(size)
        return stream
    except OSError as exc:
        raise BatchInputError(f"cannot write {path!r}: {exc.strerror}") from exc
