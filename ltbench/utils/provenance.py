"""What produced a result file: git sha, package versions, device, ops backend; and the
identity (SHA-256s) of a diffusers pipeline folder's weights."""

import os
import platform
import subprocess
from datetime import datetime, timezone

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "torch-fidelity", "grad-cam", "imbalanced-learn", "scikit-learn", "torchxrayvision", "numpy")


def git_sha() -> str:
    """HEAD of the checkout ltbench runs from, ``-dirty`` when tracked files outside
    ``results/`` differ from it; "unknown" outside a git checkout."""
    root = REPO_ROOT
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
    return f"cpu: {cpu_model()}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` where there is none)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


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


def prior_weights(folder: str) -> dict:
    """{weight file: SHA-256 (16 hex)} of a diffusers pipeline folder."""
    import glob

    from ltbench.utils.io import sha256_file

    weights = sorted(glob.glob(os.path.join(folder, "*", "*.safetensors")) + glob.glob(os.path.join(folder, "*", "*.bin")))
    return {os.path.relpath(w, folder): sha256_file(w)[:16] for w in weights}
