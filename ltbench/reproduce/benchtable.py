"""Render committed result JSONs into the README and docs, so their figures are generated,
never typed:

    python -m ltbench.reproduce.benchtable --write

replaces each block between ``<!-- NAME begin -->`` and ``<!-- NAME end -->`` in whichever of
``DOC_FILES`` holds it (each block lives in exactly one): ``ops-table`` (ops-cpu.json),
``prior-cost`` (prior-cpu.json), ``il-generation`` (il-generation-cpu.json),
``streaming-memory`` (data-memory-cpu.json), ``rehearsal`` (paper-rehearsal/projection.json),
``localisation`` and ``cam-choices`` (diagnostics/localisation.json), ``refine-sweep``
(diagnostics/refine-sweep.json), ``table1`` (the README's view of table1-default/table1.json). ``tests/test_results_fresh.py`` checks that every block is
this rendering.
"""

import argparse
import json
import os
import re
import sys

from ltbench.reproduce.diagnostics_report import render_cam_choices as cam_choices_table
from ltbench.reproduce.diagnostics_report import render_refine_sweep_md, signed_interval

BEGIN, END = "<!-- ops-table begin -->", "<!-- ops-table end -->"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "results", "benchmarks")
DOC_FILES = ("README.md", "docs/usage.md", "docs/diagnostics.md", "docs/scale.md", "docs/development.md")
OPS = {
    "mask_fuse": ("a-formula", "b-where", "c-compiled", "d-ltbench", "d-ltbench-out"),
    "channel_sample": ("a-softmax-multinomial-onehot", "b-inverse-cdf", "c-compiled-inverse-cdf", "c-compiled-gumbel", "d-ltbench"),
    "imitation_bce": ("a-eager-autograd", "b-logsoftmax-rewrite", "c-compiled", "d-ltbench"),
}


def _ms(x):
    return f"{x * 1e3:.3g}" if x < 0.1 else f"{x * 1e3:.0f}"


def render(data: dict) -> str:
    rows = {}
    for b in data["benchmarks"]:
        e = b["extra_info"]
        rows[(e["op"], e["B"], e["impl"])] = (b["stats"]["min"], e)
    any_e = next(iter(rows.values()))[1]
    meta = data.get("ltbench", {})
    lines = [
        f"One run of `{meta.get('command', 'pytest benchmarks/ --benchmark-only -k ops')}` at {meta.get('git_sha', '?')[:12]} "
        f"({any_e['device']}, CPU kernels: {meta.get('cpu_isa')}; fp32, C=64, 64x64; min of 5 rounds; copy "
        f"{any_e['copy_GBps']} GB/s, triad {any_e['triad_GBps']} GB/s in the same run). Times in ms; "
        "GB/s counts the compulsory bytes (inputs read once, output written once, the same for "
        "every peer), `real GB/s` each implementation's own traffic.",
        "",
        "| op | B | implementation | ms | x vs ltbench | GB/s | real GB/s | of triad |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for op, impls in OPS.items():
        for B in sorted({k[1] for k in rows if k[0] == op}):
            ours = rows.get((op, B, "d-ltbench-out" if op == "mask_fuse" else "d-ltbench"))
            for impl in impls:
                if (op, B, impl) not in rows:
                    continue
                t, e = rows[(op, B, impl)]
                ratio = f"{t / ours[0]:.2f}" if ours else "-"
                lines.append(f"| {op} | {B} | {impl} | {_ms(t)} | {ratio} | {e['GBps']} | {e['real_GBps']} | {e['frac_triad']:.2f} |")
    lines += ["", "What each implementation does:", ""]
    seen = set()
    for op, impls in OPS.items():
        for impl in impls:
            note = next((e["does"] for (o, _, i), (_, e) in rows.items() if o == op and i == impl), None)
            if note and (op, impl) not in seen:
                seen.add((op, impl))
                lines.append(f"- {op} `{impl}`: {note}")
    lines.append("")
    lines.append("(mask_fuse's ratios are against `d-ltbench-out`, the call that writes into a preallocated output as `b-where` does.)")
    return "\n".join(lines)


def render_prior(data: dict) -> str:
    by = {b["extra_info"]["mode"]: b for b in data["benchmarks"]}
    meta = data.get("ltbench", {})
    parts = [f"{m} {by[m]['extra_info']['samples_per_s']:.1f} samples/s ({by[m]['extra_info']['unet_evals_per_sample']:.0f} UNet evaluations per sample)" for m in ("t2i@75", "refine@1", "refine@5") if m in by]
    n = next(iter(by.values()))["extra_info"]["samples"]
    return (f"Cost on the shipped prior (`{meta.get('command', 'pytest benchmarks/test_bench_prior.py --benchmark-only')}` at "
            f"{meta.get('git_sha', '?')[:12]}, CPU; {n} samples, decoding included): " + ", ".join(parts) + ".")


def render_il(data: dict) -> str:
    by = {b["extra_info"]["backend"]: b["extra_info"] for b in data["benchmarks"]}
    meta = data.get("ltbench", {})
    f, r = by.get("fused"), by.get("reference")
    text = (f"One IL generation at the default phantom size ({f['rows']:,} latents, `IL_PRESETS[\"phantom\"]`; "
            f"`{meta.get('command', 'pytest benchmarks/test_bench_method.py --benchmark-only')}` at {meta.get('git_sha', '?')[:12]}, "
            f"CPU kernels {meta.get('cpu_isa')}): two generations took {f['seconds_two_generations']:.1f} s with the fused ops")
    if r:
        text += f" vs {r['seconds_two_generations']:.1f} s with the references, in the same run (peak RSS {f['peak_rss_mb']:.0f} vs {r['peak_rss_mb']:.0f} MB)"
    return text + ": on a CPU the U-Nets dominate, the ops barely matter."


def render_memory(data: dict) -> str:
    e = next(b["extra_info"] for b in data["benchmarks"] if "peak_ratio" in b["extra_info"])
    meta = data.get("ltbench", {})
    return (f"Table 1's data, classifier and scoring stages on {e['n_small']:,} and {e['n_big']:,} files at {e['size']} px "
            f"(`{meta.get('command', 'pytest benchmarks/test_bench_data.py --benchmark-only')}` at {meta.get('git_sha', '?')[:12]}): "
            f"peak RSS {e['peak_small_mb']:.0f} MiB and {e['peak_big_mb']:.0f} MiB ({e['peak_ratio']:.2f}x for 4x the images), "
            f"{e['growth_kib_per_extra_image']:.1f} KiB more per extra image against {e['image_kib']:.0f} KiB to hold one.")


def render_rehearsal(p: dict) -> str:
    m = p["measured"]
    st = m["stage_seconds"]
    gen = {r: sum(v["generate_seconds"]) for r, v in m["rows"].items()}
    one, eight = p["projection"]["1xH100"], p["projection"]["8xH100"]
    hours = p["paper_stage_hours_1gpu"]
    return (
        f"The committed rehearsal (`results/paper-rehearsal`, commit {m['git_sha'][:12]}, one process on the 2-core machine): "
        f"{(m['wall_seconds'] + st.get('inputs_s', 0)) / 60:.1f} min including {st.get('inputs_s', 0) / 60:.1f} min to make its inputs, "
        f"peak RSS {m['peak_rss_mb'] / 1024:.1f} GiB; {m['split_sizes']['train']:,} train, {m['split_sizes']['test']:,} test images at {m['split_sizes']['image_px']} px; "
        f"generation {st.get('generate_s', 0):.0f} s (t2i {gen.get('t2i', 0):.0f} s, fsa-il@5 {gen.get('fsa-il@5', 0):.0f} s), classifiers {st.get('classifier_s', 0):.0f} s, "
        f"encoding {st.get('encode_s', 0):.0f} s, IL fit {st.get('il_fit_s', 0):.0f} s. "
        f"Projected for the `paper` preset (`projection.md`, assumptions stated there): {one['total_hours']} h on one H100 "
        f"(generation {hours['generate']} h, of which text-to-image at 75 steps is most; classifiers {hours['classifier']} h), "
        f"{eight['total_hours']} h on eight (shared stages {eight['shared_hours']} h, then the 24 cells; the longest cell bounds it)."
    ) + _torchrun_rehearsal()


def _torchrun_rehearsal(results: str = RESULTS) -> str:
    """The torchrun copy of the rehearsal beside the one-process run, when both are committed."""
    import glob

    one, two = (os.path.join(results, "..", d) for d in ("paper-rehearsal", "paper-rehearsal-torchrun2"))
    if not os.path.isfile(os.path.join(two, "run.json")):
        return ""
    with open(os.path.join(two, "run.json")) as f:
        inv = json.load(f)["invocations"]
    diffs, other_config = [], 0
    for path in sorted(glob.glob(os.path.join(two, "cells", "*.json"))):
        other = os.path.join(one, "cells", os.path.basename(path))
        if os.path.isfile(other):
            with open(path) as f, open(other) as g:
                a, b = json.load(f), json.load(g)
            if a["config"] != b["config"]:  # made by another version of the preset: not comparable
                other_config += 1
                continue
            a, b = a["results"], b["results"]
            diffs.append(max(abs(a["head_map"] - b["head_map"]), abs(a["tail_map"] - b["tail_map"])))
    world = max(i["world"] for i in inv)
    text = (
        f" Under torchrun with {world} processes (`results/paper-rehearsal-torchrun2`, commit {inv[0]['metadata']['git_sha'][:12]}, the same inputs, one thread per process): "
        f"{max(i['seconds'] for i in inv) / 60:.1f} min, the ranks ran {', '.join(str(len(i['cells_run'])) for i in inv)} cells"
    )
    if diffs:
        text += (
            f"; the mAPs of its {len(diffs)} cells with the one-process run's config differ from the two-thread single process's by up to {max(diffs):.3f}: at 224 px the convolutions' "
            f"float reductions depend on the thread count and training amplifies that (a one-process run at one thread gave the "
            f"torchrun `none` cell exactly), so compare cells at one thread count"
        )
    if other_config:
        text += f"; {other_config} of its cells were made with an earlier version of the preset (the method's options changed since) and are not compared"
    return text + "."


def render_localisation(res: dict) -> str:
    rows = [f"| {c} | {v['images']} | {v['finding_in_ms']:.2f} (random {v['random_finding_in_ms']:.2f}; {signed_interval(v['finding_in_ms_minus_random'])}) | {v['ms_on_finding']:.2f} (random {v['random_ms_on_finding']:.2f}; {signed_interval(v['ms_on_finding_minus_random'])}) |" for c, v in res["per_class"].items()]
    return "\n".join(
        [f"`{res['measured']['command']}` at {res['measured']['git_sha'][:12]} (M^S = CAM > {res['tau_h']}, on the train images of each tail class):", "",
         "| tail class | images | share of the finding inside M^S (random mask; difference [95% CI over images]) | share of M^S on the finding (random mask; difference [95% CI]) |", "|---|---|---|---|", *rows]
    )


def render_cam_choices(res: dict) -> str:
    return "\n".join(
        [f"`{res['measured']['command']}` at {res['measured']['git_sha'][:12]}, every CAM choice on the same IL fit (M^S = CAM > {res['tau_h']}, the train images of each tail class). "
         "Per tail class: how much more of the finding lies inside M^S than for a random mask of M^S's area; how much more of M^S lies on the finding (each with a 95% interval over images; M^S's area as a share of the grid); "
         "score = the mean of the two over the tail classes:", "", cam_choices_table(res)]
    )


def render_refine_sweep(res: dict) -> str:
    return render_refine_sweep_md(res).split("\n", 2)[2].strip()  # without the title


def render_table1(res: dict) -> str:
    from ltbench.reproduce.report import compact_table

    return compact_table(res["rows"])


BLOCKS = {
    "table1": (os.path.join("..", "table1-default", "table1.json"), render_table1),
    "ops-table": ("ops-cpu.json", render),
    "prior-cost": ("prior-cpu.json", render_prior),
    "il-generation": ("il-generation-cpu.json", render_il),
    "streaming-memory": ("data-memory-cpu.json", render_memory),
    "rehearsal": (os.path.join("..", "paper-rehearsal", "projection.json"), render_rehearsal),
    "localisation": (os.path.join("..", "diagnostics", "localisation.json"), render_localisation),
    "cam-choices": (os.path.join("..", "diagnostics", "localisation.json"), render_cam_choices),
    "refine-sweep": (os.path.join("..", "diagnostics", "refine-sweep.json"), render_refine_sweep),
}


def _marks(name: str) -> tuple[str, str]:
    return f"<!-- {name} begin -->", f"<!-- {name} end -->"


def rendered_blocks(results: str = RESULTS, only=None) -> dict:
    out = {}
    for name, (fname, fn) in BLOCKS.items():
        if only and name not in only:
            continue
        with open(os.path.join(results, fname)) as f:
            out[name] = fn(json.load(f))
    return out


def replace_block(text: str, table: str, name: str = "ops-table") -> str:
    begin, end = _marks(name)
    pat = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise ValueError(f"no {begin} ... {end} block")
    return pat.sub(lambda _: f"{begin}\n{table}\n{end}", text)


def readme_block(text: str, name: str = "ops-table") -> str | None:
    begin, end = _marks(name)
    m = re.search(re.escape(begin) + "\n(.*?)\n" + re.escape(end), text, re.S)
    return m.group(1) if m else None


def block_files(root: str = ROOT) -> dict:
    """{block name: the one file of ``DOC_FILES`` that holds it}; a block in no file or in two
    is an error naming it."""
    where: dict = {}
    for rel in DOC_FILES:
        with open(os.path.join(root, rel)) as f:
            text = f.read()
        for name in BLOCKS:
            if readme_block(text, name) is not None:
                where.setdefault(name, []).append(rel)
    bad = {n: where.get(n, []) for n in BLOCKS if len(where.get(n, [])) != 1}
    if bad:
        raise ValueError(f"every generated block must live in exactly one of {DOC_FILES}: {bad}")
    return {n: v[0] for n, v in where.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ltbench.reproduce.benchtable", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=RESULTS, help="folder of the benchmark JSONs (default: the repository's results/benchmarks)")
    p.add_argument("--write", action="store_true", help="replace the blocks in the README and docs instead of printing them")
    p.add_argument("--only", default=None, help=f"comma-separated blocks to render (default: all of {', '.join(BLOCKS)})")
    args = p.parse_args(argv)
    try:
        only = [b.strip() for b in args.only.split(",")] if args.only else None
        unknown = [b for b in only or [] if b not in BLOCKS]
        if unknown:
            raise ValueError(f"--only: unknown blocks {unknown}; choose from {list(BLOCKS)}")
        blocks = rendered_blocks(args.results, only)
        if args.write:
            from ltbench.utils.io import atomic_write_text

            files = block_files()
            for rel in sorted(set(files.values())):
                path = os.path.join(ROOT, rel)
                with open(path) as f:
                    text = f.read()
                for name, table in blocks.items():
                    if files[name] == rel:
                        text = replace_block(text, table, name)
                atomic_write_text(path, text)
        else:
            print("\n\n".join(blocks.values()))
    except (OSError, ValueError, KeyError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
