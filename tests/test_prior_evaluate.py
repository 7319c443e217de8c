"""``ltbench prior evaluate`` end to end on a tiny Stable Diffusion folder: what it writes
(quality.json with the weights it measured and the command, the sample grid, the generated
README) and that the README is rendered from quality.json."""

import pytest
import json
import os

from ltbench.cli import main
from ltbench.testing import make_tiny_sd_pipeline
from ltbench.utils.provenance import prior_weights

pytestmark = pytest.mark.slow  # a whole prior evaluation


def test_prior_evaluate_writes_quality_grid_and_readme(tmp_path, capsys):
    prior = make_tiny_sd_pipeline(str(tmp_path / "sd"))
    out = tmp_path / "eval"
    args = ["prior", "evaluate", "--prior", prior, "--out", str(out), "--oracle", "none", "--device", "cpu", "--n-heldout", "16", "--n-judge", "200", "--judge-epochs", "1", "--n-per-class", "2", "--steps", "2", "--quiet"]
    assert main(args) == 0
    q = json.loads((out / "quality.json").read_text())
    assert q["measured"]["weights_sha256"] == prior_weights(prior)  # the weights it measured
    assert q["measured"]["command"] == "ltbench " + " ".join(args)  # the command as given, not the test runner's argv
    assert q["vae"]["heldout_images"] == 16 and q["vae"]["mse"] >= 0
    assert set(q["prompt_fidelity"]) and all(r["unet_evals_per_sample"] >= 4 for r in q["prompt_fidelity"].values())  # >= 2 steps x 2 (guidance)
    assert "round_trip" not in q  # --oracle none
    assert os.path.getsize(out / "sample_grid.png") > 1000
    readme = (out / "README.md").read_text()
    for c, r in q["prompt_fidelity"].items():
        assert f"| {c} | {r['recognised']:.2f} |" in readme  # the table is quality.json's
    # the command printed what it wrote
    printed = capsys.readouterr().out
    assert '"prompt_fidelity"' in printed
    # a bad option is one line, exit 2, nothing written
    assert main(["prior", "evaluate", "--prior", str(tmp_path / "nope"), "--out", str(tmp_path / "e2"), "--quiet"]) == 2
    assert not (tmp_path / "e2").exists()
