"""Bad input and faults: each probe here once went wrong (a silent result, a traceback, or a
late failure) and must stay fixed. The README's "Reliability" table lists what is covered."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from ltbench.reproduce.__main__ import main


def test_empty_row_list_is_an_error_not_an_empty_table(tmp_path, capsys):
    assert main(["table1", "--preset", "smoke", "--rows", ",", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "names no row" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_impossible_refinement_fails_before_any_stage(tmp_path, capsys):
    """`fsa-il@99` used to fail after data, latents and the IL fit."""
    assert main(["table1", "--preset", "smoke", "--rows", "none,fsa-il@99", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "fsa-il@99" in capsys.readouterr().err
    assert not (tmp_path / "o" / "work").exists()


def test_a_stray_malformed_cell_fails_before_any_stage(tmp_path, capsys):
    out = tmp_path / "o"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "gan__seed7.json").write_text('{"schema": "ltbench.table1.cell/2", "cost": null}')
    assert main(["table1", "--preset", "smoke", "--rows", "none", "--out", str(out), "--quiet"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "gan__seed7.json" in errors[0]  # one line naming the file
    assert not (out / "work").exists()


def test_out_that_is_a_file_is_named(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["table1", "--preset", "smoke", "--rows", "none", "--out", str(f), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_results_honour_the_umask(tmp_path):
    """Atomic writes used to leave every file 0600 (mkstemp), unreadable by a shared group."""
    from ltbench.utils.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(str(tmp_path / "a.json"), {"x": 1})
        os.umask(0o002)
        atomic_write_json(str(tmp_path / "b.json"), {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "b.json").st_mode) == 0o664
    assert json.load(open(tmp_path / "a.json")) == {"x": 1}


def test_shard_writer_abort_after_a_failed_close_keeps_the_real_error(tmp_path, monkeypatch):
    """close() and abort() both deleted the memmap, so an AttributeError hid the real error."""
    from ltbench.data import store

    w = store.ShardWriter(str(tmp_path), 0, 4, (2, 2, 2), "float32")
    w.write(np.arange(4), np.ones((4, 2, 2, 2), np.float32))

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.np, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        try:
            w.close()
        except OSError:
            w.abort()  # what the encoder does on failure: must not raise AttributeError
            raise
    assert not os.path.exists(store.shard_paths(str(tmp_path), 0)[0])  # nothing half-written in place


def test_cli_rows_error_is_one_line_at_the_process_level(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ltbench.reproduce", "table1", "--preset", "smoke", "--rows", " , ", "--out", str(tmp_path / "o"), "--quiet"], capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 2 and len(errors) == 1 and "names no row" in errors[0], r.stderr


@pytest.mark.parametrize("ext", ["pgm", "tif"])
def test_16_bit_images_opened_as_mode_I_are_scaled_by_bit_depth(tmp_path, ext):
    """A dark 16-bit radiograph (max 199 of 65535) was divided by 255 because its values looked
    8-bit: 257x too bright, and inconsistent with brighter images of the same dataset."""
    from PIL import Image

    from ltbench.data.images import read_image

    a = (np.arange(64 * 64).reshape(64, 64) % 200).astype(np.int32)
    path = str(tmp_path / f"x.{ext}")
    Image.fromarray(a, mode="I").save(path)
    assert Image.open(path).mode == "I"
    x = read_image(path)
    assert x.max() == pytest.approx(199 / 65535) and x.dtype == np.float32
    bright = (a * 300).astype(np.int32)
    Image.fromarray(bright, mode="I").save(path)
    assert read_image(path).max() == pytest.approx(199 * 300 / 65535)  # same scale whatever the values


@pytest.mark.parametrize("kw", [{"steps": -1}, {"steps": 0}, {"steps": 1001}, {"guidance": float("nan")}, {"guidance": -2.0}, {"guidance": 0.5}])
def test_generation_refuses_what_would_run_silently_wrong(kw):
    from ltbench.prior.pipeline import load_prior

    prior = load_prior("phantom")
    args = {"steps": 2, "guidance": 4.0, **kw}
    with pytest.raises(ValueError, match="steps must be|guidance must be"):
        prior.text_to_image(["Edema"], **args)
    with pytest.raises(ValueError, match="steps must be|guidance must be"):
        prior.refine(torch.zeros(1, *prior.latent_shape), ["Edema"], k=1, **args)


def test_cli_generate_bad_steps_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ltbench", "generate", "--prompt", "Edema", "--n", "1", "--steps", "-1", "--out", str(tmp_path / "g"), "--quiet"], capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 2 and len(errors) == 1 and "steps must be" in errors[0], r.stderr
    assert not (tmp_path / "g").exists()


def _cli(*args, module="ltbench"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600)


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_temporary_files_of_a_killed_writer_are_cleaned_but_never_a_live_ones(tmp_path):
    """kill -9 leaves `.tmp-*` behind; the next run removes those whose process is gone, and
    never the file a live writer (another run sharing the folder) is still writing."""
    import socket

    from ltbench.utils.io import atomic_path, clean_stale_tmp

    host = socket.gethostname().replace("-", "_")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=600).stdout.strip()
    (tmp_path / "cells").mkdir()
    stale = tmp_path / "cells" / f".tmp-{host}-{dead}-abc.json"
    stale.write_text("half a cell")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        alive = tmp_path / f".tmp-{host}-{live.pid}-def.npy"
        alive.write_text("being written")
        with atomic_path(str(tmp_path / "mine.json")) as mine:
            assert os.path.basename(mine).startswith(f".tmp-{host}-{os.getpid()}-")
            removed = clean_stale_tmp(str(tmp_path))
            assert os.path.exists(mine)  # this process's own temporary file
        assert removed == [str(stale)] and alive.exists() and not stale.exists()
    finally:
        live.kill()


def test_two_runs_into_one_out_split_the_cells(tmp_path):
    """Both used to compute every cell; a per-cell lock makes them share the work, and the
    table holds every cell once."""
    out = str(tmp_path / "o")
    cmd = [sys.executable, "-m", "ltbench.reproduce", "table1", "--preset", "smoke", "--rows", "none,oversample,smote", "--seeds", "2", "--out", out, "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ran = [json.loads(o[0][: o[0].index("\n}") + 2])["ran"] for o in outs]
    assert not set(ran[0]) & set(ran[1])  # no cell computed twice
    assert sorted(ran[0] + ran[1]) == sorted(f"{r}__seed{s}" for r in ("none", "oversample", "smote") for s in range(2))
    assert not [f for f in os.listdir(os.path.join(out, "cells")) if f.endswith(".lock")]
    assert len(json.load(open(os.path.join(out, "run.json")))["invocations"]) == 2


def test_a_stale_cell_lock_of_a_killed_run_is_taken_over(tmp_path):
    import socket

    from ltbench.utils.lock import FileLock

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=600).stdout)
    path = tmp_path / "c.json.lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead}))
    lock = FileLock(str(path))
    assert lock.try_acquire() and json.loads(path.read_text())["pid"] == os.getpid()
    other = FileLock(str(path))
    assert not other.try_acquire()  # held by a live process (this one)
    lock.release()
    assert not path.exists()
    path.write_text(json.dumps({"host": "another-node", "pid": dead}))
    assert not FileLock(str(path)).try_acquire()  # another machine's lock is never stolen


def test_extreme_aspect_ratio_images_are_read_in_bounded_memory(tmp_path):
    """A 1 x 100000 PNG peaked at 2.1 GB (the short side was resized before cropping)."""
    from PIL import Image

    path = tmp_path / "strip.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1, 100_000), dtype=np.uint8)).save(path)
    code = (
        "import resource, sys\n"
        "from ltbench.data.images import read_image, to_model_input\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = to_model_input(read_image(sys.argv[1]), 64, 3)\n"
        "assert t.shape == (3, 64, 64)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, timeout=600)
    assert float(r.stdout) < 50, f"peak RSS grew {r.stdout.strip()} MB"
    from ltbench.data.images import to_model_input

    sq = np.random.default_rng(1).random((48, 40), dtype=np.float32)  # ordinary aspect: resize, then crop, as before
    assert to_model_input(sq, 32, 1).shape == (1, 32, 32)


def test_train_il_on_an_unknown_or_empty_split_is_one_line(tmp_path):
    data, store = str(tmp_path / "d"), str(tmp_path / "s")
    assert _cli("data", "phantom", "--n", "120", "--size", "64", "--out", data, "--quiet").returncode == 0
    assert _cli("encode", "--data", data, "--prior", "phantom", "--out", store, "--quiet").returncode == 0
    _one_line_error(_cli("train-il", "--latents", store, "--split", "nosuch", "--out", str(tmp_path / "il"), "--quiet"), "no split 'nosuch'")
    m = json.load(open(os.path.join(store, "manifest.json")))
    json.dump({**m, "latent_shape": None}, open(os.path.join(store, "manifest.json"), "w"))
    _one_line_error(_cli("train-il", "--latents", store, "--out", str(tmp_path / "il"), "--quiet"), "manifest.json is corrupt: latent_shape = None")


def test_phantom_out_that_is_a_file_is_one_line_and_kept(tmp_path):
    f = tmp_path / "FILE"
    f.write_text("precious")
    _one_line_error(_cli("data", "phantom", "--n", "10", "--out", str(f), "--overwrite"), "is a file")
    assert f.read_text() == "precious"


def test_malformed_run_json_and_model_index_name_the_file(tmp_path):
    out = tmp_path / "o"
    (out / "cells").mkdir(parents=True)
    (out / "run.json").write_text("[1, 2")
    r = _cli("table1", "--preset", "smoke", "--rows", "none", "--out", str(out), "--quiet", module="ltbench.reproduce")
    _one_line_error(r, "run.json")
    import shutil

    from ltbench.prior.vae import resolve_prior

    prior = tmp_path / "prior"
    shutil.copytree(resolve_prior("phantom"), prior)
    (prior / "model_index.json").write_text("{bad")
    _one_line_error(_cli("generate", "--prior", str(prior), "--prompt", "Fracture", "--n", "1", "--out", str(tmp_path / "g")), "model_index.json is malformed")


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "FILE"
    blocker.write_text("x")  # a path through a file cannot be created, even by root
    _one_line_error(_cli("table1", "--preset", "smoke", "--rows", "none", "--out", str(blocker / "o"), "--quiet", module="ltbench.reproduce"), str(blocker))
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            _one_line_error(_cli("table1", "--preset", "smoke", "--rows", "none", "--out", str(ro / "o"), "--quiet", module="ltbench.reproduce"), str(ro))
        finally:
            ro.chmod(stat.S_IRWXU)


def test_a_diverged_iterated_learning_fit_stops_with_the_step_named(tmp_path):
    """NaN latents make every loss NaN: the fit must stop, not log plausible numbers."""
    from torch.utils.data import TensorDataset

    from ltbench.method.il import ILConfig, ILDivergedError, train_il

    z = torch.randn(64, 4, 16, 16)
    z[3] = float("nan")
    y = torch.zeros(64, 10)
    y[:, 0] = 1
    ds = TensorDataset(z, y, torch.arange(64))
    with pytest.raises(ILDivergedError, match="interaction loss is nan in generation 0"):
        train_il(ds, None, ILConfig(generations=1, ngf=8, max_depth=2, batch_size=64), str(tmp_path / "il"), progress=False)


def test_empty_inputs_are_refused_not_written(tmp_path):
    """A header-only labels CSV used to give a 0-row latent store; `--n 0` an empty phantom."""
    import pandas as pd

    _one_line_error(_cli("data", "phantom", "--n", "0", "--out", str(tmp_path / "p")), "n must be >= 1")
    assert not (tmp_path / "p").exists()
    data = str(tmp_path / "d")
    assert _cli("data", "phantom", "--n", "20", "--size", "64", "--out", data, "--quiet").returncode == 0
    pd.read_csv(os.path.join(data, "labels.csv")).head(0).to_csv(tmp_path / "header.csv", index=False)
    _one_line_error(_cli("encode", "--data", data, "--csv", str(tmp_path / "header.csv"), "--prior", "phantom", "--out", str(tmp_path / "s"), "--quiet"), "header.csv has a header but no rows")
