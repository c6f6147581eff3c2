"""The batch run report: its numbers match the run, it is self-contained, and it renders."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from orchestrator.batch.charts import bar_chart_svg, histogram, rate_over_time
from tests.conftest import ROOT

VICTOR = [sys.executable, "-m", "orchestrator.cli", "batch"]
BAR_RGB = (0x35, 0x72, 0xB0)  # the bars' fill in the report's stylesheet


def _cli(args: list[str], cache_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VICTOR, *args],
        env={**os.environ, "VICTOR_CACHE_DIR": str(cache_dir)},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        check=False,
    )


def _tiles(page: str) -> dict[str, str]:
    found = re.findall(
        r'<div class="tile" data-name="([^"]+)"><div class="value">([^<]*)</div>', page
    )
    return {name: value.replace(",", "") for name, value in found}


def test_histogram_puts_every_value_in_one_bin() -> None:
    values = [float(v) for v in (1, 2, 2, 3, 9, 10, 10, 10)]
    bars = histogram(values, bins=3)
    assert sum(bar.value for bar in bars) == len(values)
    assert bars[0].start == 1 and bars[-1].end == 10
    assert [bar.value for bar in bars] == [4, 0, 4]


def test_rate_over_time_keeps_every_item() -> None:
    points = [(0.0, 50), (0.5, 50), (1.0, 100), (2.0, 50)]
    bars = rate_over_time(points, buckets=4)
    assert sum(bar.value * (bar.end - bar.start) for bar in bars) == pytest.approx(250)


def test_a_chart_without_data_says_so() -> None:
    assert "no data" in bar_chart_svg([], x_label="x", y_label="y", title="t")


@pytest.fixture
def partial_run(tmp_path: Path) -> tuple[dict[str, Any], Path, Path]:
    """An embedded run of 600 items, two of them bad, with ``--report``."""
    lines = [json.dumps({"value": index, "ms": index % 3}) for index in range(600)]
    lines[10], lines[300] = "{not json", json.dumps({"value": 1, "ms": "x"})
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.html"
    done = _cli(
        [
            str(source),
            "--skill",
            "sleep",
            "--out",
            str(tmp_path / "o.jsonl"),
            "--chunk-size",
            "25",
            "--report",
            str(report),
            "--json",
            "-q",
        ],
        tmp_path / "cache",
    )
    assert done.returncode == 3, done.stderr
    return json.loads(done.stdout), report, tmp_path


def test_report_shows_the_runs_numbers_failures_and_files(
    partial_run: tuple[dict[str, Any], Path, Path],
) -> None:
    summary, report, _ = partial_run
    page = report.read_text()
    tiles = _tiles(page)
    assert tiles["items"] == "600" and tiles["failed"] == "2" and tiles["succeeded"] == "598"
    assert tiles["cache hits"] == str(summary["cache_hits"])
    assert tiles["items/s"] == f"{summary['items_run'] / summary['elapsed_s']:.0f}"
    failures = page.split('id="failures"', 1)[1].split("</table>", 1)[0]
    assert failures.count("<tr>") == 1 + 2  # the header and one row per failed item
    assert "line 11: invalid JSON" in failures and "does not fit skill" in failures
    for path in (summary["out"], summary["errors"], summary["timings"]):
        assert f"<td>{path}</td>" in page
    chunk_lines = Path(summary["timings"]).read_text().splitlines()
    assert len(chunk_lines) == 600 // 25
    assert f"{len(chunk_lines)} chunks" in page
    slowest = page.split('id="slowest"', 1)[1].split("</table>", 1)[0]
    assert slowest.count("<tr>") == 1 + 10
    slowest_ms = max(json.loads(line)["ms"] for line in chunk_lines)
    assert f"<td>{slowest_ms:,.1f}</td>" in slowest.split("</tr>", 2)[1]
    assert page.count("<svg") == 2 and page.count("<rect") >= 2
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=\"https?:", page)


def test_report_command_writes_the_same_page_later(
    partial_run: tuple[dict[str, Any], Path, Path],
) -> None:
    summary, report, tmp_path = partial_run
    again = tmp_path / "again.html"
    done = _cli(["report", summary["run_id"], "--out", str(again)], tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert _tiles(again.read_text()) == _tiles(report.read_text())


def test_report_command_of_an_unknown_run_exits_non_zero(tmp_path: Path) -> None:
    done = _cli(["report", "nosuchrun", "--out", str(tmp_path / "r.html")], tmp_path / "cache")
    assert done.returncode != 0 and "nosuchrun" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_second_run_over_the_same_files_counts_its_cache_hits(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for number in range(15):
        (source / f"m{number}.py").write_text(f"def f{number}(x):\n    return x + {number}\n")
    hits = []
    for number in range(2):
        done = _cli(
            [
                str(source),
                "--skill",
                "analyze_code",
                "--include",
                "*.py",
                "--new",
                "--out",
                str(tmp_path / f"o{number}.jsonl"),
                "--json",
                "-q",
            ],
            tmp_path / "cache",
        )
        assert done.returncode == 0, done.stderr
        hits.append(json.loads(done.stdout)["cache_hits"])
    assert hits == [0, 15]


# --- rendering --------------------------------------------------------------------------------


def _pixels(png: bytes) -> tuple[int, int, int, bytes]:
    """Width, height, bytes per pixel and the unfiltered rows of an 8-bit RGB(A) PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, data, header = 8, b"", b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        body = png[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            data += body
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    step = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(data), width * step
    rows, previous = bytearray(), bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                near = min(
                    (abs(estimate - left), 0, left),
                    (abs(estimate - up), 1, up),
                    (abs(estimate - corner), 2, corner),
                )
                line[i] = (line[i] + near[2]) & 0xFF
        rows += line
        previous = line
    return width, height, step, bytes(rows)


def test_report_renders_in_headless_chromium(
    partial_run: tuple[dict[str, Any], Path, Path],
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    _, report, tmp_path = partial_run
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1280,1600",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.exists(), "chromium wrote no screenshot"
    width, height, step, rows = _pixels(shot.read_bytes())
    assert (width, height) == (1280, 1600)
    pixels = [rows[i : i + 3] for i in range(0, len(rows), step)]
    inked = sum(1 for pixel in pixels if pixel != b"\xff\xff\xff")
    bars = sum(1 for pixel in pixels if tuple(pixel) == BAR_RGB)
    assert inked > 0.02 * len(pixels), "the page rendered blank"
    assert bars > 500, "the charts' bars did not render"
