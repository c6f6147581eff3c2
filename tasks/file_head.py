"""The head of a source file: its first bytes read in one open, and whether they are text."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from workers.core.errors import AccessDeniedError
from workers.core.paths import not_a_file


def read_head(path: Path, limit: int, shown: str) -> tuple[bytes, int]:
    """The first ``limit`` bytes of the regular file at ``path``, and its size in bytes.

    One open and one ``fstat``, whose size sets the first read (the next one meets the end).
    Opened non-blocking, so a FIFO is refused instead of waiting for a writer.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise not_a_file(path, shown) from exc
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise AccessDeniedError(f"path {shown!r} is not a regular file")
        wanted = limit + 1  # one byte past the limit tells a cut
        # The size asked first is the file's, so a small file costs no large buffer; files
        # whose size says nothing (``/proc``) are read on until the limit or the end.
        request = min(status.st_size, limit) + 1
        chunks: list[bytes] = []
        while wanted > 0:
            chunk = os.read(descriptor, request)
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
            request = min(wanted, max(request, 65536))
    finally:
        os.close(descriptor)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one chunk: no copy
    if len(data) > limit:
        return data[:limit], max(status.st_size, len(data))
    return data, len(data)


BINARY_SAMPLE_BYTES = 8192
_TEXT_CONTROLS = b"\t\n\r\f\b\x1b"
# Every byte but the control bytes text does not use: deleting these leaves only those.
_NOT_BINARY_CONTROLS = bytes(range(32, 256)) + _TEXT_CONTROLS


def is_binary(data: bytes) -> bool:
    """True for content that is not text: a NUL byte or over 30% control bytes in its head.

    The same rule as git's and grep's: text files essentially never hold NUL bytes.
    """
    sample = data[:BINARY_SAMPLE_BYTES]
    if b"\0" in sample:
        return True
    if not sample:
        return False
    controls = len(sample.translate(None, _NOT_BINARY_CONTROLS))
    return controls / len(sample) > 0.3
