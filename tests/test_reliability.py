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
    r = subprocess.run([sys.executable, "-m", "ltbench.reproduce", "table1", "--preset", "smoke", "--rows", " , ", "--out", str(tmp_path / "o"), "--quiet"], capture_output=True, text=True)
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
    r = subprocess.run([sys.executable, "-m", "ltbench", "generate", "--prompt", "Edema", "--n", "1", "--steps", "-1", "--out", str(tmp_path / "g"), "--quiet"], capture_output=True, text=True)
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 2 and len(errors) == 1 and "steps must be" in errors[0], r.stderr
    assert not (tmp_path / "g").exists()
