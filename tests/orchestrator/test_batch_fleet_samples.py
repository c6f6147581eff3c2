"""The pool-size sampler of a batch run: what it appends, what it skips, how it reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.batch.fleet_samples import FleetSampler, read_fleet_samples
from orchestrator.batch.output import fleet_path_for
from workers.core.errors import BackendUnavailableError


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _decision(at: float, action: str = "grow", worker: str = "w1") -> dict[str, Any]:
    return {
        "worker": worker,
        "current": 2,
        "target": 3 if action == "grow" else 1,
        "action": action,
        "rule": "climb",
        "reason": f"{action} for the test",
        "at": at,
        "applied": "applied",
        "detail": None,
    }


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_fleet_file_sits_next_to_the_output() -> None:
    assert fleet_path_for("/runs/results.jsonl") == "/runs/results.fleet.jsonl"


def test_sampler_writes_a_sample_at_start_and_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "o.fleet.jsonl"
    sampler = FleetSampler(str(path), lambda: (8, 2), every_s=60)
    with sampler:
        pass
    assert [(line["pool"], line["workers"]) for line in _lines(path)] == [(8, 2), (8, 2)]


def test_sampler_records_only_resizes_made_after_the_last_read(tmp_path: Path) -> None:
    path = tmp_path / "o.fleet.jsonl"
    clock = Clock()
    stream = [_decision(990.0), _decision(1001.0), _decision(1002.0, "hold")]
    sampler = FleetSampler(
        str(path), lambda: (4, 1), lambda: list(stream), every_s=60, clock=clock
    ).start()
    stream.append(_decision(1003.0, "shrink"))
    sampler.sample()
    sampler.stop()
    decisions = [line["decision"] for line in _lines(path) if "decision" in line]
    assert [d["action"] for d in decisions] == ["grow", "shrink"]  # none twice, no hold
    assert set(decisions[0]) == {
        "worker",
        "current",
        "target",
        "action",
        "rule",
        "reason",
        "applied",
    }


def test_a_failed_read_skips_the_sample_and_the_next_one_reads_again(tmp_path: Path) -> None:
    path = tmp_path / "o.fleet.jsonl"
    answers: list[Any] = [BackendUnavailableError("redis is away"), (4, 2)]

    def read() -> tuple[int, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    sampler = FleetSampler(str(path), read, every_s=60).start()
    sampler.stop()
    assert [line["pool"] for line in _lines(path)] == [4]


def test_embedded_sampler_skips_samples_before_the_worker_reports(tmp_path: Path) -> None:
    path = tmp_path / "o.fleet.jsonl"
    sampler = FleetSampler(str(path), lambda: (0, 0), every_s=60, skip_empty=True)
    with sampler:
        pass
    assert path.read_text() == ""


def test_a_resumed_run_appends_to_the_fleet_file(tmp_path: Path) -> None:
    path = tmp_path / "o.fleet.jsonl"
    for pool in (4, 6):
        with FleetSampler(str(path), lambda pool=pool: (pool, 2), every_s=60):
            pass
    assert [line["pool"] for line in _lines(path)] == [4, 4, 6, 6]


def test_reading_back_orders_samples_and_drops_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "o.fleet.jsonl"
    path.write_text(
        '{"at": 12.0, "pool": 6, "workers": 2}\n'
        '{"at": 10.0, "pool": 4, "workers": 2}\n'
        '{"at": 11.0, "decision": {"worker": "w1", "action": "grow"}}\n'
        '{"at": 13.0, "pool": 8, "wor'
    )
    samples = read_fleet_samples(str(path))
    assert samples.pool == [(10.0, 4), (12.0, 6)]
    assert samples.decisions == [{"worker": "w1", "action": "grow", "at": 11.0}]
    assert samples.first_at == 10.0
    assert read_fleet_samples(str(tmp_path / "missing.jsonl")).first_at is None
