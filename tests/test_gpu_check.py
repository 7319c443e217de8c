"""benchmarks/gpu_check.sh in its CPU mode: the steps a first GPU run takes, at tiny sizes on the
CPU, so the script and its summary cannot rot between GPU runs (docs/gpu.md)."""

import json
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def test_the_script_is_strict_bash():
    with open(SCRIPT) as f:
        text = f.read()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    r = subprocess.run(["bash", "-n", SCRIPT], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_gpu_mode_refuses_a_machine_without_a_gpu(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    r = subprocess.run(["bash", SCRIPT], env={**os.environ, "OUT": str(tmp_path)}, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--cpu" in r.stderr and not os.listdir(tmp_path)


@pytest.mark.slow
def test_cpu_mode_runs_every_step_and_writes_the_summary(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(["bash", SCRIPT, "--cpu"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-5000:]
    work = tmp_path / "gpu-check-cpu-check"
    steps = {line.split("\t")[0]: line.rstrip("\n").split("\t")[1] for line in open(work / "steps.tsv")}
    assert steps["install"].startswith("skipped") and steps["build"].startswith("skipped")
    for name in ("cuda-tests", "smoke-table1", "ops-bench", "il-bench", "summary"):
        assert steps[name] == "0", (name, steps)
    ops = json.load(open(tmp_path / "ops-cpu-check.json"))
    fused = [b for b in ops["benchmarks"] if b["extra_info"]["impl"].startswith("d-ltbench")]
    assert {b["extra_info"]["op"] for b in fused} == {"mask_fuse", "channel_sample", "imitation_bce"}
    assert all(b["extra_info"]["copy_GBps"] > 0 and b["extra_info"]["frac_copy"] > 0 for b in fused)
    assert ops["ltbench"]["identity"]  # provenance, as every benchmark file carries
    il = json.load(open(tmp_path / "il-generation-cpu-check.json"))
    assert {b["extra_info"]["backend"] for b in il["benchmarks"]} == {"fused", "reference"}
    cells = os.listdir(work / "smoke-cpu" / "cells")
    assert sorted(c for c in cells if c.endswith(".json")) == ["fsa-il@0__seed0.json", "none__seed0.json"]
    summary = (tmp_path / "gpu-check-cpu-check.md").read_text()
    for heading in ("# GPU check", "all steps passed", "## Tests marked cuda", "## Smoke Table 1", "## Ops against the device's copy bandwidth", "## Iterated learning", "mask_fuse", "fused ops make two generations"):
        assert heading in summary, heading
    # the tests marked cuda were collected (and skipped here): the marker selects something
    m = re.search(r"^(\d+) collected: 0 passed, 0 failed, 0 errors, (\d+) skipped", summary, re.M)
    assert m and int(m.group(1)) == int(m.group(2)) > 20, summary
