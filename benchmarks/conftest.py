import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Record in every --benchmark-json file the identity of what it measured (hashes of the
    sources and weights its benchmarks depend on, the CPU kernels' instruction set), which
    tests/test_results_fresh.py checks against the checkout."""
    from ltbench import ops
    from ltbench.reproduce.provenance import BENCH_DEPENDS, git_sha, identity

    modules = sorted({b["fullname"].split("::")[0].rsplit("/", 1)[-1].removesuffix(".py") for b in output_json["benchmarks"]})
    parts = sorted({p for m in modules for p in BENCH_DEPENDS.get(m, ())})
    output_json["ltbench"] = {
        "modules": modules,
        "identity": identity(parts),
        "git_sha": git_sha(),
        "ops_backend": ops.backend(),
        "cpu_isa": ops.cpu_isa(),
        "command": "pytest " + " ".join(config.invocation_params.args),
    }
