"""Metadata of every result file: what produced it (git sha, versions, device, ops backend)."""

import os
import platform
import subprocess
from datetime import datetime, timezone

PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "torch-fidelity", "grad-cam", "imbalanced-learn", "scikit-learn", "torchxrayvision", "numpy")


def git_sha() -> str:
    """HEAD of the checkout ltbench runs from, ``-dirty`` when tracked files outside
    ``results/`` differ from it; "unknown" outside a git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in PACKAGES + ("ltbench",):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"cpu: {cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def metadata(seed) -> dict:
    from ltbench import ops

    return {
        "git_sha": git_sha(),
        "utc_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "device": device_description(),
        "ops_backend": ops.backend(),
        "cpu_isa": ops.cpu_isa(),
        "seed": seed,
    }


# ---- identity of what a committed result measured -------------------------------------------
# Every file under results/ records the identity of the code and weights it measured; the test
# suite (tests/test_results_fresh.py) recomputes it and fails when a committed file no longer
# matches (a kernel rewritten, a prior retrained, the renderer changed), so a stale figure is
# rerun instead of read.

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SOURCE_EXT = (".py", ".h", ".cuh", ".cpp", ".cu")
SOURCE_GROUPS = {
    "ops_sources": ("csrc", "ltbench/ops"),  # the kernels, their references and dispatch
    "method_sources": ("ltbench/method",),  # iterated learning, CAMs, fusion
    "prior_sources": ("ltbench/prior",),  # the diffusion pipeline (its .py files)
    "streaming_sources": ("ltbench/data", "ltbench/reproduce/table1.py", "ltbench/eval/classifier.py", "ltbench/utils/memory.py"),  # how Table 1 reads and holds data
}
# which parts each benchmark module's figures depend on
BENCH_DEPENDS = {
    "test_bench_ops": ("ops_sources",),
    "test_bench_method": ("ops_sources", "method_sources"),
    "test_bench_prior": ("prior_sources", "prior_weights"),
    "test_bench_data": ("phantom_renderer", "streaming_sources"),
}


def source_sha(group: str) -> str | None:
    """SHA-256 (16 hex) over the paths and contents of a source group's files, or None outside
    a source checkout."""
    import hashlib

    h = hashlib.sha256()
    found = False
    for top in SOURCE_GROUPS[group]:
        base = os.path.join(REPO_ROOT, top)
        walk = [(os.path.dirname(base), [], [os.path.basename(base)])] if os.path.isfile(base) else os.walk(base)
        for dirpath, dirnames, filenames in walk:
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(_SOURCE_EXT):
                    path = os.path.join(dirpath, name)
                    h.update(os.path.relpath(path, REPO_ROOT).encode() + b"\0")
                    with open(path, "rb") as f:
                        h.update(f.read() + b"\0")
                    found = True
    return h.hexdigest()[:16] if found else None


def shipped_prior_weights() -> dict:
    """{weight file: SHA-256 (16 hex)} of the shipped phantom prior."""
    from ltbench.prior.vae import resolve_prior

    return prior_weights(resolve_prior("phantom"))


def prior_weights(folder: str) -> dict:
    """{weight file: SHA-256 (16 hex)} of a diffusers pipeline folder."""
    import glob

    from ltbench.utils.io import sha256_file

    weights = sorted(glob.glob(os.path.join(folder, "*", "*.safetensors")) + glob.glob(os.path.join(folder, "*", "*.bin")))
    return {os.path.relpath(w, folder): sha256_file(w)[:16] for w in weights}


def identity(parts) -> dict:
    """The current identity of the named parts (keys of SOURCE_GROUPS, ``prior_weights``,
    ``oracle_weights``, ``phantom_renderer``)."""
    out = {}
    for part in sorted(set(parts)):
        if part in SOURCE_GROUPS:
            out[part] = source_sha(part)
        elif part == "prior_weights":
            out[part] = shipped_prior_weights()
        elif part == "oracle_weights":
            from ltbench.eval.oracle import oracle_file
            from ltbench.utils.io import sha256_file

            out[part] = sha256_file(oracle_file("phantom"))[:16]
        elif part == "phantom_renderer":
            from ltbench.data.phantom.render import RENDERER_VERSION

            out[part] = RENDERER_VERSION
        else:
            raise ValueError(f"unknown identity part {part!r}")
    return out


def stale_parts(recorded: dict) -> list:
    """Differences between a recorded identity and the current one, as readable lines; empty
    when the file still describes this code and these weights."""
    now = identity(recorded)
    return [f"{k}: recorded {recorded[k]}, now {now[k]}" for k in sorted(recorded) if recorded[k] != now[k]]
