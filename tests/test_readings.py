"""The readings' room-to-help check (``reproduce/readings.room_to_help``) on hand-built rows:
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
