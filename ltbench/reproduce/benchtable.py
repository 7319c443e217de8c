"""Render the fused-op benchmark JSON (``results/benchmarks/ops-cpu.json``) as the README's
table, so the README's figures are generated, never typed:

    python -m ltbench.reproduce.benchtable results/benchmarks/ops-cpu.json --readme README.md

replaces the block between ``<!-- ops-table begin -->`` and ``<!-- ops-table end -->``.
``tests/test_results_fresh.py`` checks that the README's block is this rendering.
"""

import argparse
import json
import re
import sys

BEGIN, END = "<!-- ops-table begin -->", "<!-- ops-table end -->"
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


def replace_block(text: str, table: str) -> str:
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pat.search(text):
        raise ValueError(f"no {BEGIN} ... {END} block")
    return pat.sub(lambda _: f"{BEGIN}\n{table}\n{END}", text)


def readme_block(text: str) -> str | None:
    m = re.search(re.escape(BEGIN) + "\n(.*?)\n" + re.escape(END), text, re.S)
    return m.group(1) if m else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ltbench.reproduce.benchtable", description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="pytest-benchmark JSON of the ops benchmarks")
    p.add_argument("--readme", help="replace the ops table block of this file instead of printing")
    args = p.parse_args(argv)
    try:
        with open(args.json) as f:
            table = render(json.load(f))
        if args.readme:
            with open(args.readme) as f:
                text = f.read()
            from ltbench.utils.io import atomic_write_text

            atomic_write_text(args.readme, replace_block(text, table))
        else:
            print(table)
    except (OSError, ValueError, KeyError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
