"""The one-page summary of ``benchmarks/gpu_check.sh``: what ran, what passed, and the figures
(the ops as fractions of the device's copy bandwidth, iterated learning's throughput and the
fused ops' end-to-end effect on it).

    python benchmarks/gpu_summary.py --work WORK --dest DEST --slug SLUG --mode gpu|cpu --smoke DIR --out FILE.md
"""

import argparse
import glob
import json
import os
import xml.etree.ElementTree as ET

GPU_TARGET = 0.80  # docs/kernels.md: on a GPU each op >= 80% of the measured copy bandwidth
PROJECTION_IL = 1500.0  # latent-epochs/s the paper preset's projection assumed for the IL fit on an H100


def _load(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _env(work: str) -> dict:
    out = {}
    p = os.path.join(work, "env.txt")
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.rstrip("\n").partition("=")
            if k:
                out[k] = v
    return out


def _steps(work: str) -> list:
    rows = []
    p = os.path.join(work, "steps.tsv")
    if os.path.exists(p):
        for line in open(p):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                rows.append(parts)
    return rows


def _junit(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tot = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    tot["failed_names"] = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
    return tot


def _smoke(folder: str) -> dict | None:
    if not folder or not os.path.isdir(folder):
        return None
    cells = sorted(glob.glob(os.path.join(folder, "cells", "*.json")))
    meta = {}
    for c in cells[:1]:
        with open(c) as f:
            meta = json.load(f).get("metadata", {})
    run = _load(os.path.join(folder, "run.json"))
    seconds = None
    if isinstance(run, dict):
        runs = run.get("runs") or run.get("invocations") or []
        if runs and isinstance(runs, list):
            seconds = runs[-1].get("seconds")
    return {"cells": len(cells), "table": os.path.exists(os.path.join(folder, "table1.md")), "device": meta.get("device"), "ops_backend": meta.get("ops_backend"), "seconds": seconds}


def _ops_table(data: dict, mode: str) -> list:
    lines = []
    benches = data.get("benchmarks", [])
    if not benches:
        return ["(no op benchmark results)"]
    info0 = benches[0]["extra_info"]
    lines.append(f"Measured in the same run on {info0.get('device_name') or info0.get('device')}: copy {info0.get('copy_GBps', 0):.3g} GB/s, triad {info0.get('triad_GBps', 0):.3g} GB/s (shape C={info0.get('shape', {}).get('C', '?')}, {info0.get('shape', {}).get('HW', '?')}x{info0.get('shape', {}).get('HW', '?')}; compulsory bytes / time).")
    lines.append("")
    lines.append("| op | B | implementation | time (ms) | GB/s | of copy bandwidth |" + (" target >= 80% |" if mode == "gpu" else ""))
    lines.append("|---|---|---|---|---|---|" + ("---|" if mode == "gpu" else ""))
    for b in sorted(benches, key=lambda b: (b["extra_info"].get("op", ""), b["extra_info"].get("B", 0), b["extra_info"].get("impl", ""))):
        e = b["extra_info"]
        secs = e.get("event_s") or b["stats"]["min"]
        ours = str(e.get("impl", "")).startswith("d-ltbench")
        row = f"| {e.get('op')} | {e.get('B')} | {e.get('impl')} | {secs * 1e3:.3f} | {e.get('GBps', 0):.3g} | {100 * e.get('frac_copy', 0):.0f}% |"
        if mode == "gpu":
            row += (" met |" if e.get("frac_copy", 0) >= GPU_TARGET else " **not met** |") if ours else " |"
        lines.append(row)
    return lines


def _il_lines(data: dict | None) -> list:
    if not data:
        return ["(no iterated-learning benchmark results)"]
    by = {}
    for b in data.get("benchmarks", []):
        e = b["extra_info"]
        key = "paper" if e.get("shape") == [4, 64, 64] else "phantom"
        by.setdefault(key, {})[e.get("backend")] = e
    lines = ["| latents | rows | backend on the device | two generations (s) | latent-epochs/s | peak GPU MiB |", "|---|---|---|---|---|---|"]
    for key in ("phantom", "paper"):
        for backend in ("fused", "reference"):
            e = by.get(key, {}).get(backend)
            if e:
                gpu = e.get("peak_gpu_mb")
                lines.append(f"| {key} {'x'.join(map(str, e.get('shape', [])))} | {e['rows']} | {e.get('ops_backend')} | {e['seconds_two_generations']:.1f} | {e.get('latent_epochs_per_s', 0):.0f} | {'' if gpu is None else f'{gpu:.0f}'} |")
    lines.append("")
    for key in ("phantom", "paper"):
        f, r = by.get(key, {}).get("fused"), by.get(key, {}).get("reference")
        if f and r:
            lines.append(f"- {key} shape: the fused ops make two generations {r['seconds_two_generations'] / f['seconds_two_generations']:.2f}x as fast as the references.")
    p = by.get("paper", {}).get("fused")
    if p:
        lines.append(f"- paper shape, fused: {p.get('latent_epochs_per_s', 0):.0f} latent-epochs/s measured on {p.get('device_name')}; the projection assumed {PROJECTION_IL:.0f} on an H100.")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--slug", required=True)
    ap.add_argument("--mode", choices=["gpu", "cpu"], required=True)
    ap.add_argument("--smoke", default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    env, steps = _env(a.work), _steps(a.work)
    total = next((s for s in steps if s[0] == "total"), None)
    failed = [s[0] for s in steps if s[0] != "total" and not s[1].startswith("skipped") and s[1] != "0"]
    lines = [f"# GPU check: {env.get('gpu', a.slug)}", ""]
    if a.mode == "cpu":
        lines += ["CPU mode (`gpu_check.sh --cpu`): the same steps at tiny sizes, no install or build; its figures say nothing about a GPU.", ""]
    lines.append(f"git {env.get('git', '?')}; torch {env.get('torch', '?')} (CUDA {env.get('cuda', '?')}); ops backend: cpu {env.get('ops_cpu', '?')}, cuda {env.get('ops_cuda', '?')}; {env.get('nvidia_smi', '')}".rstrip("; "))
    lines.append(f"**{'FAILED: ' + ', '.join(failed) if failed else 'all steps passed'}**" + (f" in {total[2]} s" if total else ""))
    lines += ["", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s[0]} | {'ok' if s[1] == '0' else ('failed (exit ' + s[1] + ')' if not s[1].startswith('skipped') else s[1])} | {s[2]} |" for s in steps if s[0] != "total"]
    j = _junit(os.path.join(a.work, "cuda-tests.xml"))
    lines += ["", "## Tests marked cuda", ""]
    if j:
        lines.append(f"{j['tests']} collected: {j['tests'] - j['failures'] - j['errors'] - j['skipped']} passed, {j['failures']} failed, {j['errors']} errors, {j['skipped']} skipped.")
        lines += [f"- failed: `{n}`" for n in j["failed_names"][:15]]
    else:
        lines.append("(no test report)")
    sm = _smoke(a.smoke)
    lines += ["", "## Smoke Table 1", ""]
    lines.append(f"{sm['cells']} cells, table rendered: {sm['table']}; cells record device `{sm['device']}`, ops backend `{sm['ops_backend']}`" + (f"; {sm['seconds']:.0f} s" if sm and sm.get("seconds") else "") + "." if sm else "(no smoke run)")
    ops_data = _load(os.path.join(a.dest, f"ops-{a.slug}.json"))
    lines += ["", "## Ops against the device's copy bandwidth", ""]
    lines += _ops_table(ops_data, a.mode) if ops_data else ["(no op benchmark results)"]
    lines += ["", "## Iterated learning", ""]
    lines += _il_lines(_load(os.path.join(a.dest, f"il-generation-{a.slug}.json")))
    lines += ["", f"Files: `ops-{a.slug}.json`, `il-generation-{a.slug}.json` (pytest-benchmark JSON with provenance), logs in `{os.path.relpath(a.work, a.dest) if a.work.startswith(a.dest) else a.work}`.", ""]
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
