"""Every CLI entry point answers --help."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [[], ["data"], ["data", "phantom"], ["encode"], ["oracle", "train"], ["prior", "train"]])
def test_help(args):
    r = subprocess.run([sys.executable, "-m", "ltbench", *args, "--help"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "usage: ltbench" in r.stdout


def test_console_script_and_reproduce_help():
    r = subprocess.run(["ltbench", "--help"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "encode" in r.stdout and "oracle" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ltbench.reproduce", "table1", "--help"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "--preset" in r.stdout and "--seeds" in r.stdout and "smoke" in r.stdout


def test_option_help_comes_from_the_config_fields():
    """Help text lives in each field's metadata (opt(default, help)), not in source comments:
    it is there in an install without sources, and a field without help fails the CLI build."""
    import argparse
    import dataclasses

    from ltbench.config import add_config_args, opt
    from ltbench.method.fusion import FusionConfig

    r = subprocess.run([sys.executable, "-m", "ltbench", "augment", "--help"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "M^S = [CAM_tail > tau_h] (paper figure) (default: 0.4)" in text
    assert dataclasses.fields(FusionConfig)[0].metadata["help"]

    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        documented: int = opt(1, "has help")
        bare: int = 2

    with pytest.raises(TypeError, match="Undocumented.bare has no help"):
        add_config_args(argparse.ArgumentParser(), Undocumented)


def test_presets_lists_every_registry_with_what_each_sets():
    import json

    r = subprocess.run([sys.executable, "-m", "ltbench", "presets", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0
    rows = {(x["kind"], x["name"]): x["sets"] for x in json.loads(r.stdout)}
    assert {("table1", "default"), ("table1", "smoke"), ("table1", "paper"), ("il", "phantom"), ("prior", "phantom"), ("dataset", "phantom")} <= set(rows)
    assert rows[("table1", "default")]["seeds"] == 4 and rows[("table1", "smoke")]["seeds"] == 1
    assert rows[("prior", "phantom")] == {}  # the prior's preset is its config's defaults
    assert "t2i_steps" not in rows[("table1", "paper")]  # RoentGen's 75 steps: one default, not restated
