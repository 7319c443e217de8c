"""Committed results describe the code and weights of this checkout: every results file records
the identity of what it measured, and these tests fail when it no longer matches (rerun the
file's command, recorded in it, instead of reading a stale figure)."""

import dataclasses
import glob
import json
import os

import pytest

from ltbench.reproduce import provenance
from ltbench.reproduce.benchtable import readme_block

ROOT = provenance.REPO_ROOT
BENCH_FILES = sorted(glob.glob(os.path.join(ROOT, "results", "benchmarks", "*.json")))


def _run_cells(run: str) -> list:
    """(file name, cell) of every committed cell of a Table 1 run folder."""
    out = []
    for path in sorted(glob.glob(os.path.join(run, "cells", "*.json"))):
        with open(path) as f:
            out.append((os.path.basename(path), json.load(f)))
    assert out, f"no cells under {run}"
    return out


def _stale_cells(run: str, preset, inputs: dict) -> list:
    """The freshness check of a Table 1 run: each committed cell computed from committed code,
    by these sources (``table1_sources``), from ``inputs`` (weights, renderer) and with
    ``preset``'s cell config. Returns readable lines, one per problem (empty: fresh)."""
    sources, problems = provenance.identity(["table1_sources"]), []
    for name, cell in _run_cells(run):
        md, config = cell["metadata"], dict(cell["config"])
        if md["git_sha"].endswith("-dirty"):
            problems.append(f"{name}: computed from uncommitted code")
        if md.get("sources") != sources:
            problems.append(f"{name}: computed by other sources")
        if config.pop("inputs") != json.loads(json.dumps(inputs)):
            problems.append(f"{name}: computed from other weights or renderer")
        config.pop("class_split")
        if config != json.loads(json.dumps(preset.cell_config(config["row"], config["seed"]))):
            problems.append(f"{name}: computed with another preset config")
    return problems


@pytest.mark.parametrize("path", BENCH_FILES, ids=os.path.basename)
def test_committed_benchmark_matches_this_checkout(path):
    with open(path) as f:
        data = json.load(f)
    meta = data.get("ltbench")
    assert meta, f"{path} records no identity: rerun it with the command in results/README.md"
    expected = {p for m in meta["modules"] for p in provenance.BENCH_DEPENDS.get(m, ())}
    assert set(meta["identity"]) == expected, f"{path} records {sorted(meta['identity'])}, its benchmarks depend on {sorted(expected)}"
    stale = provenance.stale_parts(meta["identity"])
    assert not stale, f"{path} is stale ({'; '.join(stale)}): rerun `{meta['command']}`"


def test_a_changed_kernel_source_makes_the_ops_file_stale(source_copy):
    """The check itself: copy the sources, record their identity, change one byte of a kernel."""
    tmp_path = source_copy(provenance.SOURCE_GROUPS["ops_sources"])
    recorded = provenance.identity(["ops_sources"])
    assert provenance.stale_parts(recorded) == []
    kernel = tmp_path / "csrc" / "ops" / "mask_fuse" / "mask_fuse.h"
    kernel.write_text(kernel.read_text() + "\n// edited\n")
    stale = provenance.stale_parts(recorded)
    assert len(stale) == 1 and stale[0].startswith("ops_sources: recorded")


def test_a_stale_committed_file_fails_the_check(tmp_path):
    with open(os.path.join(ROOT, "results", "benchmarks", "ops-cpu.json")) as f:
        data = json.load(f)
    data["ltbench"]["identity"]["ops_sources"] = "0" * 16  # as if measured on other kernels
    assert provenance.stale_parts(data["ltbench"]["identity"])


def test_table1_default_cells_were_computed_by_this_code():
    """Every committed cell records the identity of the sources its numbers come from (method,
    metrics, augmenters and baselines, prior, data, ops, the experiment's stages and cells), the
    weights and renderer it read and its preset config: a change to any of them makes the
    committed run stale until it is rerun."""
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.stages import input_identity

    stale = _stale_cells(os.path.join(ROOT, "results", "table1-default"), PRESETS["default"], input_identity(PRESETS["default"]))
    assert not stale, f"{len(stale)} problems (e.g. {stale[:3]}): rerun python -m ltbench.reproduce table1 --out results/table1-default"


def test_a_changed_method_source_makes_the_cells_stale(source_copy):
    """The check itself: copy the sources, record their identity, change one byte of the fusion."""
    tmp_path = source_copy(provenance.SOURCE_GROUPS["table1_sources"])
    recorded = provenance.identity(["table1_sources"])
    assert provenance.stale_parts(recorded) == []
    f = tmp_path / "ltbench" / "method" / "fusion.py"
    f.write_text(f.read_text().replace("cam_h < tau_l", "cam_h <= tau_l"))
    assert provenance.stale_parts(recorded) and provenance.stale_parts(recorded)[0].startswith("table1_sources: recorded")


def test_table1_default_covers_every_row_and_seed_on_one_class_split():
    from ltbench.reproduce.presets import PRESETS

    rows, seeds, splits = set(), set(), set()
    for _, cell in _run_cells(os.path.join(ROOT, "results", "table1-default")):
        config = cell["config"]
        splits.add(json.dumps(config["class_split"]))  # the head and tail the cell was computed on: one for the whole run
        rows.add(config["row"])
        seeds.add(config["seed"])
    assert rows == set(PRESETS["default"].rows) and seeds == set(range(PRESETS["default"].seeds))
    assert len(splits) == 1


def test_a_cell_of_another_preset_or_weights_is_stale(tmp_path):
    """The check itself: a committed cell copied, then its config or its inputs changed."""
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.stages import input_identity

    preset, inputs = PRESETS["default"], input_identity(PRESETS["default"])
    name, cell = _run_cells(os.path.join(ROOT, "results", "table1-default"))[0]
    (tmp_path / "cells").mkdir()
    assert _stale_cells_of(tmp_path, name, cell, preset, inputs) == []
    other = json.loads(json.dumps(cell))
    other["config"]["classifier"]["warm_steps"] += 1
    assert _stale_cells_of(tmp_path, name, other, preset, inputs) == [f"{name}: computed with another preset config"]
    other = json.loads(json.dumps(cell))
    other["config"]["inputs"]["oracle"] = "0" * 16
    assert _stale_cells_of(tmp_path, name, other, preset, inputs) == [f"{name}: computed from other weights or renderer"]


def _stale_cells_of(folder, name, cell, preset, inputs):
    with open(folder / "cells" / name, "w") as f:
        json.dump(cell, f)
    return _stale_cells(str(folder), preset, inputs)


def test_table1_default_cells_of_a_seed_share_one_warm_start_and_one_fit():
    """The pairing the paired intervals rest on: every cell of a seed started from the same
    classifier weights, and every fsa-il cell of a seed drew from the same IL fit (digests of
    the weights, not of their configs: a rebuilt cache would show)."""
    warm, il = {}, {}
    for path in glob.glob(os.path.join(ROOT, "results", "table1-default", "cells", "*.json")):
        with open(path) as f:
            cell = json.load(f)
        seed, fit = cell["config"]["seed"], cell["results"]["fit"]
        warm.setdefault(seed, set()).add(fit["warm_start"])
        if cell["config"]["row"].startswith("fsa-il"):
            il.setdefault(seed, set()).add(fit["il"]["weights"])
    assert warm and all(len(v) == 1 and None not in v for v in warm.values()), warm
    assert il and all(len(v) == 1 for v in il.values()), il


def test_table1_default_has_the_power_it_was_sized_for():
    """Every row's paired tail-mAP difference from `none` is resolved to the 95% half-width
    docs/evaluation.md ("Paired comparisons with known power") states for it in the committed
    run: 0.04 at the preset's 4 seeds for the rows trained as `none` is (same loss, same sampler:
    the copies, the generators with their per-seed fits, oversampling), 0.06 for the rows that
    change the loss or the sampler (`wbce`, `asl`, `logit-adj`, GENERATOR+METHOD), whose training
    runs leave the shared warm start further, and 0.10 for `crt`, whose head is re-trained from
    scratch on class-balanced batches and moves furthest."""
    from ltbench.reproduce.rows import parse_row

    with open(os.path.join(ROOT, "results", "table1-default", "table1.json")) as f:
        table = json.load(f)["rows"]
    assert len(table) >= 15, f"the committed run has only the rows {sorted(table)}"
    bound = {row: (0.06 if parse_row(row)["trainer"] else 0.04) for row in table if row != "none"}
    bound["crt"] = 0.10
    assert sum(b == 0.04 for b in bound.values()) >= 9 and sum(b == 0.06 for b in bound.values()) >= 4
    wide = {row: (round(table[row]["d_tail_map"]["half_width"], 3), b) for row, b in bound.items() if not table[row]["d_tail_map"]["half_width"] <= b}
    assert not wide, f"paired tail-mAP half-widths above the sizing (row: (half-width, bound)): {wide}"


@pytest.mark.parametrize("name", ["table1", "ops-table", "prior-cost", "il-generation", "streaming-memory", "rehearsal", "localisation", "cam-choices", "refine-sweep"])
def test_generated_doc_blocks_are_the_rendering_of_the_committed_json(name):
    from ltbench.reproduce.benchtable import block_files, rendered_blocks

    rel = block_files()[name]
    with open(os.path.join(ROOT, rel)) as f:
        block = readme_block(f.read(), name)
    assert block == rendered_blocks()[name], f"{rel}'s {name} block differs from the committed results: python -m ltbench.reproduce.benchtable --write"


def test_shipped_prior_quality_describes_its_weights_and_every_tail_class_is_drawn():
    """``ltbench prior evaluate`` records the weights it measured; text-to-image must show every
    tail class (prompt fidelity >= 0.3 with the judge at a 10% false-positive rate on real
    images; weak on the tail like RoentGen is acceptable, absent is not)."""
    from ltbench.data.classes import TAIL_CLASSES
    from ltbench.prior.vae import resolve_prior

    with open(os.path.join(resolve_prior("phantom"), "quality.json")) as f:
        q = json.load(f)
    assert q["measured"]["weights_sha256"] == provenance.shipped_prior_weights(), f"quality.json is stale: rerun `{q['measured']['command']}`"
    assert q["config"]["n_per_class"] >= 64 and q["config"]["judge_fpr"] == 0.1
    low = {c: q["prompt_fidelity"][c]["recognised"] for c in TAIL_CLASSES if q["prompt_fidelity"][c]["recognised"] < 0.3}
    assert not low, f"text-to-image all but misses {low}"


REHEARSAL = os.path.join(ROOT, "results", "paper-rehearsal")


def test_committed_rehearsal_matches_its_preset_and_projection(tmp_path):
    """The committed paper-rehearsal run was made by the current preset from a clean commit,
    its pipeline is what `make_roentgen_shaped_pipeline` builds today, and projection.md/json
    are what `project` computes from it (rerun: README "Running at scale")."""
    import dataclasses

    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.projection import project
    from ltbench.reproduce.rehearsal import make_roentgen_shaped_pipeline
    from ltbench.utils.io import sha256_file

    with open(os.path.join(REHEARSAL, "run.json")) as f:
        run = json.load(f)
    assert all(not i["metadata"]["git_sha"].endswith("-dirty") for i in run["invocations"]), "the rehearsal was run from uncommitted code"
    preset = dataclasses.replace(PRESETS["paper-rehearsal"], data_root=run["config"]["data_root"], prior=run["config"]["prior"])
    prior = make_roentgen_shaped_pipeline(str(tmp_path / "sd"))
    rows, splits = set(), set()
    for path in sorted(glob.glob(os.path.join(REHEARSAL, "cells", "*.json"))):
        with open(path) as f:
            cell = json.load(f)
        config = cell["config"]
        splits.add(json.dumps(config.pop("class_split")))  # the run's head and tail: one for all cells
        assert not cell["metadata"]["git_sha"].endswith("-dirty"), f"{os.path.basename(path)} was computed from uncommitted code: rerun it"
        for k, digest in config.pop("inputs")["prior"].items():
            assert sha256_file(os.path.join(prior, k))[:16] == digest, f"{k}: the rehearsal pipeline changed since the run: rerun it"
        assert config == json.loads(json.dumps(preset.cell_config(config["row"], config["seed"]))), f"{os.path.basename(path)} was computed with another paper-rehearsal preset: rerun it"
        rows.add(config["row"])
    assert rows == set(PRESETS["paper-rehearsal"].rows) and len(splits) == 1
    with open(os.path.join(REHEARSAL, "projection.json")) as f:
        committed = json.load(f)
    assert json.loads(json.dumps(project(REHEARSAL))) == committed, "projection.json is stale: rerun python -m ltbench.reproduce project --run results/paper-rehearsal"


def test_committed_localisation_describes_the_default_run():
    """results/diagnostics was measured on the default run's inputs (prior, oracle, renderer)
    from a clean commit: rerun `python -m ltbench.reproduce diagnostics` when they change."""
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.stages import input_identity

    with open(os.path.join(ROOT, "results", "diagnostics", "localisation.json")) as f:
        res = json.load(f)
    assert res["preset"] == "default" and res["measured"]["inputs"] == input_identity(PRESETS["default"])
    assert not res["measured"]["git_sha"].endswith("-dirty")
    assert res["tau_h"] == PRESETS["default"].fusion.tau_h
    f = PRESETS["default"].fusion
    assert res["cam"] == [f.cam, f.cam_layers], "measured with another default CAM"
    best = max(res["cam_choices"], key=lambda e: e["score"])
    assert [best["cam"], best["layers"]] == res["cam"], f"the default CAM is not the one that localises best ({best['cam']}, {best['layers']})"


def test_committed_refine_sweep_describes_the_default_run():
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.stages import input_identity

    with open(os.path.join(ROOT, "results", "diagnostics", "refine-sweep.json")) as f:
        res = json.load(f)
    assert res["preset"] == "default" and res["measured"]["inputs"] == input_identity(PRESETS["default"])
    assert not res["measured"]["git_sha"].endswith("-dirty")
    assert json.loads(json.dumps(res["fusion"])) == json.loads(json.dumps(dataclasses.asdict(PRESETS["default"].fusion))), "swept with another fusion config: rerun python -m ltbench.reproduce refine-sweep"
    assert {(p["decoder"], p["k"]) for p in res["points"]} >= {(d, k) for d in ("eval", "train-batch2") for k in (0, 1, 5, 15, 30)}
    # every difference the README reads carries its paired interval
    assert res["intervals"]["n_boot"] >= 1000 and res["intervals"]["level"] == 0.95
    assert all(p["paired"] is not None for p in res["points"] if (p["decoder"], p["k"], p["variant"]) != ("eval", 0, None))
    assert {p["variant"].split("=")[0] for p in res["points"] if p["variant"]} >= {"partner_rule", "partner_candidates", "refine_prompt"}


TRAIN_SPLIT_PRIOR = os.path.join(ROOT, "results", "prior-train-split")
TRAIN_SPLIT_RUN = os.path.join(ROOT, "results", "table1-train-split-prior")


def test_the_train_split_prior_is_what_its_preset_trains_and_its_quality_is_of_these_weights():
    """results/prior-train-split: trained on the default split's train images only, with no
    mask weight; its quality.json measured these weight files."""
    from ltbench.prior.train import PRESETS as PRIOR_PRESETS
    from ltbench.utils.provenance import prior_weights

    with open(os.path.join(TRAIN_SPLIT_PRIOR, "training_config.json")) as f:
        training = json.load(f)
    assert training["preset_config"] == json.loads(json.dumps(dataclasses.asdict(PRIOR_PRESETS["phantom-train-split"])))
    assert training["preset_config"]["split"] == "train" and training["preset_config"]["finding_weight"] == 0
    with open(os.path.join(TRAIN_SPLIT_PRIOR, "quality.json")) as f:
        quality = json.load(f)
    assert quality["measured"]["weights_sha256"] == prior_weights(TRAIN_SPLIT_PRIOR), "rerun ltbench prior evaluate --prior results/prior-train-split"
    assert set(quality["round_trip"]["per_class"]) == set(quality["prompt_fidelity"])


def test_the_train_split_prior_run_is_fresh_and_its_prior_free_rows_equal_the_default_run():
    """results/table1-train-split-prior: computed by this code from the committed train-split
    prior with the default preset otherwise; `real` and `none` do not touch the prior, so their
    cells must equal the default run's (same seeds, starts and held-out draws)."""
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.stages import input_identity

    cells = _run_cells(TRAIN_SPLIT_RUN)
    priors = {cell["config"]["prior"] for _, cell in cells}
    assert len(priors) == 1 and os.path.abspath(os.path.join(ROOT, priors.pop())) == TRAIN_SPLIT_PRIOR
    preset = dataclasses.replace(PRESETS["default"], prior=cells[0][1]["config"]["prior"])
    stale = _stale_cells(TRAIN_SPLIT_RUN, preset, input_identity(dataclasses.replace(preset, prior=TRAIN_SPLIT_PRIOR)))
    assert not stale, f"{stale[:3]}: rerun the command in docs/phantom.md"
    rows = set()
    for name, cell in cells:
        rows.add(cell["config"]["row"])
        if cell["config"]["row"] in ("real", "none"):
            with open(os.path.join(ROOT, "results", "table1-default", "cells", name)) as f:
                default = json.load(f)["results"]
            for k in ("head_map", "tail_map", "average_precision"):
                assert cell["results"][k] == default[k], (name, k)
    assert rows == {"real", "none", "vae", "t2i", "fsa-il@5"}


def test_the_reproducibility_record_is_of_this_code_and_the_committed_cells():
    with open(os.path.join(ROOT, "results", "table1-default", "reproducibility.json")) as f:
        res = json.load(f)
    assert res["measured"]["sources"] == provenance.identity(["table1_sources"]), "rerun python -m ltbench.reproduce reproducibility --run results/table1-default"
    assert set(res["variants"]) == {"as it is", "baseline ISA", "one thread"} and res["rows"] == ["none", "smote", "fsa-il@0"]
    for v in res["variants"].values():
        assert all({"head_map", "tail_map"} <= set(d) for d in v["max_abs_diff"].values())


def test_the_committed_calibration_is_of_this_code_data_and_preset():
    """results/calibration: made by this code (the calibration's sources: Table 1's without its
    presets, rows and cells, plus calibrate.py with its candidates and choice rule), on the
    default preset's data and weights, every candidate the default preset's classifier schedule
    with only its declared change; the choice is the rule's on the record's own numbers."""
    from types import SimpleNamespace

    from ltbench.reproduce import calibrate
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.stages import input_identity

    with open(os.path.join(ROOT, "results", "calibration", "classifier.json")) as f:
        res = json.load(f)
    m, preset = res["measured"], PRESETS[res["preset"]]
    rerun = "rerun python -m ltbench.reproduce calibrate --to results/calibration"
    assert res["preset"] == "default" and res["split"] == "val"
    assert not m["git_sha"].endswith("-dirty"), "the calibration was made from uncommitted code"
    assert m["sources"] == provenance.identity(["calibration_sources"]), rerun
    assert m["data"]["phantom"] == dataclasses.asdict(preset.phantom) and m["data"]["size"] == preset.image_size, rerun
    assert m["inputs"] == json.loads(json.dumps(input_identity(preset))), rerun
    assert [c["change"] for c in res["candidates"]] == [dict(c) for c in calibrate.CANDIDATES]
    for c in res["candidates"]:
        assert c["config"] == json.loads(json.dumps(dataclasses.asdict(calibrate.candidate_config(preset.classifier, c["change"])))), rerun
        assert all(len(v) == res["seeds"] for v in c["ap"].values())
    for c in res["candidates"]:  # each verdict is the room rule's on the record's own APs, chance and ceiling
        tail = list(c["per_class"])
        again = calibrate.assess(SimpleNamespace(tail=tail), {"ap": c["ap"]}, {t: c["per_class"][t]["chance"] for t in tail}, {t: c["per_class"][t]["ceiling"] for t in tail})
        assert json.loads(json.dumps(again)) == c["per_class"], rerun
    assert calibrate.choose(res["candidates"])[0] == res["chosen"]


def test_the_readme_reads_the_committed_room_table_and_survivors():
    """README "Table 1" states the committed run's room to help and its survivors: the room table
    is recomputed here from the committed `none` cells (every seed of the preset), the test
    split's prevalence and the oracle's AP recorded in run.json, and the README's count, its
    classes and its number of surviving comparisons must be the committed ones."""
    import re

    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.readings import room_to_help

    run = os.path.join(ROOT, "results", "table1-default")
    with open(os.path.join(run, "table1.json")) as f:
        table = json.load(f)
    with open(os.path.join(run, "run.json")) as f:
        record = json.load(f)
    none = {cell["config"]["seed"]: cell["results"] for name, cell in _run_cells(run) if cell["config"]["row"] == "none"}
    assert sorted(none) == list(range(PRESETS["default"].seeds)), f"`none` cells of seeds {sorted(none)}"
    tail = list(table["room_to_help"])
    assert len(tail) == 5
    room = room_to_help({"none": none}, tail, prevalence=record["test_prevalence"], ceiling=record["oracle"]["test_average_precision"])
    assert json.loads(json.dumps(room)) == table["room_to_help"], "table1.json's room table is not the one its cells give"
    with_room = [c for c in tail if room[c]["room"]]
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    m = re.search(r"room to help on (\d) of (\d) tail classes \(([^)]*)\)", readme)
    assert m, "README no longer states the room to help per tail class"
    assert (int(m.group(1)), int(m.group(2))) == (len(with_room), len(tail)), m.group(0)
    assert [c.strip() for c in m.group(3).split(",")] == with_room, m.group(0)
    fams = table["comparisons"].values()
    survivors, total = sum(c["survives"] for f in fams for c in f["comparisons"]), sum(f["n_comparisons"] for f in fams)
    m = re.search(r"\*\*What survives correction\.\*\* (\d+) comparisons out of (\d+)", readme)
    assert m and (int(m.group(1)), int(m.group(2))) == (survivors, total), f"README's survivor count against the committed {survivors} of {total}"
