"""``python -m ltbench.reproduce EXPERIMENT [options]``: the paper's experiments, one subcommand
each, with its own options (``--help`` on each):

* ``table1``: run the missing (row, seed) cells, reuse finished ones (a killed run resumes),
  render ``table1.md``, ``table1.csv`` and figures from the cell JSONs;
* ``diagnostics``: the method against the phantom's ground truth on a table1 run's IL fit;
* ``refine-sweep``: fsa-il's refinement @k on one set of fusions, with paired intervals;
* ``calibrate``: choose the downstream classifier on the val split;
* ``reproducibility``: how far committed cells reproduce (instruction set, thread count);
* ``project``: the paper preset's time on H100s, from a paper-rehearsal run.

Parsing and dispatch only: each subcommand calls one function of its experiment module."""

import argparse
import dataclasses
import json
import os
import sys

from ltbench.utils.cli import parent, run_command, setup_logging

PROG = "python -m ltbench.reproduce"


def _table1(args) -> int:
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.table1 import parse_shard, run_table1

    changes = {}
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError("--seeds must be >= 1")
        changes["seeds"] = args.seeds
    if args.rows is not None:
        changes["rows"] = tuple(r.strip() for r in args.rows.split(",") if r.strip())
        if not changes["rows"]:
            raise ValueError(f"--rows {args.rows!r} names no row")
    for opt, field in (("data", "data_root"), ("prior", "prior"), ("oracle", "oracle"), ("inception_weights", "inception_weights"), ("device", "device"), ("dataset", "dataset"), ("tail_below", "tail_below")):
        if getattr(args, opt) is not None:
            changes[field] = getattr(args, opt)
    if args.tail_classes is not None:
        changes["tail_classes"] = tuple(c.strip() for c in args.tail_classes.split(",") if c.strip())
    preset = dataclasses.replace(PRESETS[args.preset], **changes)
    out = args.out or f"runs/table1-{preset.name}"
    shard = parse_shard(args.shard) if args.shard else None
    timings = {}
    if preset.extra.get("rehearsal") and (not preset.data_root or not preset.prior):
        import time

        from ltbench.reproduce.rehearsal import prepare_inputs

        t = time.perf_counter()
        data, prior = prepare_inputs(out, progress=not args.quiet and int(os.environ.get("LOCAL_RANK", 0)) == 0)
        preset = dataclasses.replace(preset, data_root=preset.data_root or data, prior=preset.prior or prior)
        timings["inputs_s"] = round(time.perf_counter() - t, 2)  # recorded in run.json
    summary = run_table1(preset, out, progress=not args.quiet, shard=shard, timings=timings)
    print(json.dumps({"out": out, **summary}, indent=2))
    if summary.get("rank", 0) == 0:
        with open(os.path.join(out, "table1.md")) as f:
            print(f.read())
    return 0


def _diagnostics(args) -> int:
    from ltbench.reproduce.diagnostics import run_diagnostics
    from ltbench.reproduce.diagnostics_report import render_localisation_md

    print(render_localisation_md(run_diagnostics(args.run, args.to, progress=not args.quiet, command=args.command_line)))
    return 0


def _refine_sweep(args) -> int:
    from ltbench.reproduce.diagnostics_report import render_refine_sweep_md
    from ltbench.reproduce.refine_sweep import run_refine_sweep

    try:
        ks = tuple(sorted({int(k) for k in args.ks.split(",") if k.strip()}))
    except ValueError:
        raise ValueError(f"--ks {args.ks!r}: expected comma-separated integers") from None
    if not ks or ks[0] < 0 or 0 not in ks:
        raise ValueError(f"--ks {args.ks!r}: non-negative steps, 0 (the unrefined fusions) among them")
    print(render_refine_sweep_md(run_refine_sweep(args.run, args.to, ks=ks, progress=not args.quiet, command=args.command_line, n_boot=args.boot)))
    return 0


def _calibrate(args) -> int:
    from ltbench.reproduce.calibrate import SEEDS, run_calibrate, render_md
    from ltbench.reproduce.presets import PRESETS

    res = run_calibrate(PRESETS[args.preset], args.to, args.work or f"runs/calibrate-{args.preset}", seeds=args.seeds or SEEDS, progress=not args.quiet, command=args.command_line)
    print(render_md(res))
    return 0


def _reproducibility(args) -> int:
    from ltbench.reproduce.reproducibility import render_md, run_reproducibility

    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    if not rows:
        raise ValueError(f"--rows {args.rows!r} names no row")
    print(render_md(run_reproducibility(args.run, rows=rows, progress=not args.quiet, command=args.command_line)))
    return 0


def _project(args) -> int:
    from ltbench.reproduce.projection import ASSUMED_H100, PAPER_SPLITS, main as project

    assume = {}
    for item in args.assume:
        key, sep, value = item.partition("=")
        if not sep or key not in {**ASSUMED_H100, **PAPER_SPLITS}:
            raise ValueError(f"--assume {item!r}: expected KEY=VALUE with KEY one of {sorted({**ASSUMED_H100, **PAPER_SPLITS})}")
        try:
            assume[key] = float(value)
        except ValueError:
            raise ValueError(f"--assume {item!r}: {value!r} is not a number") from None
    p = project(args.run, assume)
    print(json.dumps(p["projection"], indent=2))
    print(f"wrote {os.path.join(args.run, 'projection.md')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ltbench.data.presets import DATASETS
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.rows import ALL_ROWS

    common = parent("quiet", "verbose")
    p = argparse.ArgumentParser(prog=PROG, description="Reproduce the paper's experiments (one subcommand each; `--help` on each for its options).")
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)

    t = sub.add_parser("table1", parents=[common], help="run Table 1: every (row, seed) cell not on disk yet, then render the table", description="Run the missing cells (row x seed), reuse finished ones (a killed run resumes), then render table1.md, table1.csv and figures from the cell JSONs.")
    t.add_argument("--preset", default="default", choices=sorted(PRESETS), help="smoke (CI, minutes), default (CXR-Phantom-LT on CPU), paper (MIMIC-CXR-LT + RoentGen, local paths, GPU), paper-rehearsal (the paper's code path and shapes at a 2-core budget; makes its inputs under OUT/inputs) (default: default)")
    t.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the preset's)")
    t.add_argument("--rows", default=None, help=f"comma-separated rows (default: the preset's); available: {', '.join(ALL_ROWS)}")
    t.add_argument("--out", default=None, help="run folder (default: runs/table1-<preset>; the committed default run is results/table1-default)")
    t.add_argument("--data", default=None, help="dataset folder (paper preset: the local MIMIC-CXR-LT folder)")
    t.add_argument("--prior", default=None, help="diffusion prior folder (paper preset: RoentGen; default: the preset's)")
    t.add_argument("--oracle", default=None, help="oracle folder/file for label fidelity and domain FID (default: the preset's; phantom: the shipped one)")
    t.add_argument("--inception-weights", default=None, help="torch-fidelity Inception weights file (default: its cache; absent = 'n/a')")
    t.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the preset's, auto)")
    t.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="registered dataset read from --data (default: the preset's: the phantom, or mimic-cxr-lt-paper for paper)")
    t.add_argument("--tail-classes", default=None, metavar="A,B,...", help="the tail classes by name (default: the dataset's; the paper's five); the head is the rest")
    t.add_argument("--tail-below", type=int, default=None, metavar="N", help="the tail = classes with fewer than N train positives (e.g. 1000 on CXR-LT 2024); recorded in every cell")
    t.add_argument("--shard", default=None, metavar="I/N", help="compute only the cells k with k %% N == I (N copies started by a scheduler, e.g. a Slurm array; they may share --out). Under torchrun the processes share the cells without it")
    t.set_defaults(func=_table1)

    d = sub.add_parser("diagnostics", parents=[common], help="the method against the phantom's ground truth, every CAM choice included", description="Localisation of M^S against the phantom's ground-truth masks on a table1 run's IL fit, and every CAM choice on the same fit; writes TO/localisation.{json,md,png}.")
    d.add_argument("--run", default="results/table1-default", help="a table1 run on the phantom (default: results/table1-default)")
    d.add_argument("--to", default="results/diagnostics", help="where to write (default: results/diagnostics)")
    d.set_defaults(func=_diagnostics)

    r = sub.add_parser("refine-sweep", parents=[common], help="fsa-il's refinement @k on one set of fusions, with paired bootstrap intervals", description="One set of fusions refined with every k in --ks, tail and sdedit modes, eval and the authors' train-mode decoder, and the paper-vs-code fusion choices, with paired bootstrap intervals; writes TO/refine-sweep.{json,md,png}.")
    r.add_argument("--run", default="results/table1-default", help="a table1 run on the phantom (default: results/table1-default)")
    r.add_argument("--to", default="results/diagnostics", help="where to write (default: results/diagnostics)")
    r.add_argument("--ks", default="0,1,5,15,30", help="refinement steps k to measure, comma-separated, 0 among them (default: 0,1,5,15,30)")
    r.add_argument("--boot", type=int, default=1000, help="paired bootstrap replicates for the intervals, at least 100 (default: 1000)")
    r.set_defaults(func=_refine_sweep)

    c = sub.add_parser("calibrate", parents=[common], help="choose the downstream classifier on the val split (room to help on every tail class)", description="Train every candidate classifier (input size, DenseNet width, warm-start length) as the none row trains, on the train split, and score it on the val split (never the test split): per tail class its AP against chance and the oracle's ceiling; the cheapest (training FLOPs of one seed) with room to help on every tail class is chosen, else the one with room on the most. Each candidate is cached under WORK/calibrate as it finishes: a killed calibration resumes. Writes TO/classifier.{json,md}.")
    c.add_argument("--preset", default="default", choices=sorted(PRESETS), help="the preset whose data and schedule are used (default: default)")
    c.add_argument("--seeds", type=int, default=None, help="seeds per candidate (default: 3)")
    c.add_argument("--to", default="results/calibration", help="where to write (default: results/calibration)")
    c.add_argument("--work", default=None, help="cache of the data stage (default: runs/calibrate-<preset>)")
    c.set_defaults(func=_calibrate)

    q = sub.add_parser("reproducibility", parents=[common], help="how far committed cells reproduce with another instruction set and thread count", description="Recompute some committed cells (seed 0) from scratch in the environment as it is, with the CPU kernels' baseline instruction set (LTBENCH_CPU_ISA=base) and with one thread; writes RUN/reproducibility.{json,md} with the largest difference per metric.")
    q.add_argument("--run", default="results/table1-default", help="a committed table1 run (default: results/table1-default)")
    q.add_argument("--rows", default="none,smote,fsa-il@0", help="rows to recompute (default: none,smote,fsa-il@0: no fit, a seeded draw, a trained fit)")
    q.set_defaults(func=_reproducibility)

    j = sub.add_parser("project", parents=[common], help="the paper preset's time on H100s, from a paper-rehearsal run", description="Project the paper preset's wall time on one and eight H100s from the work and time a paper-rehearsal run measured; writes RUN/projection.{json,md}.")
    j.add_argument("--run", default="results/paper-rehearsal", help="the paper-rehearsal run folder (default: results/paper-rehearsal)")
    j.add_argument("--assume", action="append", default=[], metavar="KEY=VALUE", help="override an assumed throughput or split size (repeatable; keys in projection.md)")
    j.set_defaults(func=_project)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = f"{PROG} " + " ".join(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    return run_command(f"{PROG} {args.experiment}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
