"""The CAM choice reaches the CAMs: Table 1's fit computes them with the preset's
``FusionConfig.cam`` / ``cam_layers`` (it used the class default whatever the preset set),
``ltbench augment --cam`` changes the fused latents (it was parsed and dropped), and
``compute_cams`` takes the choice explicitly."""

import dataclasses
import inspect
import os

import numpy as np
import pytest

from ltbench.data.phantom import PhantomConfig
from ltbench.eval.classifier import ClassifierConfig
from ltbench.method.cam import batch_cams, compute_cams
from ltbench.method.fusion import FusionConfig
from ltbench.reproduce.presets import PRESETS
from ltbench.reproduce.stages import Context


def test_compute_cams_takes_the_choice_explicitly():
    params = inspect.signature(compute_cams).parameters
    for name in ("method", "layers"):
        assert params[name].default is inspect.Parameter.empty, f"compute_cams has a default {name}: a caller that forgets it silently gets another CAM"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A smoke-sized Table 1 context whose preset asks for EigenCAM on the last block."""
    preset = dataclasses.replace(PRESETS["smoke"], phantom=PhantomConfig(n=1000, min_test_positives=1), fusion=FusionConfig(cam="eigencam", cam_layers="last"), classifier=ClassifierConfig(steps=2, warm_steps=0, batch_size=8))
    ctx = Context(preset, str(tmp_path_factory.mktemp("run")), progress=False)
    ctx.load_data()
    return ctx


@pytest.mark.slow
def test_table1_fit_uses_the_presets_cam_choice(tiny_run):
    ctx = tiny_run
    model, cams, _ = ctx.il_fit(0)
    z = ctx.latents()[:32]
    y = ctx.y_train[:32]
    prev = (ctx.y_train > 0).mean(0)
    asked = batch_cams(model, z, y, prev, "eigencam", "last")[0]
    default = batch_cams(model, z, y, prev, "gradcam++", "multi")[0]
    got = np.asarray(cams[:32], np.float32)
    assert np.allclose(got, asked, atol=1e-3), "the fit's CAMs are not the preset's EigenCAM-on-the-last-block maps"
    assert not np.allclose(got, default, atol=1e-2)
    assert ctx.il_fit_identity(0)["cam"] == ["eigencam", "last"]


@pytest.mark.slow
def test_augment_cam_option_changes_the_fusions(tmp_path):
    """`ltbench augment --cam eigencam --cam-layers last` used to write latents byte-identical
    to the default's."""
    import subprocess
    import sys

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "ltbench", *args], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]

    data, store, il = (str(tmp_path / n) for n in ("data", "store", "il"))
    run("data", "phantom", "--n", "240", "--size", "64", "--seed", "5", "--out", data, "--quiet")
    run("encode", "--data", data, "--prior", "phantom", "--out", store, "--quiet", "--batch-size", "64")
    run("train-il", "--latents", store, "--out", il, "--generations", "1", "--ngf", "8", "--max-depth", "2", "--batch-size", "128", "--quiet")
    common = ["augment", "--latents", store, "--il", il, "--n-per-class", "3", "--tail", "Pneumothorax,Fracture", "--quiet"]
    run(*common, "--out", str(tmp_path / "default"))
    run(*common, "--cam", "eigencam", "--cam-layers", "last", "--out", str(tmp_path / "eigen"))
    a, b = (np.load(os.path.join(tmp_path, d, "latents.npy")) for d in ("default", "eigen"))
    assert a.shape == b.shape and not np.array_equal(a, b)
