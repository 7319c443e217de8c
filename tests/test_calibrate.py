"""``python -m ltbench.reproduce calibrate``: the classifier is chosen on the val split, by the
rule its docstring states, and a killed calibration resumes from its cached candidates."""

import dataclasses
import json
import os

import pytest

from ltbench.data.phantom import PhantomConfig
from ltbench.eval.classifier import ClassifierConfig
from ltbench.reproduce import calibrate
from ltbench.reproduce.presets import PRESETS


def _result(gflops, rooms, tail_map):
    return {"training_gflops": gflops, "val_tail_map": tail_map, "per_class": {f"c{i}": {"room": r} for i, r in enumerate(rooms)}}


def test_choose_takes_the_cheapest_with_room_everywhere():
    results = [_result(10, [True, False], 0.9), _result(50, [True, True], 0.4), _result(30, [True, True], 0.3), _result(5, [False, False], 0.1)]
    i, why = calibrate.choose(results)
    assert i == 2 and "cheapest" in why  # not the best tail mAP (1), not the cheapest overall (3)


def test_choose_without_room_everywhere_takes_the_most_classes_then_tail_map():
    results = [_result(10, [True, False, False], 0.9), _result(50, [True, True, False], 0.4), _result(60, [False, True, True], 0.5)]
    i, why = calibrate.choose(results)
    assert i == 2 and "no candidate" in why


def test_training_cost_counts_the_warm_start():
    short = ClassifierConfig(warm_steps=300, steps=40, batch_size=64)
    long = dataclasses.replace(short, warm_steps=1200)
    assert calibrate.training_gflops(long, 10.0) / calibrate.training_gflops(short, 10.0) == pytest.approx(1240 / 340)


SMALL = dataclasses.replace(
    PRESETS["smoke"], name="calibrate-test", phantom=PhantomConfig(n=2000, min_test_positives=1),
    classifier=ClassifierConfig(steps=2, warm_steps=2, batch_size=8),
)
TWO = ({"input_size": 32, "growth_rate": 4, "init_features": 8}, {"input_size": 32, "growth_rate": 4, "init_features": 8, "warm_steps": 3})


def test_calibration_reads_the_val_split_never_the_test_split(tmp_path, monkeypatch):
    from ltbench.eval import classifier

    scored_on = []
    real_score = classifier.score_classifier

    def spy(net, x, y, classes, cfg, required=None):
        scored_on.append(len(y))
        return real_score(net, x, y, classes, cfg, required)

    monkeypatch.setattr(classifier, "score_classifier", spy)
    res = calibrate.run_calibrate(SMALL, str(tmp_path / "to"), str(tmp_path / "work"), seeds=2, candidates=TWO, progress=False)
    assert res["split"] == "val" and res["val_images"] == 200
    assert scored_on == [200] * 4  # two candidates x two seeds, every one on the 200 val images (the test split has 400)
    on_disk = json.load(open(tmp_path / "to" / "classifier.json"))
    assert on_disk["chosen_config"] == res["candidates"][on_disk["chosen"]]["config"]
    for c in res["candidates"]:
        assert len(c["per_class"]) == 5 and "Pneumomediastinum" in c["per_class"]  # every tail class
        for v in c["per_class"].values():  # chance is the VAL prevalence
            assert 0 < v["chance"] < 1
    # the two candidates differ in their warm start only, and it reached the config
    assert [c["config"]["warm_steps"] for c in res["candidates"]] == [2, 3]
    assert res["candidates"][1]["training_gflops"] > res["candidates"][0]["training_gflops"]
    assert "(chosen)" in open(tmp_path / "to" / "classifier.md").read()
    assert set(on_disk["measured"]) >= {"git_sha", "inputs", "data", "sources"}  # what its freshness is checked by


def test_a_killed_calibration_resumes_from_its_cached_candidates(tmp_path, monkeypatch):
    work, to = str(tmp_path / "work"), str(tmp_path / "to")
    first = calibrate.run_calibrate(SMALL, to, work, seeds=2, candidates=TWO[:1], progress=False)
    assert len(os.listdir(os.path.join(work, "calibrate"))) == 1

    def no_training(*a, **k):
        raise AssertionError("a cached candidate was trained again")

    trained = []
    real = calibrate.score_candidate
    monkeypatch.setattr(calibrate, "score_candidate", lambda ctx, cfg, seeds, progress=False: trained.append(cfg.warm_steps) or real(ctx, cfg, seeds, progress))
    again = calibrate.run_calibrate(SMALL, to, work, seeds=2, candidates=TWO, progress=False)
    assert trained == [3]  # only the candidate the first run had not reached
    assert again["candidates"][0]["ap"] == first["candidates"][0]["ap"]


def test_calibration_needs_two_seeds(tmp_path):
    with pytest.raises(ValueError, match="at least 2 seeds"):
        calibrate.run_calibrate(SMALL, str(tmp_path / "to"), str(tmp_path / "work"), seeds=1, candidates=TWO, progress=False)


def test_the_calibration_goes_stale_with_its_code_not_with_the_presets(source_copy):
    """Setting the default preset to the chosen classifier (presets.py) must leave the committed
    choice fresh; a change to the classifier it trained (or the calibration) must not."""
    from ltbench.reproduce import provenance

    tmp_path = source_copy(set(provenance.SOURCE_GROUPS["calibration_sources"]) | {"ltbench/reproduce/presets.py"})
    recorded = provenance.identity(["calibration_sources"])
    presets = tmp_path / "ltbench" / "reproduce" / "presets.py"
    text = presets.read_text()
    assert "warm_steps=1200" in text
    presets.write_text(text.replace("warm_steps=1200", "warm_steps=300"))
    assert provenance.stale_parts(recorded) == []
    for f, old, new in (("ltbench/eval/classifier.py", "OneCycleLR", "OneCycleLR "), ("ltbench/reproduce/calibrate.py", '"warm_steps": 2400', '"warm_steps": 2000')):
        path = tmp_path / f
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        assert provenance.stale_parts(recorded), f
        path.write_text(text)
