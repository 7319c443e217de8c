"""``python -m ltbench.reproduce table1 [--preset smoke|default|paper] [--seeds N] [--out DIR]``."""

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
    p.add_argument("experiment", choices=["table1"], help="experiment to run")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="smoke (CI, minutes), default (CXR-Phantom-LT on CPU, 4 seeds, about 26 min on 2 cores), paper (MIMIC-CXR-LT + RoentGen, local paths, GPU)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds per cell (default: the preset's; default preset: 4)")
    p.add_argument("--rows", default=None, help=f"comma-separated rows (default: the preset's); available: {', '.join(ALL_ROWS)}")
    p.add_argument("--out", default=None, help="run folder (default: runs/table1-<preset>; the committed default run is results/table1-default)")
    p.add_argument("--data", default=None, help="paper preset: local MIMIC-CXR-LT folder")
    p.add_argument("--prior", default=None, help="diffusion prior folder (paper preset: RoentGen; default: the preset's)")
    p.add_argument("--oracle", default=None, help="oracle folder/file for label fidelity and domain FID (default: the preset's; phantom: the shipped one)")
    p.add_argument("--inception-weights", default=None, help="torch-fidelity Inception weights file (default: its cache; absent = 'n/a')")
    p.add_argument("--device", default=None, help="auto, cpu, cuda (default: auto)")
    p.add_argument("--shard", default=None, metavar="I/N", help="compute only the cells k with k %% N == I (N copies started by a scheduler, e.g. a Slurm array; they may share --out). Under torchrun the processes share the cells without it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def main(argv=None) -> int:
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.table1 import run_table1

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
    try:
        from ltbench.reproduce.table1 import parse_shard

        shard = parse_shard(args.shard) if args.shard else None
        summary = run_table1(preset, out, progress=not args.quiet, shard=shard)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"python -m ltbench.reproduce table1: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": out, **summary}, indent=2))
    if summary.get("rank", 0) == 0:
        with open(f"{out}/table1.md") as f:
            print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
