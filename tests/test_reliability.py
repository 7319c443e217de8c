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
    _one_line_error(_cli("data", "phantom", "--n", "10", "--min-test-positives", "0", "--out", str(f), "--overwrite"), "is a file")
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

    _one_line_error(_cli("data", "phantom", "--n", "0", "--out", str(tmp_path / "p")), "--n must be in [1, 10000000], got 0")
    assert not (tmp_path / "p").exists()
    data = str(tmp_path / "d")
    assert _cli("data", "phantom", "--n", "20", "--size", "64", "--min-test-positives", "0", "--out", data, "--quiet").returncode == 0
    pd.read_csv(os.path.join(data, "labels.csv")).head(0).to_csv(tmp_path / "header.csv", index=False)
    _one_line_error(_cli("encode", "--data", data, "--csv", str(tmp_path / "header.csv"), "--prior", "phantom", "--out", str(tmp_path / "s"), "--quiet"), "header.csv has a header but no rows")


# ---- third round (issue 25) -------------------------------------------------------------------
class _Marker:
    """A crafted pickle: unpickling it creates the file ``path`` (stands for any code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _craft(path, marker, legacy=False):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    torch.save({"weights": _Marker(marker)}, str(path), _use_new_zipfile_serialization=not legacy)
    assert not os.path.exists(marker)
    return str(path)


def _main_one_line(capsys, argv, *needles):
    """``ltbench`` in this process (fast): exit 2 and one error line naming ``needles``."""
    from ltbench.cli import main as cli_main

    capsys.readouterr()
    rc = cli_main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size), dtype=np.uint8)


def test_a_crafted_inception_file_in_the_torch_cache_runs_no_code(tmp_path, monkeypatch):
    """torch-fidelity 0.4 unpickled $TORCH_HOME/hub/checkpoints/weights-inception-*.pth with
    weights_only=False: any run with FID ran the file's code."""
    from ltbench.eval.fid import INCEPTION_EXTRACTOR, INCEPTION_FILE, check_weights, distribution_metrics, fid, inception_weights

    marker = tmp_path / "MARKER"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = _craft(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE, marker)
    assert inception_weights() == cached  # found in the cache, no flag needed
    for call in (lambda: fid(_images(), _images(seed=1), INCEPTION_EXTRACTOR, inception_weights()), lambda: distribution_metrics(_images(8), _images(8, seed=1), INCEPTION_EXTRACTOR, inception_weights(cached)), lambda: check_weights(INCEPTION_EXTRACTOR, cached)):
        with pytest.raises(ValueError, match="weights-inception-2015-12-05-6726825d.pth was refused") as e:
            call()
        assert "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.slow
def test_inception_from_a_checked_file_is_torch_fidelitys_network(tmp_path, monkeypatch):
    """The safe path still computes torch-fidelity's Inception features (random weights here:
    the real file is never downloaded)."""
    import io

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from ltbench.eval.fid import INCEPTION_EXTRACTOR, features

    with monkeypatch.context() as m:  # build the architecture once without weights, to save some
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        buf = io.BytesIO()
        torch.save({}, buf)
        buf.seek(0)
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=buf)
    path = str(tmp_path / "inception.pth")
    torch.save(net.state_dict(), path)
    x = _images(2, 32)
    got = features(x, INCEPTION_EXTRACTOR, path)
    want = net(torch.from_numpy(x)[:, None].expand(-1, 3, -1, -1).contiguous())[0].double()
    assert got.shape == (2, 2048) and torch.allclose(got, want, atol=1e-4)


def test_a_crafted_xrv_file_runs_no_code_and_a_real_one_loads(tmp_path):
    """torchxrayvision unpickles its DenseNet file with weights_only=False."""
    from ltbench.data.xrv import import_torchxrayvision
    from ltbench.eval.fid import XRV_EXTRACTOR, check_weights, fid, load_xrv_densenet

    xrv = import_torchxrayvision()
    marker = tmp_path / "MARKER"
    name = os.path.basename(xrv.models.model_urls["densenet121-res224-all"]["weights_url"])
    for legacy in (False, True):
        crafted = _craft(tmp_path / f"cache{legacy}" / name, marker, legacy=legacy)
        with pytest.raises(ValueError, match="was refused"):
            fid(_images(), _images(seed=1), XRV_EXTRACTOR, crafted)
        with pytest.raises(ValueError, match=name):
            check_weights(XRV_EXTRACTOR, crafted)
    assert not marker.exists()
    torch.manual_seed(0)
    net = xrv.models.DenseNet(num_classes=18)
    for legacy in (False, True):  # a whole pickled model, in both torch formats, loads as tensors
        path = str(tmp_path / f"real{legacy}.pt")
        torch.save(net, path, _use_new_zipfile_serialization=not legacy)
        got = load_xrv_densenet(path).state_dict()
        assert all(torch.equal(got[k], v) for k, v in net.state_dict().items())


def test_crafted_or_empty_checkpoints_are_one_line_and_run_no_code(tmp_path, capsys):
    """prior train resuming from a crafted or zero-byte checkpoint.pt, an --oracle file, an
    --il model.pt that is a plain tensor or has an unknown config field: tracebacks before."""
    from ltbench.eval.oracle import load_oracle
    from ltbench.method.il import load_il

    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _craft(work / "checkpoint.pt", marker)
    args = ["prior", "train", "--work-dir", str(work), "--out", str(tmp_path / "p"), "--n-images", "24", "--quiet"]
    _main_one_line(capsys, args, "checkpoint.pt was refused")
    (work / "checkpoint.pt").write_bytes(b"")
    _main_one_line(capsys, args, "checkpoint.pt is empty")
    torch.save(torch.zeros(3), work / "checkpoint.pt")
    _main_one_line(capsys, args, "checkpoint.pt is not an ltbench prior-training checkpoint")
    with pytest.raises(ValueError, match="oracle.pt was refused"):
        load_oracle(_craft(tmp_path / "o" / "oracle.pt", marker))
    torch.save(torch.zeros(3), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="model.pt is not an ltbench IL checkpoint"):
        load_il(str(tmp_path / "model.pt"))
    torch.save({"config": {"generations": 1, "nosuch": 3}, "model": {}, "latent_shape": (4, 8, 8), "n_classes": 3}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['nosuch'\]"):
        load_il(str(tmp_path / "model.pt"))
    assert not marker.exists()


def test_a_crafted_bin_in_a_diffusers_folder_is_one_line(tmp_path, capsys):
    import shutil

    from ltbench.prior.vae import resolve_prior

    prior = tmp_path / "prior"
    shutil.copytree(resolve_prior("phantom"), prior)
    os.remove(prior / "text_encoder" / "model.safetensors")
    marker = tmp_path / "MARKER"
    _craft(prior / "text_encoder" / "pytorch_model.bin", marker)
    _main_one_line(capsys, ["generate", "--prior", str(prior), "--prompt", "Edema", "--n", "1", "--steps", "2", "--out", str(tmp_path / "g"), "--quiet"], "pytorch_model.bin was refused")
    assert not marker.exists() and not (tmp_path / "g").exists()


def test_overwrite_never_deletes_what_ltbench_did_not_write(tmp_path, capsys):
    """--overwrite used to rmtree --out whatever it held (a thesis.tex, a keep.txt)."""
    from ltbench.data.phantom import PhantomConfig, write_phantom
    from ltbench.data.writer import write_image_folder
    from ltbench.prior.encode import EncodeConfig, encode_dataset
    from ltbench.data.presets import open_dataset
    from ltbench.data.csv_dataset import ImageConfig

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("four years")
    _main_one_line(capsys, ["data", "phantom", "--n", "30", "--size", "16", "--min-test-positives", "0", "--out", str(mine), "--overwrite", "--quiet"], "--overwrite refuses to replace", str(mine))
    assert (mine / "thesis.tex").read_text() == "four years" and not (tmp_path / "mine.partial").exists()
    with pytest.raises(FileExistsError, match="refuses to replace"):
        write_image_folder(str(mine), np.zeros((2, 8, 8)), np.zeros((2, 1), np.uint8), ["A"], overwrite=True)
    data = write_phantom(PhantomConfig(n=30, size=16, min_test_positives=0), str(tmp_path / "d"), progress=False)
    ds = open_dataset("phantom", data, image=ImageConfig(size=16, channels=3))
    with pytest.raises(FileExistsError, match="refuses to replace"):
        encode_dataset(ds, os.path.join(data, "labels.csv"), "phantom", str(mine), EncodeConfig(), overwrite=True, progress=False)
    assert os.listdir(mine) == ["thesis.tex"]
    # what ltbench wrote is replaced, and only once the new output is whole
    out = write_image_folder(str(tmp_path / "g"), np.zeros((2, 8, 8)), np.zeros((2, 1), np.uint8), ["A"])
    write_image_folder(out, np.ones((3, 8, 8)), np.ones((3, 1), np.uint8), ["A"], overwrite=True)
    assert len(os.listdir(os.path.join(out, "images"))) == 3
    ph = write_phantom(PhantomConfig(n=30, size=16, seed=1, min_test_positives=0), str(tmp_path / "d"), progress=False, overwrite=True)
    assert json.load(open(os.path.join(ph, "phantom.json")))["config"]["seed"] == 1
    assert sorted(os.listdir(tmp_path)) == ["d", "g", "mine"]  # no .partial, no old copy left


def test_a_failed_replacement_keeps_the_old_output(tmp_path, monkeypatch):
    import errno

    from PIL import Image

    from ltbench.data.writer import write_image_folder

    out = write_image_folder(str(tmp_path / "g"), np.zeros((2, 8, 8)), np.zeros((2, 1), np.uint8), ["A"])
    real_save = Image.Image.save

    def full_disk_on_the_third(self, fp, *a, **k):
        if str(fp).endswith("000002.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", full_disk_on_the_third)
    with pytest.raises(OSError, match="No space left on device") as e:
        write_image_folder(out, np.ones((4, 8, 8)), np.ones((4, 1), np.uint8), ["A"], overwrite=True)
    assert e.value.filename.endswith("000002.png")  # the one line names the file
    assert len(os.listdir(os.path.join(out, "images"))) == 2  # the old output, whole
    assert sorted(os.listdir(tmp_path)) == ["g"]  # and no half-written .partial


def test_a_full_disk_is_an_error_naming_the_file_not_a_sigbus(tmp_path, monkeypatch):
    """Shard and CAM memmaps were sparse files: on a full disk the first write to a page killed
    the process (SIGBUS, exit 135) and left a .tmp-*.npy. Simulated ENOSPC here."""
    import errno

    from torch.utils.data import TensorDataset

    from ltbench.data import store
    from ltbench.method.cam import compute_cams
    from ltbench.method.il import ILConfig, ILModel

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left") as e:
        store.ShardWriter(str(tmp_path), 0, 64, (4, 16, 16), "float32")
    assert e.value.filename == store.shard_paths(str(tmp_path), 0)[0]
    model = ILModel((4, 8, 8), 3, ILConfig(ngf=8, max_depth=2, sparse_channels=4))
    ds = TensorDataset(torch.randn(4, 4, 8, 8), torch.ones(4, 3), torch.arange(4))
    with pytest.raises(OSError, match="No space left") as e:
        compute_cams(model, ds, str(tmp_path / "cams"), progress=False, method="eigencam", layers="last")
    assert e.value.filename.endswith("cams.npy")
    left = [f for _, _, fs in os.walk(tmp_path) for f in fs]
    assert left == [], left


@pytest.fixture
def tiny_fs(tmp_path):
    """A 256 KiB tmpfs (needs mount rights; skipped where the test may not make one)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)


def test_a_real_full_disk_is_an_error_naming_the_file(tiny_fs):
    """On a real small filesystem, in a child process (a SIGBUS would end it, not the tests)."""
    code = (
        "import sys\n"
        "from ltbench.data.store import ShardWriter\n"
        "try:\n"
        "    w = ShardWriter(sys.argv[1], 0, 1024, (8, 16, 16), 'float32')\n"  # 4 MiB > 256 KiB
        "    w.write(range(1024), 1.0)\n"
        "except OSError as exc:\n"
        "    print(exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tiny_fs / "store")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert "No space left on device" in r.stdout and "latents-00000.npy" in r.stdout, r.stdout
    assert os.listdir(tiny_fs / "store" / "shards") == []  # the temporary file is gone


@pytest.mark.slow
def test_encode_on_a_full_disk_is_one_line(tiny_fs, tmp_path):
    data = str(tmp_path / "d")
    assert _cli("data", "phantom", "--n", "120", "--size", "64", "--min-test-positives", "0", "--out", data, "--quiet").returncode == 0
    _one_line_error(_cli("encode", "--data", data, "--prior", "phantom", "--out", str(tiny_fs / "s"), "--quiet"), "No space left on device", "latents-00000.npy")
    assert not [f for f in os.listdir(tiny_fs / "s" / "shards") if f.startswith(".tmp-")]


def test_csv_paths_stay_inside_the_root(tmp_path):
    """`../x.png` and absolute paths were read silently (os.path.join drops the root)."""
    import pandas as pd

    from ltbench.data.csv_dataset import CsvImageDataset
    from PIL import Image

    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "img" / "a.png")
    for bad in ("../secret.png", str(outside), "img/../../secret.png"):
        pd.DataFrame({"path": ["img/a.png", bad], "A": [1, 0]}).to_csv(tmp_path / "l.csv", index=False)
        with pytest.raises(ValueError, match=r"row 1 \(line 3\).*leaves the image root"):
            CsvImageDataset(str(tmp_path / "l.csv"), str(root), ["A"])
    os.symlink(tmp_path, root / "linked")  # a link inside the root is the root's own: followed
    pd.DataFrame({"path": ["img/a.png", "linked/secret.png"], "A": [1, 0]}).to_csv(tmp_path / "l.csv", index=False)
    ds = CsvImageDataset(str(tmp_path / "l.csv"), str(root), ["A"])
    assert ds[1][0].shape == (1, 64, 64)


def test_a_duplicated_class_column_is_an_error(tmp_path):
    """pandas renames the second copy 'A.1' and the first was used without a word."""
    from ltbench.data.csv_dataset import read_labels

    (tmp_path / "l.csv").write_text("path,A,B,A\nx.png,1,0,0\n")
    with pytest.raises(ValueError, match=r"\['A'\] appear more than once"):
        read_labels(str(tmp_path / "l.csv"), ["A", "B"])


def test_a_decompression_bomb_is_an_unreadable_image(tmp_path, monkeypatch):
    """PIL's DecompressionBombError escaped as a raw traceback, also with --on-error skip."""
    import pandas as pd
    from PIL import Image

    from ltbench.data.csv_dataset import CsvImageDataset, ImageConfig
    from ltbench.data.images import ImageReadError, read_image

    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100 x 100 > 2 x the limit, like 14000 x 14000 is by default
    with pytest.raises(ImageReadError, match="bomb.png.*decompression bomb"):
        read_image(str(tmp_path / "bomb.png"))
    pd.DataFrame({"path": ["bomb.png"], "A": [1]}).to_csv(tmp_path / "l.csv", index=False)
    ds = CsvImageDataset(str(tmp_path / "l.csv"), str(tmp_path), ["A"], image=ImageConfig(on_error="skip"))
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        assert ds[0] is None
    assert ds.skipped == [str(tmp_path / "bomb.png")]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["data", "phantom", "--noise", "nan"], "--noise must be finite"),
        (["data", "phantom", "--strength-scale", "nan"], "--strength-scale must be finite"),
        (["data", "phantom", "--anatomy-jitter", "inf"], "--anatomy-jitter must be finite"),
        (["data", "phantom", "--train-frac", "nan"], "--train-frac must be finite"),
        (["data", "phantom", "--n", "50", "--min-test-positives", "1000"], "--min-test-positives 1000 cannot be met"),
        (["data", "phantom", "--n", "50", "--batch-size", "0"], "--batch-size must be in [1, "),
        (["augment", "--latents", "x", "--il", "x", "--tau-h", "nan"], "--tau-h must be finite and in [0, 1]"),
        (["augment", "--latents", "x", "--il", "x", "--p", "1.5"], "--p must be finite and in [0, 1], got 1.5"),
        (["prior", "train", "--ema-decay", "2"], "--ema-decay must be finite and in [0, 1]"),
        (["prior", "train", "--cond-dropout", "1.5"], "--cond-dropout must be finite and in [0, 1)"),
        (["train-il", "--latents", "x", "--batch-size", "0"], "--batch-size must be in [1, "),
        (["classify", "--dataset", "phantom", "--data", "x", "--image-size", "0"], "--image-size must be >= 16 px, got 0"),
        (["encode", "--data", "x", "--prior", "phantom", "--size", "-5"], "--size"),
        (["encode", "--data", "x", "--prior", "phantom", "--size", "100000"], "--size"),
    ],
)
def test_nan_and_out_of_range_options_are_refused_naming_the_option(argv, needle, tmp_path, capsys):
    """NaN passed the `>= 0` checks (black images, a NaN in phantom.json); out-of-range values
    ran (every caption dropped, p = 1.5 acting as 1) or failed with a message naming nothing."""
    _main_one_line(capsys, [*argv, "--out", str(tmp_path / "o")], needle)
    assert not os.path.exists(tmp_path / "o") and not os.path.exists(tmp_path / "o.partial")


def test_generate_n_and_batch_size_errors_name_the_option(tmp_path, capsys):
    _main_one_line(capsys, ["generate", "--prompt", "Edema", "--n", "0", "--steps", "2", "--out", str(tmp_path / "g"), "--quiet"], "--n")
    _main_one_line(capsys, ["generate", "--prompt", "Edema", "--n", "1", "--steps", "2", "--batch-size", "0", "--out", str(tmp_path / "g"), "--quiet"], "--batch-size must be >= 1")
    assert not (tmp_path / "g").exists()


def test_every_numeric_config_field_is_bounded_and_checked():
    """The checks live in each field's opt() metadata and run on construction (Config), so no
    command, preset or checkpoint can skip one."""
    import dataclasses
    import typing

    from ltbench.config import Config
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.phantom import PhantomConfig
    from ltbench.eval.classifier import ClassifierConfig
    from ltbench.eval.oracle import OracleConfig
    from ltbench.method.fusion import FusionConfig
    from ltbench.method.il import ILConfig
    from ltbench.prior.encode import EncodeConfig
    from ltbench.prior.quality import QualityConfig
    from ltbench.prior.train import PriorTrainConfig

    for cls in (PhantomConfig, ILConfig, FusionConfig, ClassifierConfig, EncodeConfig, OracleConfig, PriorTrainConfig, QualityConfig, ImageConfig):
        assert issubclass(cls, Config), cls
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float, tuple) and "choices" not in f.metadata:
                assert {"ge", "gt", "le", "lt"} & set(f.metadata), f"{cls.__name__}.{f.name} has no bounds"
            if hints[f.name] is float:
                with pytest.raises(ValueError, match="must be finite"):
                    cls(**{f.name: float("nan")})


def test_api_inputs_are_checked():
    """fid on the oracle's features at 32 px returned 47.1; label_fidelity took 16 images with
    3 label rows; the oracle read 0..255 floats as [0, 1]."""
    from ltbench.eval.fid import ORACLE_EXTRACTOR, fid
    from ltbench.eval.fidelity import label_fidelity
    from ltbench.eval.oracle import load_oracle, oracle_file

    with pytest.raises(ValueError, match="need 64x64 images"):
        fid(_images(4, 32), _images(4, 32, seed=1), ORACLE_EXTRACTOR, oracle_file("phantom"))
    oracle = load_oracle("phantom")
    with pytest.raises(ValueError, match=r"labels must be \[N, K\] = \[16, 10\]"):
        label_fidelity(oracle, _images(16, 64), np.zeros((3, 10), np.uint8), oracle.classes, oracle.classes[5:])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        oracle.probs(_images(2, 64).astype(np.float32))
    assert oracle.probs(_images(2, 64).astype(np.float32) / 255).shape == (2, 10)


def test_head_and_tail_must_be_disjoint():
    from ltbench.augment.fsa_il import generate_fusions
    from ltbench.method.fusion import FusionConfig

    with pytest.raises(ValueError, match=r"--head and --tail must be disjoint; both name \['B'\]"):
        generate_fusions(None, None, None, None, ["A", "B", "C"], ["A", "B"], ["B", "C"], FusionConfig())


def test_a_store_manifest_that_is_a_list_is_one_line(tmp_path):
    from ltbench.data.store import LatentStore, StoreError

    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="manifest.json is corrupt: a JSON list"):
        LatentStore(str(tmp_path))


def test_nan_vae_weights_are_a_value_error(tmp_path, phantom_dir):
    """FloatingPointError (no one-line handler) became a traceback."""
    from diffusers import AutoencoderKL

    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.presets import open_dataset
    from ltbench.prior.encode import EncodeConfig, encode_dataset
    from ltbench.testing import make_tiny_vae_prior

    prior = make_tiny_vae_prior(str(tmp_path / "p"))
    vae = AutoencoderKL.from_pretrained(os.path.join(prior, "vae"))
    with torch.no_grad():
        vae.encoder.conv_in.weight.fill_(float("nan"))
    vae.save_pretrained(os.path.join(prior, "vae"))
    ds = open_dataset("phantom", phantom_dir, image=ImageConfig(size=32, channels=3))
    with pytest.raises(ValueError, match="non-finite latents"):
        encode_dataset(ds, os.path.join(phantom_dir, "labels.csv"), prior, str(tmp_path / "s"), EncodeConfig(shard_size=64), progress=False)
    assert not [f for _, _, fs in os.walk(tmp_path / "s") for f in fs if f.startswith(".tmp-")]


def test_warnings_survive_importing_torchxrayvision(monkeypatch):
    """Its models module runs warnings.filterwarnings("ignore"): the phantom's "too few test
    positives" warning (the CheXpert CSV import) was never shown."""
    import warnings

    from ltbench.data.phantom import PhantomConfig, make_labels
    from ltbench.data.xrv import import_torchxrayvision

    saved = {k: v for k, v in sys.modules.items() if k == "torchxrayvision" or k.startswith("torchxrayvision.")}
    for k in saved:
        monkeypatch.delitem(sys.modules, k)  # restored after the test
    before = list(warnings.filters)
    import_torchxrayvision()  # a fresh import, as in a new process
    assert warnings.filters == before
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        make_labels(PhantomConfig(n=100, min_test_positives=3))
    assert any("too few" in str(w.message) for w in seen)


def test_a_rerun_never_mixes_inputs_helper(tmp_path):
    from ltbench.utils.io import StaleStageError, check_stage_inputs, file_identity, write_stage_inputs

    (tmp_path / "a.csv").write_text("x\n1\n")
    inputs = {"data": "/d1", "csv": file_identity(str(tmp_path / "a.csv")), "size": 64}
    assert not check_stage_inputs(str(tmp_path), "train", inputs)  # nothing cached yet
    write_stage_inputs(str(tmp_path), "train", inputs)
    assert check_stage_inputs(str(tmp_path), "train", inputs)
    with pytest.raises(StaleStageError, match=r'data "/d1" -> "/d2"'):
        check_stage_inputs(str(tmp_path), "train", {**inputs, "data": "/d2"})
    (tmp_path / "a.csv").write_text("x\n2\n")
    with pytest.raises(StaleStageError, match="csv.sha256"):
        check_stage_inputs(str(tmp_path), "train", {**inputs, "csv": file_identity(str(tmp_path / "a.csv"))})
    assert not check_stage_inputs(str(tmp_path), "train", {**inputs, "size": 32}, mismatch="recompute")
    assert not os.path.exists(tmp_path / "train.inputs.json")  # a crash mid-recompute leaves no stale record


def test_resumed_iterated_learning_refuses_other_data(tmp_path):
    """A rerun of train-il into the same --out on other latents resumed the first run's
    checkpoints (same config): one run, two datasets."""
    from torch.utils.data import TensorDataset

    from ltbench.method.il import ILConfig, train_il
    from ltbench.utils.io import StaleStageError

    def data(seed):
        g = torch.Generator().manual_seed(seed)
        y = (torch.rand(32, 3, generator=g) < 0.5).float()
        return TensorDataset(torch.randn(32, 4, 8, 8, generator=g), y, torch.arange(32))

    cfg = ILConfig(generations=1, ngf=8, max_depth=2, sparse_channels=4, batch_size=32, bn_recalibration=0)
    train_il(data(0), None, cfg, str(tmp_path / "il"), progress=False)
    train_il(data(0), None, cfg, str(tmp_path / "il"), progress=False)  # the same data: resumes (nothing left)
    with pytest.raises(StaleStageError, match="train.tensors_sha256"):
        train_il(data(1), None, cfg, str(tmp_path / "il"), progress=False)


def test_imitation_bce_on_meta_tensors_and_double_backward_agree():
    """The fused op's eager value check read meta tensors (.item()); its backward had no
    derivative, so second derivatives were 0 or an error where the references' were not."""
    from ltbench import ops

    x = torch.empty(2, 4, 3, 3, device="meta")
    assert ops.imitation_bce(x, torch.zeros(2, 3, 3, dtype=torch.long, device="meta")).shape == ()
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3, dtype=torch.double, requires_grad=True)
    idx = torch.randint(0, 4, (2, 3, 3))
    h = torch.randn_like(z, requires_grad=True)
    m = [torch.randint(0, 2, (2, 3, 3)).bool() for _ in range(3)]
    for fused, ref in ((lambda a: ops.imitation_bce(a, idx), lambda a: ops.imitation_bce_reference(a, idx)), (lambda a: ops.mask_fuse(a, h, *m).pow(3).sum(), lambda a: ops.mask_fuse_reference(a, h, *m).pow(3).sum())):
        second = []
        for f in (fused, ref):
            (g,) = torch.autograd.grad(f(z), z, create_graph=True)
            second.append(torch.autograd.grad(g.pow(2).sum(), z)[0])
        assert second[1].abs().sum() > 0 and torch.allclose(second[0], second[1])
