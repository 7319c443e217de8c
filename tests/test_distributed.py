"""torchrun with 2 CPU processes (gloo), against one process: sharded generation gives the
same samples, and iterated learning's data-parallel training holds one model on every rank
and follows one process's run (tests/dist_worker.py does the work)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "dist_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

pytestmark = [pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH"), pytest.mark.slow]  # 2-process torchrun runs of every trainer


def _torchrun(cmd: list, done, timeout: int, **kw) -> subprocess.CompletedProcess:
    """torchrun, retried once only for gloo's abort at interpreter teardown (a known torch issue;
    the processes destroy their group first, which made it rare, not impossible): every failed
    rank died of SIGABRT (exitcode -6) AFTER the work was done (``done()``: every result the
    command writes is on disk). Any other failure is returned as it is; a failed retry keeps the
    first attempt's stderr in front of its own."""
    import re

    r = subprocess.run(cmd, timeout=timeout, **kw)
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", r.stderr or "")
    if r.returncode != 0 and codes and set(codes) == {"-6"} and done():
        first = r.stderr
        r = subprocess.run(cmd, timeout=timeout, **kw)
        if r.returncode != 0:
            r.stderr = f"[first attempt, aborted at teardown]\n{first}\n[retry]\n{r.stderr}"
    return r


def _ranks_done(out: str, world: int):
    """dist_worker.py marks each rank's finished work (``.rank<r>.done``) before teardown."""
    return lambda: all(os.path.exists(os.path.join(out, f".rank{r}.done")) for r in range(world))


# The group a GPU machine forms ("cpu:gloo,cuda:nccl": one backend per device type, the CPU's
# carrying loss sums and pickled samples) with gloo on both sides, so the CPU runs the GPU's
# code path through a multi-backend group (init_distributed reads LTBENCH_DIST_BACKEND).
MULTI_BACKEND = {"LTBENCH_DIST_BACKEND": "cpu:gloo,cuda:gloo"}


def _run(mode: str, out: str, world: int, **env) -> None:
    cmd = [sys.executable, WORKER, mode, out] if world == 1 else ["torchrun", "--standalone", f"--nproc_per_node={world}", WORKER, mode, out]
    r = _torchrun(cmd, _ranks_done(out, world), env={**ENV, **env}, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    one, two = (str(tmp_path_factory.mktemp(n)) for n in ("gen1", "gen2"))
    _run("generate", one, 1)
    _run("generate", two, 2, **MULTI_BACKEND)
    return torch.load(os.path.join(one, "generate.pt"), weights_only=False), torch.load(os.path.join(two, "generate.pt"), weights_only=False)


def test_generation_does_not_depend_on_the_number_of_processes(generated):
    a, b = generated
    assert a["world"] == 1 and b["world"] == 2 and b["backend"] == MULTI_BACKEND["LTBENCH_DIST_BACKEND"]
    for key in ("t2i", "fsa"):
        assert a[key].shape == b[key].shape and len(a[key]) > 0
        # per-sample seeds: the same samples, though each process made every other one in
        # batches of other compositions (float reductions may differ in the last bits)
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-4)
        flat = a[key].flatten(1)
        assert not torch.allclose(flat[0], flat[1])  # samples are not copies of each other
    assert (a["t2i_labels"] == b["t2i_labels"]).all() and (a["fsa_labels"] == b["fsa_labels"]).all()


@pytest.fixture(scope="module")
def il_runs(tmp_path_factory):
    one, two = (str(tmp_path_factory.mktemp(n)) for n in ("il1", "il2"))
    _run("il", one, 1)
    _run("il", two, 2, **MULTI_BACKEND)
    load = lambda d, r: torch.load(os.path.join(d, f"il-rank{r}.pt"), weights_only=False)  # noqa: E731
    return load(one, 0), load(two, 0), load(two, 1)


def test_data_parallel_iterated_learning_holds_one_model_on_every_rank(il_runs):
    _, r0, r1 = il_runs
    assert r0["world"] == 2 and r1["log"] is None  # only rank 0 writes the log
    assert r0["backend"] == MULTI_BACKEND["LTBENCH_DIST_BACKEND"]
    for k, v in r0["state"].items():
        assert torch.allclose(v.float(), r1["state"][k].float(), atol=1e-6), k


# Measured (256 latents, global batch 32, 2 generations, BatchNorm recalibrated after each
# interaction phase): the two-process run's losses are within 0.15% of one process's
# (imitation: 6e-5); with the gradient all-reduce switched off (LTBENCH_TEST_NO_ALLREDUCE) they
# drift to 0.87% (imitation 1.4e-4). The weights as a whole differ by ~1% either way
# (BatchNorm's per-rank statistics in training), so they are not compared. Before the
# recalibration the imitation losses agreed to 3e-6: the teacher's statistics are now
# re-estimated from those slightly different weights.
TOL = {"interaction": 0.003, "imitation": 1e-4}


def test_data_parallel_iterated_learning_follows_one_process(il_runs):
    """Same global batches, uniforms and count-weighted gradients: the only difference is
    BatchNorm normalising each rank's half of the batch with its own statistics."""
    one, two, _ = il_runs
    assert len(one["log"]) == len(two["log"]) == 2
    for g1, g2 in zip(one["log"], two["log"]):
        for phase, tol in TOL.items():
            if phase in g1:
                a, b = g1[phase]["loss"], g2[phase]["loss"]
                assert abs(a - b) <= tol * abs(a), (g1["generation"], phase, a, b)


def test_generate_cli_under_torchrun_writes_the_one_process_samples_once(tmp_path):
    args = ["generate", "--prompt", "Edema", "--prompt", "Pneumothorax", "--per-prompt", "3", "--steps", "3", "--quiet"]
    r1 = subprocess.run([sys.executable, "-m", "ltbench", *args, "--batch-size", "4", "--out", str(tmp_path / "one")], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    r2 = _torchrun(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "ltbench", *args, "--batch-size", "2", "--out", str(tmp_path / "two")], lambda: os.path.exists(tmp_path / "two" / "latents.npy"), env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr[-2000:] + r2.stderr[-2000:]
    assert r2.stdout.count("wrote 6 images") == 1  # rank 0 alone writes
    import numpy as np

    a, b = np.load(tmp_path / "one" / "latents.npy"), np.load(tmp_path / "two" / "latents.npy")
    assert a.shape == b.shape == (6, 8, 16, 16)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    assert open(tmp_path / "one" / "labels.csv").read() == open(tmp_path / "two" / "labels.csv").read()


# ---- DDP: the mAP harness's DenseNet121, the oracle's trainer, the prior -------------------
def test_the_retry_is_only_for_an_abort_at_teardown_after_the_work(tmp_path):
    """A failure that is not gloo's teardown abort, or one before the results were written, is
    never retried away; the first attempt's stderr is kept."""
    marker = tmp_path / "attempts"
    script = "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); print(sys.argv[2], file=sys.stderr); sys.exit(1)"

    def run(message, done):
        marker.unlink(missing_ok=True)
        r = _torchrun([sys.executable, "-c", script, str(marker), message], done, timeout=60, capture_output=True, text=True)
        return r, len(marker.read_text())

    r, attempts = run("exitcode  : -6 (pid: 1)", lambda: True)
    assert attempts == 2 and "[first attempt, aborted at teardown]" in r.stderr  # retried, both stderrs kept
    assert run("exitcode  : -6 (pid: 1)", lambda: False)[1] == 1  # aborted before the work was done
    assert run("exitcode  : -6\nexitcode  : 1", lambda: True)[1] == 1  # another rank failed otherwise
    assert run("exitcode  : -11", lambda: True)[1] == 1  # a segfault is a failure


def _run_env(mode: str, out: str, world: int, **env) -> None:
    cmd = [sys.executable, WORKER, mode, out] if world == 1 else ["torchrun", "--standalone", f"--nproc_per_node={world}", WORKER, mode, out]
    r = _torchrun(cmd, _ranks_done(out, world), env={**ENV, **env}, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]


def _relative_difference(a: dict, b: dict) -> float:
    """sum |a - b| / sum |a| over the trained tensors (BatchNorm's running statistics left out)."""
    keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
    return sum(float((a[k].float() - b[k].float()).abs().sum()) for k in keys) / sum(float(a[k].float().abs().sum()) for k in keys)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Per mode: the one-process reference with ghost batches (each rank's rows normalised on
    their own, as BatchNorm does on each rank), 2 processes, and 2 processes without the
    gradient exchange (the negative control)."""
    d = {n: str(tmp_path_factory.mktemp(n)) for n in ("ghost", "two", "neg")}
    for mode in ("classifier", "oracle"):
        _run_env(mode, d["ghost"], 1, LTBENCH_TEST_GHOST_BATCHES="2")
        _run_env(mode, d["two"], 2)
        _run_env(mode, d["neg"], 2, LTBENCH_TEST_NO_ALLREDUCE="1")
    load = lambda k, f: torch.load(os.path.join(d[k], f), weights_only=False)  # noqa: E731
    return {m: {"ghost": load("ghost", f"{m}-rank0.pt"), "two": load("two", f"{m}-rank0.pt"), "two1": load("two", f"{m}-rank1.pt"), "neg": load("neg", f"{m}-rank0.pt")} for m in ("classifier", "oracle")}


# Measured: DenseNet121 (a warm-start step, then a row's step from it, global batch 16) 2
# processes vs the ghost-batch reference 6e-13 (float summation order), without the gradient
# exchange 1e-7 (the first steps of a one-cycle schedule are small; later steps amplify any
# difference through BatchNorm chaotically, so the test stops at two). SmallCNN (2 epochs of
# fit_multilabel with degradations): 4e-6 against 0.22 without the exchange.
DDP_TOL = {"classifier": 1e-9, "oracle": 1e-4}


@pytest.mark.parametrize("mode", ["classifier", "oracle"])
def test_ddp_classifiers_hold_one_model_and_follow_one_process(ddp_runs, mode):
    r = ddp_runs[mode]
    assert r["two"]["world"] == 2 and r["ghost"]["world"] == 1
    for k, v in r["two"]["state"].items():  # every rank holds the same weights and statistics
        assert torch.equal(v, r["two1"]["state"][k]), k
    tol = DDP_TOL[mode]
    assert _relative_difference(r["ghost"]["state"], r["two"]["state"]) <= tol
    assert _relative_difference(r["ghost"]["state"], r["neg"]["state"]) > 50 * tol  # the test sees a missing exchange


PRIOR_PARTS = ("vae", "unet", "text_encoder")


@pytest.fixture(scope="module")
def prior_runs(tmp_path_factory):
    from safetensors.torch import load_file

    d = {n: str(tmp_path_factory.mktemp("prior-" + n)) for n in ("one", "two", "neg")}
    _run_env("prior", d["one"], 1)
    _run_env("prior", d["two"], 2)
    _run_env("prior", d["neg"], 2, LTBENCH_TEST_NO_ALLREDUCE="1")

    def weights(k):
        out = {}
        for part in PRIOR_PARTS:
            (f,) = [x for x in os.listdir(os.path.join(d[k], "prior", part)) if x.endswith(".safetensors")]
            out[part] = load_file(os.path.join(d[k], "prior", part, f))
        return out

    return {k: weights(k) for k in d}


def test_ddp_prior_training_follows_one_process(prior_runs):
    """The VAE and the UNet use GroupNorm: 2 processes on halves of one process's batches
    train the same pipeline up to float summation order (measured: 8e-6 relative for the VAE,
    1e-6 for the UNet); without the gradient exchange 7e-3 to 2e-2."""
    for part in PRIOR_PARTS:
        assert _relative_difference(prior_runs["one"][part], prior_runs["two"][part]) <= 2e-4, part
        assert _relative_difference(prior_runs["one"][part], prior_runs["neg"][part]) > 2e-3, part


def test_classify_cli_runs_data_parallel_and_writes_once(tmp_path):
    """`ltbench classify` under torchrun: rank 0 reads the splits (+ the augmented folder) once,
    both ranks train DenseNet121 in DDP, rank 0 alone writes the metrics; the same command in
    one process reads the same rows. (DDP's numerics are checked against one process by the
    classifier test above.)"""
    import json

    import numpy as np

    from ltbench.data.classes import PAPER_CLASSES
    from ltbench.data.phantom import PhantomConfig, write_phantom
    from ltbench.data.writer import write_image_folder

    data = write_phantom(PhantomConfig(n=600, min_test_positives=1), str(tmp_path / "ph"), progress=False)
    labels = np.zeros((12, len(PAPER_CLASSES)), np.uint8)
    labels[:, -1] = 1
    write_image_folder(str(tmp_path / "aug"), np.random.default_rng(0).random((12, 64, 64)), labels, PAPER_CLASSES)
    args = ["classify", "--dataset", "phantom", "--data", data, "--augmented", str(tmp_path / "aug"), "--steps", "2", "--warm-steps", "1", "--batch-size", "8", "--input-size", "32", "--quiet"]
    r1 = subprocess.run([sys.executable, "-m", "ltbench", *args, "--out", str(tmp_path / "one")], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    r2 = _torchrun(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "ltbench", *args, "--out", str(tmp_path / "two")], lambda: os.path.exists(tmp_path / "two" / "metrics.json"), env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr[-2000:] + r2.stderr[-2000:]
    assert r2.stdout.count("wrote ") == 1  # rank 0 alone writes
    a, b = (json.load(open(tmp_path / d / "metrics.json")) for d in ("one", "two"))
    assert a["sizes"] == b["sizes"] == {"train": 420, "test": 120, "augmented": 12}
    assert set(b["average_precision"]) == set(PAPER_CLASSES) and 0 <= b["head_map"] <= 1 and 0 <= b["tail_map"] <= 1
    for split in ("train", "test", "augmented"):
        assert (np.load(tmp_path / "one" / "data" / f"{split}.npy") == np.load(tmp_path / "two" / "data" / f"{split}.npy")).all()
    bad = subprocess.run([sys.executable, "-m", "ltbench", "classify", "--dataset", "phantom", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "bad")], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "missing" in bad.stderr
