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

from orchestrator.batch.charts import (
    Marker,
    bar_chart_svg,
    histogram,
    rate_over_time,
    step_chart_svg,
)
from orchestrator.batch.output import fleet_path_for
from orchestrator.batch.record import RunRecord
from orchestrator.batch.report import read_report_data, render_report
from tests.conftest import ROOT

VICTOR = [sys.executable, "-m", "orchestrator.cli", "batch"]
BAR_RGB = (0x35, 0x72, 0xB0)  # the bars' fill in the report's stylesheet
POOL_AREA_RGB = (0xE5, 0xDB, 0xFF)  # the fill under the pool-size steps


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


def test_step_chart_holds_each_value_until_the_next_point() -> None:
    svg = step_chart_svg(
        [(0.0, 4), (2.0, 6), (4.0, 6)],
        [Marker(1.5, "grow", "grow 4->6 & more")],
        x_label="s",
        y_label="pool",
        title="Pool",
    )
    line = re.search(r'<path d="([^"]+)" class="step"/>', svg)
    assert line is not None
    assert re.fullmatch(r"M[\d.]+ [\d.]+H[\d.]+V[\d.]+H[\d.]+V[\d.]+", line.group(1))
    assert svg.count('<g class="marker grow">') == 1
    assert "<title>grow 4-&gt;6 &amp; more</title>" in svg


def test_step_chart_breaks_its_line_across_a_gap() -> None:
    svg = step_chart_svg(
        [(0.0, 4), (2.0, 4), (60.0, 4), (62.0, 4)], x_label="s", y_label="p", title="t", gap=10
    )
    line = re.search(r'<path d="([^"]+)" class="step"/>', svg)
    assert line is not None and line.group(1).count("M") == 2


def _record(tmp_path: Path) -> RunRecord:
    out = tmp_path / "o.jsonl"
    out.write_text("")
    return RunRecord(
        run_id="r1",
        tenant="t",
        fingerprint="f",
        status="succeeded",
        skill="noop",
        input="in.jsonl",
        out=str(out),
        errors=str(tmp_path / "o.errors.jsonl"),
        chunk_size=10,
    )


def test_report_draws_pool_size_with_one_marker_per_applied_resize(tmp_path: Path) -> None:
    record = _record(tmp_path)
    start = 1_700_000_000.0
    samples = [
        {"at": start + 2 * n, "pool": pool, "workers": 2}
        for n, pool in enumerate([4, 4, 5, 5, 7, 7, 5])
    ]
    decisions = [
        (start + 3.0, "grow", 4, 5, "applied"),
        (start + 7.0, "grow", 5, 7, "applied"),
        (start + 11.0, "shrink", 7, 5, "applied"),
        (start + 12.0, "shrink", 5, 4, "failed"),  # the pool did not change: table only
    ]
    lines = [json.dumps(sample) for sample in samples] + [
        json.dumps(
            {
                "at": at,
                "decision": {
                    "worker": "w1@host",
                    "current": current,
                    "target": target,
                    "action": action,
                    "rule": "climb",
                    "reason": f"{action} {current}->{target}: the test says so",
                    "applied": applied,
                },
            }
        )
        for at, action, current, target, applied in decisions
    ]
    Path(fleet_path_for(record.out)).write_text("\n".join(lines) + "\n")
    page = render_report(read_report_data(record))
    pool = page.split('id="pool-size"', 1)[1].split("</svg>", 1)[0]
    assert 'class="step"' in pool and 'class="step-area"' in pool
    assert pool.count('<g class="marker grow">') == 2
    assert pool.count('<g class="marker shrink">') == 1
    assert "<title>3.0 s w1@host: 4-&gt;5 (climb) grow 4-&gt;5: the test says so</title>" in pool
    table = page.split('id="decisions"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + 4
    assert "<td>7 → 5</td>" in table and "<td>failed</td>" in table
    assert "7 samples, 4-7 slots, 4 tuner resizes" in page


def test_report_without_a_fleet_file_says_no_pool_samples_were_recorded(tmp_path: Path) -> None:
    page = render_report(read_report_data(_record(tmp_path)))
    assert "no pool samples recorded" in page.split('id="pool-size"', 1)[1]


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    """An embedded run of 600 items, two of them bad, with ``--report``; long enough (about
    3 s) for the pool sampler to read the embedded worker's pool more than once."""
    tmp_path = tmp_path_factory.mktemp("partial_run")
    lines = [json.dumps({"value": index, "ms": 30 + index % 3}) for index in range(600)]
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
    assert page.count("<svg") == 3 and page.count("<rect") >= 2
    pool = page.split('id="pool-size"', 1)[1].split("</svg>", 1)[0]
    assert 'class="step"' in pool, "the embedded run recorded no pool samples"
    samples = [json.loads(line) for line in Path(summary["fleet"]).read_text().splitlines()]
    pool_sizes = {line["pool"] for line in samples if "pool" in line}
    assert pool_sizes and min(pool_sizes) >= 1
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
    pool_area = sum(1 for pixel in pixels if tuple(pixel) == POOL_AREA_RGB)
    assert inked > 0.02 * len(pixels), "the page rendered blank"
    assert bars > 500, "the charts' bars did not render"
    assert pool_area > 5000, "the pool-size chart did not render"
