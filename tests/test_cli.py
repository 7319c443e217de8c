"""Every CLI entry point answers --help."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [[], ["data"], ["data", "phantom"], ["encode"], ["oracle", "train"], ["prior", "train"]])
def test_help(args):
    r = subprocess.run([sys.executable, "-m", "ltbench", *args, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: ltbench" in r.stdout


def test_console_script_and_reproduce_help():
    r = subprocess.run(["ltbench", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "encode" in r.stdout and "oracle" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ltbench.reproduce", "table1", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--preset" in r.stdout and "--seeds" in r.stdout and "smoke" in r.stdout
