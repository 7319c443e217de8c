"""``python -m ltbench.reproduce table1 [--preset smoke|default|paper|paper-rehearsal] [--seeds N] [--out DIR]``;
``python -m ltbench.reproduce project --run DIR`` (the paper preset's time on H100s, from a rehearsal)."""

import argparse
import dataclasses
import json
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    from ltbench.reproduce.presets import ALL_ROWS, PRESETS

    p = argparse.ArgumentParser(
        prog="python -m ltbench.reproduce",
        description="Reproduce the paper's experiments. Runs the missing cells (row x seed), reuses finished ones (a killed run resumes), then renders table1.md, table1.csv and figures from the cell JSONs.",
    )
    p.add_argument("experiment", choices=["table1", "project", "diagnostics", "refine-sweep"], help="table1: run the experiment; project: project the paper preset's time on H100s from a paper-rehearsal run (--run); diagnostics: the method against the phantom's ground truth on a table1 run's IL fit, every CAM choice included (--run, --to); refine-sweep: fsa-il's refinement @k on one set of fusions, k in --ks, tail and sdedit modes, eval and the authors' train-mode decoder, the paper-vs-code fusion choices, with paired bootstrap intervals (--run, --to, --boot)")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="smoke (CI, minutes), default (CXR-Phantom-LT on CPU, 3 seeds, 13-29 min on 2 cores depending on the CPU), paper (MIMIC-CXR-LT + RoentGen, local paths, GPU), paper-rehearsal (the paper's code path and shapes at a 2-core budget; makes its inputs under OUT/inputs)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds per cell (default: the preset's; default preset: 3)")
    p.add_argument("--rows", default=None, help=f"comma-separated rows (default: the preset's); available: {', '.join(ALL_ROWS)}")
    p.add_argument("--out", default=None, help="run folder (default: runs/table1-<preset>; the committed default run is results/table1-default)")
    p.add_argument("--data", default=None, help="paper preset: local MIMIC-CXR-LT folder")
    p.add_argument("--prior", default=None, help="diffusion prior folder (paper preset: RoentGen; default: the preset's)")
    p.add_argument("--oracle", default=None, help="oracle folder/file for label fidelity and domain FID (default: the preset's; phantom: the shipped one)")
    p.add_argument("--inception-weights", default=None, help="torch-fidelity Inception weights file (default: its cache; absent = 'n/a')")
    p.add_argument("--device", default=None, help="auto, cpu, cuda (default: auto)")
    p.add_argument("--shard", default=None, metavar="I/N", help="compute only the cells k with k %% N == I (N copies started by a scheduler, e.g. a Slurm array; they may share --out). Under torchrun the processes share the cells without it")
    p.add_argument("--run", default=None, help="project: the paper-rehearsal run folder (default: results/paper-rehearsal); diagnostics: a table1 run on the phantom (default: results/table1-default)")
    p.add_argument("--to", default="results/diagnostics", help="diagnostics, refine-sweep: where to write (default: results/diagnostics)")
    p.add_argument("--ks", default="0,1,5,15,30", help="refine-sweep: refinement steps k to measure, comma-separated (default: 0,1,5,15,30)")
    p.add_argument("--boot", type=int, default=1000, help="refine-sweep: paired bootstrap replicates for the intervals (default: 1000; at least 100)")
    p.add_argument("--assume", action="append", default=[], metavar="KEY=VALUE", help="project: override an assumed throughput or split size (repeatable; keys in projection.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def main(argv=None) -> int:
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.table1 import run_table1

    args = build_parser().parse_args(argv)
    args.command_line = "python -m ltbench.reproduce " + " ".join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.experiment == "project":
        args.run = args.run or "results/paper-rehearsal"
        return _project(args)
    if args.experiment in ("diagnostics", "refine-sweep"):
        return _diagnostics(args)
    preset = PRESETS[args.preset]
    changes = {}
    if args.seeds is not None:
        if args.seeds < 1:
            print("python -m ltbench.reproduce: error: --seeds must be >= 1", file=sys.stderr)
            return 2
        changes["seeds"] = args.seeds
    if args.rows is not None:
        changes["rows"] = tuple(r.strip() for r in args.rows.split(",") if r.strip())
        if not changes["rows"]:
            print(f"python -m ltbench.reproduce: error: --rows {args.rows!r} names no row", file=sys.stderr)
            return 2
    for opt, field in (("data", "data_root"), ("prior", "prior"), ("oracle", "oracle"), ("inception_weights", "inception_weights"), ("device", "device")):
        if getattr(args, opt) is not None:
            changes[field] = getattr(args, opt)
    preset = dataclasses.replace(preset, **changes)
    out = args.out or f"runs/table1-{preset.name}"
    timings = {}
    try:
        from ltbench.reproduce.table1 import parse_shard

        if preset.extra.get("rehearsal") and (not preset.data_root or not preset.prior):
            import os
            import time

            from ltbench.reproduce.rehearsal import prepare_inputs

            t = time.perf_counter()
            data, prior = prepare_inputs(out, progress=not args.quiet and int(os.environ.get("LOCAL_RANK", 0)) == 0)
            preset = dataclasses.replace(preset, data_root=preset.data_root or data, prior=preset.prior or prior)
            timings["inputs_s"] = round(time.perf_counter() - t, 2)  # recorded in run.json

        shard = parse_shard(args.shard) if args.shard else None
        summary = run_table1(preset, out, progress=not args.quiet, shard=shard, timings=timings)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"python -m ltbench.reproduce table1: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": out, **summary}, indent=2))
    if summary.get("rank", 0) == 0:
        with open(f"{out}/table1.md") as f:
            print(f.read())
    return 0


def _diagnostics(args) -> int:
    import os

    from ltbench.reproduce.diagnostics import run_diagnostics

    run, what = args.run or "results/table1-default", args.experiment
    if not os.path.isfile(os.path.join(run, "run.json")):
        print(f"python -m ltbench.reproduce {what}: error: {run} holds no run.json; run `python -m ltbench.reproduce table1 --out {run}` first", file=sys.stderr)
        return 2
    try:
        if what == "diagnostics":
            from ltbench.reproduce.diagnostics import render_md

            res = run_diagnostics(run, args.to, progress=not args.quiet, command=args.command_line)
        else:
            from ltbench.reproduce.refine_sweep import render_md, run_refine_sweep

            try:
                ks = tuple(sorted({int(k) for k in args.ks.split(",") if k.strip()}))
            except ValueError:
                raise ValueError(f"--ks {args.ks!r}: expected comma-separated integers") from None
            if not ks or ks[0] < 0 or 0 not in ks:
                raise ValueError(f"--ks {args.ks!r}: non-negative steps, 0 (the unrefined fusions) among them")
            res = run_refine_sweep(run, args.to, ks=ks, progress=not args.quiet, command=args.command_line, n_boot=args.boot)
    except (OSError, ValueError, KeyError) as exc:
        print(f"python -m ltbench.reproduce {what}: error: {exc}", file=sys.stderr)
        return 2
    print(render_md(res))
    return 0


def _project(args) -> int:
    import os

    from ltbench.reproduce.projection import ASSUMED_H100, PAPER_SPLITS, main as project

    assume = {}
    for item in args.assume:
        key, sep, value = item.partition("=")
        if not sep or key not in {**ASSUMED_H100, **PAPER_SPLITS}:
            print(f"python -m ltbench.reproduce project: error: --assume {item!r}: expected KEY=VALUE with KEY one of {sorted({**ASSUMED_H100, **PAPER_SPLITS})}", file=sys.stderr)
            return 2
        try:
            assume[key] = float(value)
        except ValueError:
            print(f"python -m ltbench.reproduce project: error: --assume {item!r}: {value!r} is not a number", file=sys.stderr)
            return 2
    if not os.path.isfile(os.path.join(args.run, "run.json")):
        print(f"python -m ltbench.reproduce project: error: {args.run} holds no run.json; run `python -m ltbench.reproduce table1 --preset paper-rehearsal --out {args.run}` first", file=sys.stderr)
        return 2
    try:
        p = project(args.run, assume)
    except (OSError, ValueError, KeyError) as exc:
        print(f"python -m ltbench.reproduce project: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(p["projection"], indent=2))
    print(f"wrote {os.path.join(args.run, 'projection.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
