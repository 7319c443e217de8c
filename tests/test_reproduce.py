"""``python -m ltbench.reproduce table1``: the smoke preset end to end (subprocess), resume
after a kill, the result schema, rendering from JSON only, refusals."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ltbench.reproduce.__main__ import main
from ltbench.data.classes import TAIL_CLASSES
from ltbench.reproduce.presets import DEFAULT_ROWS, PRESETS
from ltbench.reproduce.rows import parse_row
from ltbench.reproduce.schema import ConfigMismatch, validate_cell
from ltbench.reproduce.table1 import run_table1

pytestmark = pytest.mark.slow  # a killed-and-resumed smoke Table 1, torchrun and --shard fan-outs: minutes

CMD = [sys.executable, "-m", "ltbench.reproduce", "table1", "--preset", "smoke", "--quiet"]


def _summary(stdout: str) -> dict:
    return json.JSONDecoder().raw_decode(stdout.lstrip())[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Start the smoke preset, SIGKILL it once two cells are on disk, then run it again."""
    out = str(tmp_path_factory.mktemp("table1") / "smoke")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    p = subprocess.Popen(CMD + ["--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.time() + 600
    while len(glob.glob(os.path.join(out, "cells", "*.json"))) < 2:
        if p.poll() is not None:
            pytest.fail(f"smoke run ended before it was killed: rc {p.returncode}\n{p.stderr.read().decode()[-3000:]}")
        if time.time() > deadline:
            p.kill()
            pytest.fail("smoke run wrote no cell in 10 minutes")
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=600)
    before = {f: open(f, "rb").read() for f in glob.glob(os.path.join(out, "cells", "*.json"))}
    r = subprocess.run(CMD + ["--out", out], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, before, _summary(r.stdout)


def test_killed_smoke_run_resumes_without_redoing_finished_cells(smoke_run):
    out, before, summary = smoke_run
    names = {os.path.basename(f)[: -len(".json")] for f in before}
    assert len(names) >= 2
    assert names <= set(summary["reused"]) and not names & set(summary["ran"])
    for f, data in before.items():
        assert open(f, "rb").read() == data  # finished cells untouched
    assert len(summary["reused"]) + len(summary["ran"]) == len(DEFAULT_ROWS) * PRESETS["smoke"].seeds
    r = subprocess.run(CMD + ["--out", out], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and _summary(r.stdout)["ran"] == []  # nothing left to run


def test_smoke_cells_validate_and_carry_provenance(smoke_run):
    out, _, _ = smoke_run
    cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, "cells", "*.json")))]
    assert {c["config"]["row"] for c in cells} == set(DEFAULT_ROWS)
    # the seed's shared classifier warm start is a cached stage (computed once, before the kill)
    assert os.path.getsize(os.path.join(out, "work", "classifier", "warm-seed0.pt")) > 1e6
    for c in cells:
        validate_cell(c)
        md = c["metadata"]
        assert md["ops_backend"] in ("fused-cpu", "fused-cuda", "reference") and md["seed"] == c["config"]["seed"]
        assert md["versions"]["torch"] and md["utc_time"].endswith("+00:00")
        res = c["results"]
        row = parse_row(c["config"]["row"])["base"]  # a trainer row (asl, fsa-il@5+asl) has its base row's samples
        if row == "none":
            assert res["train_size"]["generated"] == 0 and res["tail_metrics"] is None
        else:
            n = PRESETS["smoke"].n_per_class * 5
            assert res["train_size"]["generated"] == res["cost"]["n_generated"] == n
            # equal counts: every row, floor and ceiling included, has n_per_class per tail class in every metric
            assert res["generated_per_class"] == {c: PRESETS["smoke"].n_per_class for c in TAIL_CLASSES}
            assert {k for k, v in res["label_fidelity"]["per_class"].items() if v["n"] == PRESETS["smoke"].n_per_class} == set(TAIL_CLASSES)
            m = res["tail_metrics"]["oracle"]
            assert m["mean"]["fid"] >= 0 and 0 <= m["mean"]["precision"] <= 1 and 0 <= m["mean"]["recall"] <= 1 and m["mean"]["kid"] is not None
            assert res["tail_metrics"]["inception"] == "n/a (no Inception weights)" or res["tail_metrics"]["inception"]["mean"]["fid"] >= 0
            assert 0 <= res["label_fidelity"]["mean_tail"] <= 1
            assert res["cost"]["seconds_to_n_per_class"] >= res["cost"]["generate_seconds"]
        # exact: 2 UNet evaluations per step with guidance (a refinement that was skipped fails this)
        expected_evals = {"t2i": 150, "fsa-il@1": 2, "fsa-il@5": 10}.get(row, 0)
        if row != "none":
            assert res["cost"]["unet_evals_per_sample"] == expected_evals
        if row.startswith("fsa-il"):
            assert res["cost"]["fit_seconds"] > 0  # the shared IL fit + CAMs is charged to every fsa-il row


def test_table_and_figures_are_rendered_from_the_cells(smoke_run, tmp_path):
    out, _, _ = smoke_run
    md = open(os.path.join(out, "table1.md")).read()
    for row in DEFAULT_ROWS:
        assert f"| `{row}` |" in md
    csv_lines = open(os.path.join(out, "table1.csv")).read().strip().splitlines()
    assert csv_lines[0].startswith("row,n_seeds,fid_oracle_mean") and len(csv_lines) == 1 + len(DEFAULT_ROWS)
    assert os.path.getsize(os.path.join(out, "figures", "table1.png")) > 1000
    assert os.path.exists(os.path.join(out, "figures", "samples-t2i.png"))
    run = json.load(open(os.path.join(out, "run.json")))
    assert run["preset"] == "smoke" and 0 <= run["oracle"]["tail_map"] <= 1
    # the table follows the JSON: edit a copy of one cell, re-render, see the edit
    import shutil

    from ltbench.reproduce.report import render

    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("work"))
    f = os.path.join(copy, "cells", "none__seed0.json")
    cell = json.load(open(f))
    cell["results"]["head_map"] = 0.123456
    json.dump(cell, open(f, "w"))
    render(copy, rows=DEFAULT_ROWS, run_info=run)
    assert "0.123" in open(os.path.join(copy, "table1.md")).read()


def test_memorisation_compares_like_with_like_floors_pass_copies_flagged(smoke_run):
    """The memorisation check's reference is a draw of its own (no `real` image in it), through
    the autoencoder for decoded rows; on it the floors (`real`, `vae`: new images by
    construction) are not flagged and exact copies (`oversample`) are."""
    out, _, _ = smoke_run
    mem = {r: json.load(open(os.path.join(out, "cells", f"{r}__seed0.json")))["results"]["memorisation"] for r in ("real", "vae", "oversample", "t2i", "fsa-il@0")}
    assert mem["real"]["reference"] == mem["oversample"]["reference"] == "new real images"
    assert mem["vae"]["reference"] == mem["t2i"]["reference"] == mem["fsa-il@0"]["reference"] == "new real images through the autoencoder"
    assert mem["oversample"]["overall"]["flag"] is True and mem["oversample"]["overall"]["pixel"]["generated_median"] == 0
    assert mem["real"]["overall"]["flag"] is False, mem["real"]["overall"]
    assert mem["vae"]["overall"]["flag"] is False, mem["vae"]["overall"]
    ref = np.load(os.path.join(out, "work", "memorisation_reference-seed0.npz"))
    real = {im.tobytes() for im in np.load(os.path.join(out, "work", "generated", "real__seed0.npz"))["images"]}
    assert not real & {im.tobytes() for c in ref.files if c != "stamp" for im in ref[c]}


def test_every_cell_of_a_seed_names_one_warm_start_and_fsa_il_one_fit(smoke_run):
    out, _, _ = smoke_run
    fits = {json.load(open(f))["config"]["row"]: json.load(open(f))["results"]["fit"] for f in glob.glob(os.path.join(out, "cells", "*__seed0.json"))}
    assert len({f["warm_start"] for f in fits.values()}) == 1 and None not in {f["warm_start"] for f in fits.values()}
    il = {f["il"]["weights"] for r, f in fits.items() if r.startswith("fsa-il")}
    assert len(il) == 1 and len(next(iter(il))) == 16


def test_floor_and_ceiling_rows_are_held_out_real_images_and_their_round_trips(smoke_run):
    """`real` = held-out real images (in neither train, test nor the FID reference), as many
    per tail class as a generator makes; `vae` = the same images through the autoencoder."""
    import numpy as np

    out, _, _ = smoke_run
    gen = {r: np.load(os.path.join(out, "work", "generated", f"{r}__seed0.npz")) for r in ("real", "vae", "t2i")}
    assert gen["real"]["images"].shape == gen["vae"]["images"].shape == gen["t2i"]["images"].shape
    assert (gen["real"]["targets"] == gen["vae"]["targets"]).all() and (gen["real"]["targets"] == gen["t2i"]["targets"]).all()
    assert (gen["real"]["labels"] == gen["vae"]["labels"]).all()
    k = gen["real"]["labels"][np.arange(len(gen["real"]["targets"])), gen["real"]["targets"]]
    assert (k == 1).all()  # each held-out image really shows the class it stands for
    diff = np.abs(gen["real"]["images"].astype(int) - gen["vae"]["images"].astype(int))
    assert 0 < diff.mean() < 20  # a round trip: close, not identical
    ref = np.load(os.path.join(out, "work", "fid_reference-seed0.npz"))  # seed 0's reference draw
    held = {im.tobytes() for im in gen["real"]["images"]}
    assert not held & {im.tobytes() for c in ref.files if c != "stamp" for im in ref[c]}
    md = open(os.path.join(out, "table1.md")).read()
    assert "| `real` |" in md and "| `vae` |" in md and "Judge validity" in md
    table = json.load(open(os.path.join(out, "table1.json")))
    assert table["rows"]["smote"]["d_tail_map"]["n"] == 1  # paired with `none` (one seed: no interval)


def test_a_cell_from_another_config_is_refused(smoke_run):
    import dataclasses

    out, _, _ = smoke_run
    changed = dataclasses.replace(PRESETS["smoke"], n_per_class=PRESETS["smoke"].n_per_class + 1)
    with pytest.raises(ConfigMismatch, match="another configuration"):
        run_table1(changed, out, progress=False)


def test_a_cell_from_other_inputs_is_refused(smoke_run, tmp_path):
    """Same preset, but the cell was computed from another prior (or renderer, or oracle): an
    upgraded ltbench or a retrained prior must not silently reuse old cells."""
    import shutil

    out, _, _ = smoke_run
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("work"))
    f = os.path.join(copy, "cells", "none__seed0.json")
    cell = json.load(open(f))
    assert cell["config"]["inputs"]["phantom_renderer"] >= 2 and cell["config"]["inputs"]["oracle"]
    assert any(k.startswith("unet") for k in cell["config"]["inputs"]["prior"])
    cell["config"]["inputs"]["prior"] = {"unet/diffusion_pytorch_model.safetensors": "0" * 16}
    json.dump(cell, open(f, "w"))
    with pytest.raises(ConfigMismatch, match="differs in: inputs"):
        run_table1(PRESETS["smoke"], copy, progress=False)


def test_invalid_cells_are_named(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        validate_cell({"schema": "ltbench.table1.cell/1", "metadata": {}, "config": {"row": "none", "seed": 0}, "results": {}}, "x.json")
    os.makedirs(tmp_path / "cells")
    (tmp_path / "cells" / "none__seed0.json").write_text("{not json")
    from ltbench.reproduce.schema import load_cells

    with pytest.raises(ValueError, match="none__seed0.json"):
        load_cells(str(tmp_path))


def test_paper_preset_refuses_naming_what_is_missing(tmp_path, capsys):
    assert main(["table1", "--preset", "paper", "--out", str(tmp_path / "p"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and "MIMIC-CXR-LT" in err and "--prior" in err and "RoentGen" in err
    (tmp_path / "roentgen").mkdir()
    assert main(["table1", "--preset", "paper", "--data", str(tmp_path), "--prior", str(tmp_path / "roentgen"), "--out", str(tmp_path / "p"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model_index.json" in err and "--data" not in err


def test_rows_parse_and_unknown_rows_fail():
    assert parse_row("fsa-il@5") == {"method": "fsa-il", "k": 5, "fusion": {}, "space": "latent", "trainer": None, "base": "fsa-il@5"}
    assert parse_row("fsa-il@5+asl") == {"method": "fsa-il", "k": 5, "fusion": {}, "space": "latent", "trainer": "asl", "base": "fsa-il@5"}
    assert parse_row("fsa-il@0-tail")["fusion"] == {"label_policy": "tail"}
    assert parse_row("fsa-il@0-randmask")["fusion"] == {"masks": "random"}
    assert parse_row("fsa-il@5-authors") == {"method": "fsa-il", "k": 5, "fusion": {"decoder": "train-batch2"}, "space": "latent", "trainer": None, "base": "fsa-il@5-authors"}
    assert parse_row("smote-pixel") == {"method": "smote", "space": "pixel", "trainer": None, "base": "smote-pixel"}
    assert parse_row("oversample")["space"] == "pixel"
    with pytest.raises(ValueError, match="unknown Table 1 row"):
        parse_row("gan")
    with pytest.raises(ValueError, match="bad fsa-il row"):
        parse_row("fsa-il@x")
    with pytest.raises(ValueError, match="bad fsa-il row"):
        parse_row("fsa-il@0-bogus")
    assert main(["table1", "--preset", "smoke", "--rows", "none,gan", "--out", "/nonexistent/x", "--quiet"]) == 2


def test_dataset_read_from_files_runs_the_same_pipeline(tmp_path):
    """The real-data path (data_root): here the phantom written to disk, read through the
    registered dataset loader, with a seeded train sample."""
    import dataclasses

    import pandas as pd

    from ltbench.data.phantom import PhantomConfig, write_phantom

    root = write_phantom(PhantomConfig(n=1000, min_test_positives=1), str(tmp_path / "ph"), progress=False)
    preset = dataclasses.replace(PRESETS["smoke"], data_root=root, train_sample=600, rows=("none", "smote", "fsa-il@0"))
    summary = run_table1(preset, str(tmp_path / "run"), progress=False)
    assert len(summary["ran"]) == 3
    cells = {c["config"]["row"]: c for c in (json.load(open(f)) for f in glob.glob(str(tmp_path / "run" / "cells" / "*.json")))}
    assert cells["none"]["results"]["train_size"]["real"] == 600
    n_test = int((pd.read_csv(os.path.join(root, "labels.csv"))["split"] == "test").sum())
    assert cells["smote"]["config"]["data_root"] == root
    assert cells["fsa-il@0"]["results"]["tail_metrics"]["oracle"]["mean"]["fid"] >= 0
    assert n_test > 0
    with pytest.raises(FileNotFoundError, match="no such folder"):
        run_table1(dataclasses.replace(preset, data_root=str(tmp_path / "missing")), str(tmp_path / "run2"), progress=False)


def _cells(out):
    cells = {}
    for f in glob.glob(os.path.join(out, "cells", "*.json")):
        c = json.load(open(f))
        r = c["results"]
        cells[os.path.basename(f)] = (r["head_map"], r["tail_map"], r["average_precision"], r["tail_metrics"] and r["tail_metrics"]["oracle"]["mean"])
    return cells


def test_cells_fan_out_under_torchrun_and_shard_with_the_same_results(tmp_path):
    """torchrun's processes claim the cells one by one; --shard i/n copies take k % n == i. Both
    compute every cell once, and each cell equals the one-process run's."""
    import shutil

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    args = ["table1", "--preset", "smoke", "--rows", "none,oversample,smote", "--seeds", "2", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun gives each process: the same arithmetic
    one, multi, sharded = (str(tmp_path / n) for n in ("one", "multi", "sharded"))
    assert subprocess.run([sys.executable, "-m", "ltbench.reproduce", *args, "--out", one], env=env, capture_output=True, timeout=600).returncode == 0
    r = subprocess.run(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "ltbench.reproduce", *args, "--out", multi], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    inv = json.load(open(os.path.join(multi, "run.json")))["invocations"]
    assert sorted(i["rank"] for i in inv) == [0, 1] and all(i["world"] == 2 for i in inv)
    ran = [set(i["cells_run"]) for i in inv]
    assert not ran[0] & ran[1] and len(ran[0] | ran[1]) == 6
    assert _cells(multi) == _cells(one)
    for i in range(2):
        r = subprocess.run([sys.executable, "-m", "ltbench.reproduce", *args, "--shard", f"{i}/2", "--out", sharded], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    inv = json.load(open(os.path.join(sharded, "run.json")))["invocations"]
    assert [len(i["cells_run"]) for i in inv] == [3, 3] and not set(inv[0]["cells_run"]) & set(inv[1]["cells_run"])
    assert _cells(sharded) == _cells(one)
    assert "| `smote` |" in open(os.path.join(sharded, "table1.md")).read()
    bad = subprocess.run([sys.executable, "-m", "ltbench.reproduce", *args, "--shard", "2/2", "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "0 <= I < N" in bad.stderr


def test_mimic_layout_runs_the_paper_code_path_and_records_time_and_memory(tmp_path):
    """The phantom written in MIMIC-CXR-LT's layout (folders, three label CSVs) is read by
    the `mimic-cxr-lt-paper` dataset preset: the paper preset's data path, with run.json
    recording per-stage seconds and peak RSS."""
    import dataclasses

    import pandas as pd

    from ltbench.data.phantom import PhantomConfig, write_phantom
    from ltbench.testing import make_tiny_sd_pipeline

    root = write_phantom(PhantomConfig(n=1000, size=32, min_test_positives=1), str(tmp_path / "mimic"), progress=False, layout="mimic-cxr-lt", upsample_to=64)
    train = pd.read_csv(os.path.join(root, "miccai2023_mimic-cxr-lt_labels_train.csv"))
    assert train["path"].str.match(r"files/p1\d/p1\d{7}/s5\d{7}/[0-9a-f-]{44}\.png").all()
    from PIL import Image

    assert Image.open(os.path.join(root, train["path"][0])).size == (64, 64)  # upsampled
    prior = make_tiny_sd_pipeline(str(tmp_path / "sd"))
    preset = dataclasses.replace(PRESETS["paper-rehearsal"], data_root=root, prior=prior, image_size=64, rows=("none", "real", "smote"), n_per_class=4, classifier=PRESETS["smoke"].classifier, fid_real_per_class=8)
    summary = run_table1(preset, str(tmp_path / "run"), progress=False)
    assert sorted(summary["ran"]) == ["none__seed0", "real__seed0", "smote__seed0"]
    cell = json.load(open(tmp_path / "run" / "cells" / "smote__seed0.json"))
    assert cell["results"]["train_size"]["real"] == len(train)
    run = json.load(open(tmp_path / "run" / "run.json"))
    assert run["split_sizes"]["train"] == len(train) and run["split_sizes"]["image_px"] == 64
    inv = run["invocations"][-1]
    for stage in ("data", "encode", "generate", "classifier"):
        assert inv["stage_peak_rss_mb"][stage] > 100, stage
    assert inv["peak_rss_mb"] == max(inv["stage_peak_rss_mb"].values())
    assert {"data_s", "encode_s", "generate_s", "classifier_s"} <= set(inv["stage_timings"])
    from ltbench.reproduce.projection import project

    with pytest.raises(ValueError, match="no cell of row"):
        project(str(tmp_path / "run"))  # t2i and fsa-il were not run: their costs are unmeasured


def _measured(**rows):
    base = {"none": (0, None, "pixel"), "real": (20, 0.0, "pixel"), "vae": (20, 0.0, "pixel"), "smote": (20, 0.0, "latent"), "t2i": (20, 6.0, "latent"), "fsa-il@0": (20, 0.0, "latent"), "fsa-il@1": (20, 2.0, "latent"), "fsa-il@5": (20, 10.0, "latent")}
    base.update(rows)
    return {"rows": {r: {"n_generated": n, "unet_evals_per_sample": e, "space": sp} for r, (n, e, sp) in base.items()}, "t2i_steps": 3}


def test_projection_scales_the_measured_work_to_the_paper_preset():
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.projection import project

    paper = PRESETS["paper"]
    p = project(m=_measured())
    cells = {(c["row"], c["seed"]): c for c in p["cells"]}
    assert len(cells) == len(paper.rows) * paper.seeds
    n = paper.n_per_class * 5
    # 6 evaluations per sample at 3 steps (guidance: 2 per step) -> 2 x 75 at the paper's steps
    assert cells[("t2i", 0)]["work"]["unet_evals"] == n * 2 * paper.t2i_steps
    pndm = {(c["row"], c["seed"]): c for c in project(m=_measured(t2i=(20, 8.0, "latent")))["cells"]}
    assert pndm[("t2i", 0)]["work"]["unet_evals"] == n * 2 * (paper.t2i_steps + 1)  # PNDM: one extra step
    assert cells[("fsa-il@5", 0)]["work"]["unet_evals"] == n * 10
    assert cells[("none", 0)]["work"]["unet_evals"] == 0 and cells[("none", 0)]["work"]["decodes"] == 0
    assert cells[("vae", 0)]["work"]["encodes"] == n
    one, eight = p["projection"]["1xH100"], p["projection"]["8xH100"]
    assert one["shared_hours"] == eight["shared_hours"]
    longest = max(c["seconds"] for c in p["cells"]) / 3600
    assert longest - 0.01 <= eight["cells_hours"] < one["cells_hours"]
    assert abs(one["cells_hours"] - sum(c["seconds"] for c in p["cells"]) / 3600) < 0.01
    faster = project(m=_measured(), assume={"unet_evals_per_s": 200.0})  # twice the UNet throughput
    gen = lambda q: sum(c["generate_s"] for c in q["cells"] if c["row"] == "t2i")  # noqa: E731
    dec = sum(c["work"]["decodes"] for c in p["cells"] if c["row"] == "t2i") / 40.0
    assert abs((gen(faster) - dec) * 2 - (gen(p) - dec)) < 1e-6


def test_roentgen_shaped_pipeline_has_the_paper_shapes(tmp_path):
    from ltbench.prior.pipeline import load_prior
    from ltbench.reproduce.rehearsal import make_roentgen_shaped_pipeline

    prior = load_prior(make_roentgen_shaped_pipeline(str(tmp_path / "sd")))
    assert tuple(prior.latent_shape) == (4, 64, 64)
    unet = prior.pipe.unet.config
    assert list(unet.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"] and unet.sample_size == 64
    assert prior.pipe.vae.config.sample_size == 512 and len(prior.pipe.vae.config.block_out_channels) == 4
    assert type(prior.pipe.scheduler).__name__ == "PNDMScheduler"


def test_localisation_metric_on_a_hand_built_case():
    from ltbench.eval.localisation import grid_fraction, localisation

    px = np.zeros((2, 8, 8), bool)
    px[0, 0:2, 0:2] = True  # cell (0, 0) fully
    px[0, 0:2, 2:3] = True  # half of cell (0, 1)
    px[0, 6:8, 7:8] = True  # half of cell (3, 3)
    frac = grid_fraction(px, (4, 4))
    assert frac[0, 0, 0] == 1.0 and frac[0, 0, 1] == 0.5 and frac[0, 3, 3] == 0.5 and frac[0].sum() == 2.0
    ms = np.zeros((2, 4, 4), bool)
    ms[:, 0:2, 0:2] = True  # M^S: a quarter of the grid
    loc = localisation(ms, frac)
    assert loc["finding_in_ms"][0] == 0.75  # 1.5 of the finding's 2 cells lie inside M^S
    assert loc["ms_on_finding"][0] == 0.375  # 1.5 of M^S's 4 cells lie on the finding
    assert loc["random_finding_in_ms"][0] == 0.25 and loc["random_ms_on_finding"][0] == 0.125
    assert np.isnan(loc["finding_in_ms"][1]) and loc["ms_on_finding"][1] == 0.0  # no finding drawn
    with pytest.raises(ValueError, match="multiple of the grid"):
        grid_fraction(px, (3, 3))


def test_diagnostics_measure_localisation_on_a_run(smoke_run, tmp_path):
    from ltbench.data.classes import TAIL_CLASSES
    from ltbench.reproduce.diagnostics import run_diagnostics

    out, _, _ = smoke_run
    res = run_diagnostics(out, str(tmp_path / "diag"), progress=False)
    assert set(res["per_class"]) == set(TAIL_CLASSES)
    for c, v in res["per_class"].items():
        assert v["images"] >= 1, c
        for k in ("finding_in_ms", "ms_on_finding", "random_finding_in_ms", "random_ms_on_finding"):
            assert np.isnan(v[k]) or 0.0 <= v[k] <= 1.0, (c, k)
        d = v["finding_in_ms_minus_random"]
        assert d["lo"] is None or d["lo"] <= d["mean"] <= d["hi"]
    for f in ("localisation.json", "localisation.md", "localisation.png"):
        assert os.path.getsize(tmp_path / "diag" / f) > 0
    # every CAM choice measured on the same fit; the run's own choice among them, equal to the main table
    choices = {(e["cam"], e["layers"]): e for e in res["cam_choices"]}
    assert set(choices) == {(m, l) for m in ("eigencam", "gradcam", "gradcam++") for l in ("last", "multi")}
    own = choices[tuple(res["cam"])]
    for c, v in res["per_class"].items():
        assert own["per_class"][c]["ms_on_finding"]["mean"] == pytest.approx(v["ms_on_finding_minus_random"]["mean"], abs=2e-3)  # cams.npy holds float16


def test_fsa_il_cells_record_how_their_masks_localise(smoke_run):
    from ltbench.data.classes import TAIL_CLASSES

    out, _, _ = smoke_run
    for path in glob.glob(os.path.join(out, "cells", "*.json")):
        cell = json.load(open(path))
        loc = cell["results"].get("localisation")
        row = cell["config"]["row"]
        if row.startswith("fsa-il") and not row.endswith("-randmask"):
            assert set(loc) == set(TAIL_CLASSES)
            for v in loc.values():
                assert 1 <= v["examples"] <= 6 and 0.0 <= v["random_finding_in_ms"] <= 1.0
        else:
            assert loc is None  # no CAM masks (the random-mask control, the baselines)


def test_refine_sweep_refines_one_set_of_fusions(smoke_run, tmp_path):
    from ltbench.reproduce.__main__ import main
    from ltbench.reproduce.refine_sweep import VARIANTS

    out, _, _ = smoke_run
    assert main(["refine-sweep", "--run", out, "--to", str(tmp_path / "sw"), "--ks", "0,1,2", "--boot", "100", "--quiet"]) == 0
    res = json.load(open(tmp_path / "sw" / "refine-sweep.json"))
    pts = {(p["decoder"], p["mode"], p["k"], p["variant"]): p for p in res["points"]}
    swept = {(d, m, k, None) for d in ("eval", "train-batch2") for m, k in (("-", 0), ("tail", 1), ("tail", 2), ("sdedit", 1), ("sdedit", 2))}
    # every variant but the run's own choice, on the eval decoder; the prompt at the largest k <= 5
    fusion = res["fusion"]
    variants = {("eval", "tail" if n == "refine_prompt" else "-", 2 if n == "refine_prompt" else 0, f"{n}={v}") for n, v in VARIANTS if fusion[n] != v}
    assert len(variants) >= 4 and set(pts) == swept | variants
    for d in ("eval", "train-batch2"):
        assert pts[(d, "-", 0, None)]["latent_change"] == 0.0  # @0 is the fusion itself
        assert pts[(d, "tail", 1, None)]["latent_change"] > 0.0 and pts[(d, "sdedit", 2, None)]["unet_evals_per_sample"] == 4
    # the train-mode decoder makes other fusions from the same draws
    assert pts[("eval", "-", 0, None)]["metrics"]["mean"]["fid"] != pts[("train-batch2", "-", 0, None)]["metrics"]["mean"]["fid"]
    # paired intervals: the bootstrap's estimates are the sweep's own FID and label fidelity differences
    for key, pt in pts.items():
        if key == ("train-batch2", "-", 0, None):
            base = pts[("eval", "-", 0, None)]  # the authors' decoder against ours
        elif key[3] is None:
            base = pts[(key[0], "-", 0, None)]  # @k against @0 of the same decoder
        else:
            base = pts[("eval", key[1], key[2], None)]  # a variant against the run's config
        if key == ("eval", "-", 0, None):
            assert pt["paired"] is None
            continue
        d = pt["paired"]
        assert d["fid"]["estimate"] == pytest.approx(pt["metrics"]["mean"]["fid"] - base["metrics"]["mean"]["fid"], rel=1e-5, abs=1e-6)
        assert d["label_fidelity"]["estimate"] == pytest.approx(pt["label_fidelity"]["mean_tail"] - base["label_fidelity"]["mean_tail"], abs=1e-9)
        for m in ("fid", "label_fidelity"):
            assert d[m]["low"] <= d[m]["high"]
    assert set(res["authors_gap"]) == {f"gap/{m}/{k}" for m in ("tail", "sdedit") for k in (1, 2)}
    assert res["intervals"]["n_boot"] == 100
    for f in ("refine-sweep.json", "refine-sweep.md", "refine-sweep.png"):
        assert os.path.getsize(tmp_path / "sw" / f) > 0
    md = open(tmp_path / "sw" / "refine-sweep.md").read()
    assert "ΔFID" in md and "partner_rule=class-confusion" in md
    assert main(["refine-sweep", "--run", out, "--to", str(tmp_path / "sw"), "--ks", "1,x"]) == 2
    assert main(["refine-sweep", "--run", out, "--to", str(tmp_path / "sw"), "--ks", "0,1", "--boot", "10"]) == 2
    assert main(["refine-sweep", "--run", out, "--to", str(tmp_path / "sw"), "--ks", "1,2"]) == 2  # no @0


def test_a_committed_cell_reproduces_exactly_where_it_was_made(smoke_run, tmp_path):
    """The reproducibility experiment on the smoke run: recomputed from scratch in the
    environment the run was made in (same instruction set and thread count), a fit-free row and
    an fsa-il row (its iterated learning trained again) come out identical metric by metric,
    and the report says where each variant ran."""
    from ltbench.reproduce.reproducibility import run_reproducibility

    out, _, _ = smoke_run
    run = str(tmp_path / "run")
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("work"))
    threads = os.environ.get("OMP_NUM_THREADS", "2")  # as the fixture ran it
    res = run_reproducibility(run, rows=("none", "fsa-il@0"), variants={"same": {"OMP_NUM_THREADS": threads}}, progress=False)
    diffs = res["variants"]["same"]["max_abs_diff"]
    assert {"head_map", "tail_map", "fid", "kid", "label_fidelity"} <= set(diffs["fsa-il@0"])
    for row, d in diffs.items():
        assert {"head_map", "tail_map"} <= set(d) and all(v == 0 for v in d.values()), (row, {k: v for k, v in d.items() if v})
    md = open(os.path.join(run, "reproducibility.md")).read()
    assert f"{threads} torch threads" in md and res["variants"]["same"]["device"] in md and "`fsa-il@0`" in md  # the machine, not only the thread count
    with open(os.path.join(run, "reproducibility.json")) as f:
        assert json.load(f)["tolerance"]["fsa-il@0"]["tail_map"] == 0
