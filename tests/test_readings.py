"""The readings' room-to-help check (``reproduce/readings.room_to_help``, the rule in ``reproduce/room.py``) on hand-built rows:
a class is read only where `none`'s AP interval over seeds lies strictly between chance (the
test prevalence) and the ceiling (the oracle's AP); unknown when chance is not recorded."""

from ltbench.reproduce.readings import render_room, room_to_help


def _rows(aps_by_class):
    """{'none': {seed: cell results}} with the given per-seed APs."""
    seeds = len(next(iter(aps_by_class.values())))
    return {"none": {s: {"average_precision": {c: v[s] for c, v in aps_by_class.items()}} for s in range(seeds)}}


def test_room_only_strictly_between_chance_and_ceiling():
    rows = _rows({"A": [0.30, 0.32, 0.31], "B": [0.011, 0.013, 0.012], "C": [0.97, 0.98, 0.99], "D": [0.05, 0.30, 0.55]})
    room = room_to_help(rows, ["A", "B", "C", "D"], prevalence={"A": 0.05, "B": 0.012, "C": 0.05, "D": 0.05}, ceiling={"A": 0.9, "B": 0.9, "C": 0.95, "D": 0.9})
    assert room["A"]["room"] is True
    assert room["B"]["room"] is False and room["B"]["above_chance"] is False  # at chance
    assert room["C"]["room"] is False and room["C"]["below_ceiling"] is False  # at the ceiling
    # a wide interval (3 seeds, 0.05..0.55: t(2) x sd / sqrt 3 reaches below 0.05) is not resolved above chance
    assert room["D"]["above_chance"] is False and room["D"]["room"] is False
    text = "\n".join(render_room(room))
    assert "| A |" in text and "| yes |" in text and "NO (at chance)" in text and "NO (at the ceiling)" in text


def test_room_is_unknown_without_the_test_prevalence():
    room = room_to_help(_rows({"A": [0.30, 0.32, 0.31]}), ["A"], prevalence=None, ceiling={"A": 0.9})
    assert room["A"]["room"] is None and room["A"]["above_chance"] is None
    assert "unknown" in "\n".join(render_room(room))


def test_room_reads_a_skewed_rare_class_on_the_logit_scale():
    """Pneumomediastinum's committed `none` APs (0.060, 0.096, 0.037, 0.385 at chance 0.003):
    every seed sees the finding at 12-130x chance, but one high seed stretches the t-interval on
    the AP scale below zero, which no AP can reach; the logit-scale interval stays in (0, 1)
    and resolves it above chance. A class at chance on every seed stays at chance."""
    from ltbench.eval.stats import mean_interval
    from ltbench.reproduce.room import logit_interval

    aps = [0.060, 0.096, 0.037, 0.385]
    assert mean_interval(aps)["lo"] < 0  # the AP-scale interval the rule used before
    iv = logit_interval(aps)
    assert 0 < iv["lo"] < min(aps) and max(aps) < iv["hi"] < 1 and iv["n"] == 4
    room = room_to_help(_rows({"P": aps, "Q": [0.003, 0.004, 0.002, 0.003]}), ["P", "Q"], prevalence={"P": 0.003, "Q": 0.003}, ceiling={"P": 0.96, "Q": 0.96})
    assert room["P"]["room"] is True and room["P"]["interval"]["lo"] > 0.003
    assert room["P"]["ap"]["lo"] < 0  # the AP-scale interval is kept for reference
    assert room["Q"]["room"] is False and room["Q"]["above_chance"] is False
    text = "\n".join(render_room(room))
    assert f"{iv['lo']:.3f}" in text and "logit scale" in text


def test_logit_interval_handles_the_edges_and_rejects_what_is_no_ap():
    import pytest

    from ltbench.reproduce.room import logit_interval, room

    assert logit_interval([0.4]) == {"mean": 0.4, "lo": None, "hi": None, "n": 1}
    iv = logit_interval([1.0, 1.0, 0.98])  # an AP of exactly 1 has no logit: clipped, still an interval below 1
    assert iv["hi"] <= 1.0 and iv["lo"] < 0.98
    assert room([1.0, 1.0, 1.0], 0.01, 1.0)["below_ceiling"] is False  # at a perfect ceiling is no room
    for bad in ([0.2, float("nan")], [0.2, 1.2], [-0.1, 0.3]):
        with pytest.raises(ValueError, match="must lie in"):
            logit_interval(bad)


def test_the_calibration_and_table1_read_room_by_one_rule():
    """calibrate.assess (val) and readings.room_to_help (test) give the same verdict and interval
    on the same APs, chance and ceiling."""
    from types import SimpleNamespace

    from ltbench.reproduce.calibrate import assess

    aps = {"P": [0.060, 0.096, 0.037, 0.385], "B": [0.011, 0.013, 0.012, 0.012], "A": [0.30, 0.32, 0.31, 0.29]}
    chance, ceiling = {"P": 0.003, "B": 0.012, "A": 0.05}, {"P": 0.96, "B": 0.9, "A": 0.9}
    val = assess(SimpleNamespace(tail=list(aps)), {"ap": aps}, chance, ceiling)
    test = room_to_help(_rows(aps), list(aps), prevalence=chance, ceiling=ceiling)
    assert {c: (v["room"], v["interval"]) for c, v in val.items()} == {c: (v["room"], v["interval"]) for c, v in test.items()}
    assert [val[c]["room"] for c in aps] == [True, False, True]
