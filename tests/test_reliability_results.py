"""Bad result files and mixed inputs, at both command lines: one line naming the file, exit
status 2, nothing computed on top of them (each probe once went wrong)."""

import json
import os

import pytest

from ltbench.reproduce.__main__ import main as reproduce


def _errors(capsys) -> list:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error" in line]


def test_a_cell_that_is_a_json_list_is_named(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "cells" / "none__seed0.json").write_text("[1, 2]")
    assert reproduce(["table1", "--preset", "smoke", "--rows", "none", "--out", str(run), "--quiet"]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "none__seed0.json" in errors[0] and "not an object" in errors[0]
    assert not (run / "work").exists()


@pytest.mark.parametrize("experiment", ["table1", "diagnostics", "refine-sweep", "project"])
def test_a_run_json_that_is_a_list_is_named(tmp_path, capsys, experiment):
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "run.json").write_text("[]")
    args = {"table1": ["table1", "--preset", "smoke", "--rows", "none", "--out", str(run)], "project": ["project", "--run", str(run)]}.get(experiment, [experiment, "--run", str(run), "--to", str(tmp_path / "to")])
    assert reproduce(args + ["--quiet"]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "run.json" in errors[0] and "malformed" in errors[0]
    assert not (run / "work").exists()


def test_a_cell_whose_fid_is_a_string_is_refused(tmp_path):
    from ltbench.reproduce.schema import SCHEMA, validate_cell

    cell = {"schema": SCHEMA, "metadata": dict.fromkeys(("git_sha", "utc_time", "versions", "device", "ops_backend", "seed"), "x"), "config": {"row": "smote", "seed": 0},
            "results": {"cost": {}, "tail_metrics": {"oracle": {"mean": {"fid": "6.5"}}}, "label_fidelity": None, "head_map": 0.5, "tail_map": 0.2, "average_precision": {"Edema": 0.4}, "train_size": {}}}
    with pytest.raises(ValueError, match="tail_metrics.oracle.mean"):
        validate_cell(cell, "c.json")
    cell["results"]["tail_metrics"]["oracle"]["mean"]["fid"] = 6.5
    validate_cell(cell)
    cell["results"]["average_precision"]["Edema"] = float("nan")
    with pytest.raises(ValueError, match="average_precision"):
        validate_cell(cell)


def test_project_refuses_a_run_that_is_not_a_rehearsal(tmp_path, capsys):
    """It wrote a projection "from the paper-rehearsal run" of any run folder."""
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"preset": "default", "config": {}, "invocations": []}))
    assert reproduce(["project", "--run", str(run)]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "'default'" in errors[0] and "paper-rehearsal" in errors[0]
    assert not (run / "projection.md").exists()


@pytest.mark.slow
def test_classify_rerun_with_other_inputs_refuses_the_cached_images(tmp_path, capsys):
    """A rerun into the same --out with another --data (or --augmented) reused the first run's
    images and wrote metrics under the new name."""
    import shutil

    from ltbench.cli import main
    from ltbench.data.phantom import PhantomConfig, write_phantom

    phantom_dir = write_phantom(PhantomConfig(n=150, size=32, seed=3, min_test_positives=1), str(tmp_path / "ph"), progress=False)

    args = ["classify", "--dataset", "phantom", "--out", str(tmp_path / "out"), "--image-size", "32", "--input-size", "32", "--steps", "2", "--batch-size", "4", "--eval-batch-size", "16", "--device", "cpu", "--quiet"]
    assert main(args + ["--data", phantom_dir]) == 0
    other = tmp_path / "other"
    shutil.copytree(phantom_dir, other)
    capsys.readouterr()
    assert main(args + ["--data", str(other)]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "other inputs" in errors[0] and "data" in errors[0]
    assert main(args + ["--data", phantom_dir, "--augmented", str(tmp_path / "missing")]) == 2
    assert "augmented" in _errors(capsys)[0]
    assert json.load(open(tmp_path / "out" / "metrics.json"))["data"] == phantom_dir  # the first run's result stands
    assert os.path.exists(tmp_path / "out" / "data" / "inputs.json")
