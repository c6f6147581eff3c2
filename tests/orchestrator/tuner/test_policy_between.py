"""The policy between two sizes a step apart: it compares a size with its nearest measured
neighbours and probes one slot between when the peak may lie there."""

from __future__ import annotations

import pytest

from orchestrator.tuner import Decision, TunerBounds, TunerSample, new_state, next_concurrency

INTERVAL_S = 2.0
BOUNDS = TunerBounds(1, 16, 1024.0, 0.8, max_step=2, cooldown_s=4.0)


def _drive(steps: list[tuple[int, float]]) -> list[Decision]:
    """One busy sample per (pool size, tasks a second), 2 s apart (latency by Little's law)."""
    state, decisions = new_state(), []
    for index, (size, per_s) in enumerate(steps, start=1):
        sample = TunerSample(
            at=index * INTERVAL_S,
            interval_s=INTERVAL_S,
            pool_size=size,
            completed=round(per_s * INTERVAL_S),
            latency_ms=1000.0 * size / per_s,
            active=size,
            reserved=size,
            queued=100,
            rss_mb=200.0 + 20.0 * size,
        )
        decision, state = next_concurrency(state, sample, BOUNDS)
        decisions.append(decision)
    return decisions


PEAK_AT_4 = [(2, 20.0), (4, 40.0), (4, 40.0), (6, 27.0), (6, 27.0), (4, 40.0), (4, 40.0)]
BETWEEN_TABLE = [
    pytest.param(
        # 2 -> 4 -> 6 and back to 4: both neighbours clearly worse, 6 the less so.
        PEAK_AT_4,
        "grow",
        5,
        "40.0/s at 4, 6 did 27.0/s; probing 5",
        id="both-neighbours-worse-probes-toward-the-better",
    ),
    pytest.param(
        # In proportion 5 -> 7, then 9 no better: after two cooldowns at 7 it tries 8.
        [(5, 30.0), (7, 42.0), (7, 42.0), (9, 42.5), (9, 42.5)] + [(7, 42.0)] * 4,
        "grow",
        8,
        "9 level (42.5/s) after rising in proportion from 5; probing 8",
        id="level-after-a-proportional-rise-probes-between-after-two-cooldowns",
    ),
    pytest.param(
        # Probing 1 below the best size 2: back to 2, not a full step up to 3.
        [(2, 34.0), (4, 20.0), (4, 20.0), (2, 34.0), (2, 34.0), (1, 17.0), (1, 17.0)],
        "grow",
        2,
        "grow 1->2: 2 did 34.0/s",
        id="a-measured-size-within-the-step-is-the-neighbour",
    ),
]


@pytest.mark.parametrize(("steps", "action", "target", "because"), BETWEEN_TABLE)
def test_tuner_finds_a_peak_between_two_sizes_a_step_apart(
    steps: list[tuple[int, float]], action: str, target: int, because: str
) -> None:
    decision = _drive(steps)[-1]
    assert (decision.action, decision.target, decision.rule) == (action, target, "climb")
    assert because in decision.reason


def test_tuner_holds_once_both_neighbours_one_slot_away_are_worse() -> None:
    probes = [(5, 33.0), (5, 33.0), (4, 40.0), (4, 40.0), (3, 30.0), (3, 30.0)]
    decisions = _drive([*PEAK_AT_4, *probes, *[(4, 40.0)] * 4])
    assert [d.target for d in decisions[6:]] == [5, 5, 4, 4, 3, 3, 4, 4, 4, 4, 4]
    assert all(d.action == "hold" for d in decisions[-3:])
    assert "40.0/s here, 5 did 33.0/s, 3 did 30.0/s" in decisions[-1].reason


def test_tuner_does_not_probe_between_while_the_figure_here_still_moves() -> None:
    decision = _drive([*PEAK_AT_4[:-1], (4, 48.0)])[-1]  # 20% off the average at 4
    assert (decision.action, decision.target) == ("hold", 4)
