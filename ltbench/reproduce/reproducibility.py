"""``python -m ltbench.reproduce reproducibility --run DIR``: how far a committed cell reproduces.

Some cells of a committed run (``--rows``, seed 0) are recomputed from scratch in fresh folders
by the same code, once per environment variant: as it is (this machine, its default
instruction set and thread count, which need not be the committed run's), with the CPU kernels' baseline instruction set
(``LTBENCH_CPU_ISA=base``: no AVX2/FMA copy) and with one thread (``OMP_NUM_THREADS=1``:
another order of float reductions in every convolution). Each recomputed cell is compared with
the committed one metric by metric; the largest absolute difference per metric and variant is
the tolerance to which a cell reproduces on another machine. A variant that reproduces the
committed cells of a fit-free row exactly but not an fsa-il row's says the difference comes
from the generator's fit (iterated learning is trained, and training amplifies rounding).

Writes ``RUN/reproducibility.json`` and ``RUN/reproducibility.md``."""

import os
import subprocess
import sys
import tempfile

from ltbench.reproduce.schema import cell_path, read_cell, read_run_info

VARIANTS = {
    "as it is": {},
    "baseline ISA": {"LTBENCH_CPU_ISA": "base"},
    "one thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
ROWS = ("none", "smote", "fsa-il@0")


def _metrics(res: dict) -> dict:
    """The numbers a reader takes from a cell: mAPs, per-class AP, and the oracle-space
    distribution metrics and label fidelity of rows that generate."""
    out = {"head_map": res["head_map"], "tail_map": res["tail_map"]}
    out.update({f"AP {c}": v for c, v in res["average_precision"].items()})
    tm = (res.get("tail_metrics") or {}).get("oracle")
    if isinstance(tm, dict):
        out.update({k: tm["mean"][k] for k in ("fid", "kid", "precision", "recall")})
    if res.get("label_fidelity"):
        out["label_fidelity"] = res["label_fidelity"]["mean_tail"]
    return out


def compare(committed: dict, recomputed: dict) -> dict:
    """{metric: |recomputed - committed|} of two cells of the same (row, seed)."""
    a, b = _metrics(committed["results"]), _metrics(recomputed["results"])
    return {k: abs(b[k] - a[k]) for k in a if k in b and a[k] is not None and b[k] is not None}


def run_reproducibility(run: str, rows=ROWS, variants=VARIANTS, progress: bool = True, command: str = "ltbench.reproduce.reproducibility.run_reproducibility", timeout: int = 3600) -> dict:
    from ltbench.reproduce.provenance import identity
    from ltbench.utils.io import atomic_write_json, atomic_write_text
    from ltbench.utils.provenance import git_sha

    info = read_run_info(run)
    committed = {r: read_cell(cell_path(run, r, 0)) for r in rows}
    now = identity(["table1_sources"])
    stale = [r for r, c in committed.items() if c["metadata"].get("sources") != now]
    if stale:
        raise ValueError(f"the committed cells of {stale} were computed by other sources than this checkout's: rerun the table first (a comparison across code changes measures the change, not the reproducibility)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="ltbench-repro-") as tmp:
        for name, env in variants.items():
            out = os.path.join(tmp, name.replace(" ", "-"))
            cmd = [sys.executable, "-m", "ltbench.reproduce", "table1", "--preset", info["preset"], "--rows", ",".join(rows), "--seeds", "1", "--out", out, "--quiet"]
            if progress:
                print(f"reproducibility: {name} ({' '.join(f'{k}={v}' for k, v in env.items()) or 'the environment as it is'})", file=sys.stderr, flush=True)
            r = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
            if r.returncode != 0:
                raise RuntimeError(f"the {name!r} rerun failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            diffs = {row: compare(committed[row], read_cell(cell_path(out, row, 0))) for row in rows}
            md = read_cell(cell_path(out, rows[0], 0))["metadata"]
            results[name] = {"env": env, "max_abs_diff": diffs, "device": md["device"], "cpu_isa": md.get("cpu_isa")}
    tol = {}
    for name, v in results.items():
        for row, d in v["max_abs_diff"].items():
            for k, x in d.items():
                key = (row, k)
                tol[key] = max(tol.get(key, 0.0), x)
    cmd_md = committed[rows[0]]["metadata"]
    res = {"run": run, "rows": list(rows), "seed": 0, "variants": results, "committed_device": cmd_md["device"], "committed_cpu_isa": cmd_md.get("cpu_isa"),
           "tolerance": {row: {k: tol[(row, k)] for (r, k) in tol if r == row} for row in rows},
           "measured": {"command": command, "git_sha": git_sha(), "sources": now}}
    atomic_write_json(os.path.join(run, "reproducibility.json"), res)
    atomic_write_text(os.path.join(run, "reproducibility.md"), render_md(res))
    return res


def render_md(res: dict) -> str:
    rows = res["rows"]
    keys = ["head_map", "tail_map", "fid", "kid", "label_fidelity"]
    lines = [
        "# How far a committed cell reproduces",
        "",
        f"`{res['measured']['command']}` at {res['measured']['git_sha'][:12]}: cells of seed 0 recomputed from scratch by the same code "
        f"(committed on {res['committed_device']}, kernels {res.get('committed_cpu_isa') or 'n/a'}), "
        "once per environment variant; the largest absolute difference from the committed cell per metric (AP: the largest over all classes).",
        "",
        "| variant | recomputed on | row | head mAP | tail mAP | max per-class AP | tail FID | KID | label fidelity |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in res["variants"].items():
        where = f"{v['device']}, kernels {v.get('cpu_isa') or 'n/a'}"  # the CPU too: the rerun's machine may not be the committed one's
        for row in rows:
            d = v["max_abs_diff"][row]
            ap = max((x for k, x in d.items() if k.startswith("AP ")), default=None)
            cells = [d.get(k) for k in keys[:2]] + [ap] + [d.get(k) for k in keys[2:]]
            lines.append(f"| {name} | {where} | `{row}` | " + " | ".join("–" if x is None else ("0" if x == 0 else f"{x:.2g}") for x in cells) + " |")
    worst = {row: max(res["tolerance"][row].values(), default=0.0) for row in rows}
    lines += ["", "Largest difference of any metric, per row: " + ", ".join(f"`{r}` {w:.2g}" for r, w in worst.items()) + ".", ""]
    return "\n".join(lines)


__all__ = ["ROWS", "VARIANTS", "compare", "run_reproducibility"]
