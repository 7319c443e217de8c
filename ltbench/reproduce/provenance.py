"""The identity of what a committed result measured (sources, weights, renderer), for the
freshness tests; the generic provenance of a result file is ``ltbench.utils.provenance``."""

import os

from ltbench.utils.provenance import REPO_ROOT, git_sha, metadata, prior_weights  # noqa: F401  (re-exported for results code)

# ---- identity of what a committed result measured -------------------------------------------
# Every file under results/ records the identity of the code and weights it measured; the test
# suite (tests/test_results_fresh.py) recomputes it and fails when a committed file no longer
# matches (a kernel rewritten, a prior retrained, the renderer changed), so a stale figure is
# rerun instead of read.

_SOURCE_EXT = (".py", ".h", ".cuh", ".cpp", ".cu")
SOURCE_GROUPS = {
    "ops_sources": ("csrc", "ltbench/ops"),  # the kernels, their references and dispatch
    "method_sources": ("ltbench/method",),  # iterated learning, CAMs, fusion
    "prior_sources": ("ltbench/prior",),  # the diffusion pipeline (its .py files)
    "streaming_sources": ("ltbench/data", "ltbench/reproduce/stages.py", "ltbench/reproduce/cells.py", "ltbench/eval/classifier.py", "ltbench/utils/memory.py"),  # how Table 1 reads and holds data
    # what a Table 1 cell's numbers are computed by: the method, the metrics and harnesses, the
    # augmenters and baselines, the prior and data code, the ops, and the experiment's own
    # stages, cell evaluation, rows and presets (not the reports, which only render cells)
    "table1_sources": ("csrc", "ltbench/ops", "ltbench/data", "ltbench/prior", "ltbench/method", "ltbench/augment", "ltbench/eval", "baselines", "ltbench/nets.py", "ltbench/config.py", "ltbench/utils", "ltbench/reproduce/stages.py", "ltbench/reproduce/cells.py", "ltbench/reproduce/rows.py", "ltbench/reproduce/presets.py"),
    # what the committed classifier calibration is computed by: Table 1's sources without its
    # presets, rows and cells (the record states the data, weights and candidate configs it was
    # computed on, which is what it takes from the preset), plus the calibration itself, so
    # that setting the default to the chosen classifier does not make the choice stale
    "calibration_sources": ("csrc", "ltbench/ops", "ltbench/data", "ltbench/prior", "ltbench/method", "ltbench/augment", "ltbench/eval", "baselines", "ltbench/nets.py", "ltbench/config.py", "ltbench/utils", "ltbench/reproduce/stages.py", "ltbench/reproduce/calibrate.py", "ltbench/reproduce/room.py"),
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
