"""Every CLI entry point answers --help, and the main job says plainly what it can't do yet."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [[], ["data"], ["data", "phantom"], ["encode"]])
def test_help(args):
    r = subprocess.run([sys.executable, "-m", "ltbench", *args, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: ltbench" in r.stdout


def test_console_script_and_reproduce_status():
    r = subprocess.run(["ltbench", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "encode" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ltbench.reproduce", "table1"], capture_output=True, text=True)
    assert r.returncode == 3 and "not implemented yet" in r.stderr
