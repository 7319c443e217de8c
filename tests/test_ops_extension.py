"""The compiled op library's build and dispatch path, through the build probe op."""

import os
import subprocess
import sys

import pytest
import torch

from ltbench import ops

needs_ext = pytest.mark.skipif(not ops.extension_available(), reason="ltbench._C not built")


def test_probe_matches_reference():
    x = torch.randn(5, 7)
    torch.testing.assert_close(ops.probe_scale(x, 2.5), ops.probe_scale_reference(x, 2.5))


@needs_ext
def test_extension_is_built_and_registered():
    assert ops.backend() == "fused"
    assert hasattr(torch.ops.ltbench, "probe_scale")


@needs_ext
def test_probe_gradcheck_float64():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ops.probe_scale(t, -1.5), (x,))


@needs_ext
def test_probe_opcheck():
    for x in (torch.randn(3, 4), torch.randn(2, 3, dtype=torch.float64, requires_grad=True), torch.randn(0, 3)):
        torch.library.opcheck(torch.ops.ltbench.probe_scale.default, (x, 2.0))


@needs_ext
def test_probe_edge_inputs():
    x = torch.randn(6, 4).t()  # non-contiguous
    torch.testing.assert_close(ops.probe_scale(x, 3.0), x * 3.0)
    assert ops.probe_scale(torch.empty(0, 5), 2.0).shape == (0, 5)
    with pytest.raises(RuntimeError, match="x must be a floating tensor"):
        torch.ops.ltbench.probe_scale(torch.ones(3, dtype=torch.int64), 2.0)


@needs_ext
def test_probe_compiles_fullgraph():
    f = torch.compile(lambda t: ops.probe_scale(t, 2.0) + 1, fullgraph=True, backend="eager")
    torch.testing.assert_close(f(torch.ones(3)), torch.full((3,), 3.0))


@needs_ext
@pytest.mark.cuda
def test_probe_cuda_matches_cpu():
    x = torch.randn(1000, 3)
    torch.testing.assert_close(ops.probe_scale(x.cuda(), 1.7).cpu(), ops.probe_scale(x, 1.7))


def test_reference_backend_when_disabled():
    code = "import ltbench.ops as o, torch; print(o.backend(), o.probe_scale(torch.ones(2), 2.0).tolist())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LTBENCH_DISABLE_EXTENSION": "1"}, capture_output=True, text=True, check=True, timeout=600)
    assert out.stdout.split()[0] == "reference"
    assert "[2.0, 2.0]" in out.stdout


@pytest.mark.skipif(os.environ.get("LTBENCH_EXPECT_CUDA_BUILD") != "1", reason="only where CI expects a CUDA build")
def test_cuda_kernels_were_compiled_in():
    assert ops.extension_available(), "ltbench._C failed to build or import"
    assert torch._C._dispatch_has_kernel_for_dispatch_key("ltbench::probe_scale", "CUDA")


def test_readme_commands_match_ci():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(root, ".ci", "run")) as f:
        ci = f.read()
    blocks = [b.split("\n", 1)[1].strip() for b in readme.split("```")[1::2]]
    main_job, test_cmd = blocks[0], blocks[1]
    assert main_job.endswith("python -m ltbench.reproduce table1")
    assert test_cmd in ci.splitlines(), "CI must run the README's test command verbatim"
