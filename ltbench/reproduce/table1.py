"""``python -m ltbench.reproduce table1``: every row of Table 1, every seed, one JSON per cell.

The runner: it checks the inputs before any expensive stage, claims the missing (row, seed)
cells (a lock file per cell, so torchrun ranks and ``--shard`` copies share a run folder),
evaluates each (``ltbench.reproduce.cells``) on the shared stages (``ltbench.reproduce.stages``),
writes it atomically, draws its sample grid, records the invocation in ``run.json`` and renders
the table from the cells on disk (``ltbench.reproduce.report``). Cells already on disk with the
same config are reused; a killed run resumes."""

import dataclasses
import logging
import os
import time

import torch

from ltbench.reproduce.cells import evaluate_cell
from ltbench.reproduce.figures import sample_grid
from ltbench.reproduce.presets import Table1Preset
from ltbench.reproduce.report import render
from ltbench.reproduce.rows import parse_row
from ltbench.reproduce.schema import cell_key, cell_path, check_config, load_cells, read_cell, read_run_info
from ltbench.reproduce.stages import Context
from ltbench.utils.io import atomic_write_json, clean_stale_tmp
from ltbench.utils.lock import FileLock
from ltbench.utils.provenance import metadata

log = logging.getLogger("ltbench.reproduce")


def check_inputs(preset: Table1Preset) -> None:
    """Refuse early, naming every missing input (the ``paper`` preset's local paths)."""
    missing = []
    if preset.data_root is not None and preset.dataset == "phantom" and not os.path.isdir(preset.data_root):
        missing.append(f"--data {preset.data_root}: no such folder")
    if preset.dataset != "phantom":
        if not preset.data_root:
            missing.append("--data DIR: the local MIMIC-CXR-LT folder (images + labels CSV; credentialed, PhysioNet)")
        elif not os.path.isdir(preset.data_root):
            missing.append(f"--data {preset.data_root}: no such folder")
        if not preset.prior:
            missing.append("--prior DIR: the local RoentGen diffusers folder (model_index.json, vae/, unet/, text_encoder/, tokenizer/, scheduler/)")
        elif preset.prior != "phantom" and not os.path.isfile(os.path.join(preset.prior, "model_index.json")):
            missing.append(f"--prior {preset.prior}: not a diffusers pipeline folder (no model_index.json)")
    if preset.inception_weights and not os.path.isfile(preset.inception_weights):
        missing.append(f"--inception-weights {preset.inception_weights}: no such file")
    if missing:
        raise FileNotFoundError(f"the {preset.name!r} preset cannot run; missing:\n  - " + "\n  - ".join(missing))
    if not preset.rows:
        raise ValueError("no Table 1 row to run")
    # weights files a metric will read: refused now (one line, no code run), not after the stages
    from ltbench.eval.fid import INCEPTION_EXTRACTOR, XRV_EXTRACTOR, check_weights, inception_weights, xrv_weights

    check_weights(INCEPTION_EXTRACTOR, inception_weights(preset.inception_weights))
    check_weights(XRV_EXTRACTOR, xrv_weights())
    if preset.oracle:
        from ltbench.eval.oracle import load_oracle

        load_oracle(preset.oracle)
    for row in preset.rows:
        spec = parse_row(row)
        if spec.get("k", 0) > preset.fusion.refine_schedule:
            raise ValueError(f"row {row}: {spec['k']} refinement steps exceed the {preset.fusion.refine_schedule}-step schedule they are taken from")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def _claim_and_run(ctx: Context, todo: list, bar) -> tuple[list, list]:
    """Work through ``todo`` (row, seed) cells, claiming each with a lock file; a cell another
    process is computing is come back to. Returns (cells run here, cells others finished)."""
    ran, by_others, pending = [], [], list(todo)
    while pending:
        progressed = False
        for r, s in list(pending):
            key, path = cell_key(r, s), cell_path(ctx.out, r, s)
            if os.path.exists(path):  # computed meanwhile by a process sharing --out
                pending.remove((r, s))
                by_others.append(key)
                bar.update(1)
                progressed = True
                continue
            lock = FileLock(path + ".lock")
            if not lock.try_acquire():  # another process is computing this cell
                continue
            try:
                if os.path.exists(path):
                    continue
                bar.set_postfix_str(key)
                t = time.perf_counter()
                cell, (images, targets) = evaluate_cell(ctx, r, s)
                res = cell["results"]
                res["cell_seconds"] = round(time.perf_counter() - t, 2)
                for stage, v in (("generate_s", res["cost"]["generate_seconds"]), ("metrics_s", res["metrics_seconds"]), ("classifier_s", res["classifier_seconds"])):
                    ctx.timings[stage] = round(ctx.timings.get(stage, 0.0) + v, 2)  # summed over this invocation's cells
                atomic_write_json(path, cell)
                if s == 0 and len(images):
                    sample_grid(ctx.fid_reference(s), images, targets, ctx.classes, ctx.tail, os.path.join(ctx.out, "figures", f"samples-{r}.png"), title=f"{r}: real (left) vs generated (right)")
                log.info("cell %s done in %.0fs", key, time.perf_counter() - t)
                ran.append(key)
            finally:
                lock.release()
            pending.remove((r, s))
            bar.update(1)
            progressed = True
        if pending and not progressed:
            time.sleep(2.0)  # every remaining cell is being computed by another process
    return ran, by_others


def run_table1(preset: Table1Preset, out: str, progress: bool = True, shard: tuple[int, int] | None = None, timings: dict | None = None) -> dict:
    """Run the missing cells of ``preset`` into ``out`` and render the table. Returns
    {"ran": [...], "reused": [...], "by_others": [...], "seconds": float, "rank", "world", "shard"}.

    Scale-out: under ``torchrun --nproc_per_node=N`` every process works through the cells and
    claims each with a lock file, so the cells are spread over the processes as they free up;
    ``shard=(i, n)`` (``--shard i/n``, for n copies started by a scheduler: a Slurm array,
    several nodes) takes the cells k with k % n == i. Either way the shared stages are
    computed once in ``out/work`` under a lock and reused by all, every cell is computed once,
    and each process re-renders the table from whatever cells are on disk when it finishes
    (the last one renders the complete table)."""
    from tqdm.auto import tqdm

    from ltbench.utils.dist import rank_world

    rank, world = rank_world()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world > 1 and torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())  # "cuda" is this rank's GPU
    progress = progress and local_rank == 0
    check_inputs(preset)
    t0 = time.perf_counter()
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder")
    os.makedirs(os.path.join(out, "cells"), exist_ok=True)
    clean_stale_tmp(out)  # temporary files of a killed run (never a live one's)
    load_cells(out)  # every cell already on disk must be readable before any expensive stage
    if os.path.exists(os.path.join(out, "run.json")):
        read_run_info(out)  # likewise the run record
    ctx = Context(preset, out, progress)
    ctx.timings.update(timings or {})  # stages run before this call (the rehearsal's inputs)
    cells = [(r, s) for r in preset.rows for s in range(preset.seeds)]
    if shard is not None:
        cells = [c for k, c in enumerate(cells) if k % shard[1] == shard[0]]
    done, todo = [], []
    for r, s in cells:
        path = cell_path(out, r, s)
        if os.path.exists(path):
            check_config(read_cell(path), ctx.cell_config(r, s), path)
            done.append(cell_key(r, s))
        else:
            todo.append((r, s))
    if todo:
        ctx.load_data()
    with tqdm(total=len(cells), initial=len(done), desc="table1 cells", unit="cell", disable=not progress) as bar:
        ran, by_others = _claim_and_run(ctx, todo, bar)
    with FileLock(os.path.join(out, "run.json.lock")):
        run_info = _update_run_json(out, preset, ctx, time.perf_counter() - t0, ran=ran)
        render(out, rows=preset.rows, seeds=preset.seeds, run_info=run_info)
    return {"ran": ran, "reused": done, "by_others": by_others, "seconds": round(time.perf_counter() - t0, 1), "rank": rank, "world": world, "shard": f"{shard[0]}/{shard[1]}" if shard else None}


def _update_run_json(out: str, preset: Table1Preset, ctx: Context, seconds: float, ran: list) -> dict:
    """Append this invocation (time, cells, per-stage timings and peak RSS, provenance) to
    ``run.json``, with the split sizes and the oracle's ceiling on the test split."""
    from ltbench.utils.dist import rank_world

    prev = read_run_info(out) if os.path.exists(os.path.join(out, "run.json")) else {}
    rank, world = rank_world()
    history = prev.get("invocations", []) + [{"seconds": round(seconds, 1), "cells_run": ran, "rank": rank, "world": world, "stage_timings": ctx.timings, **ctx.peaks.as_dict(), "metadata": metadata(None)}]
    info = {"preset": preset.name, "config": dataclasses.asdict(preset), "invocations": history}
    if hasattr(ctx, "x_train"):
        info["split_sizes"] = {"train": len(ctx.x_train), "val": len(ctx.x_val), "test": len(ctx.x_test), "image_px": int(ctx.x_train.shape[-1])}
        info["test_prevalence"] = {c: float(ctx.y_test[:, k].mean()) for k, c in enumerate(ctx.classes)}  # chance AP of each class
    else:
        info.update({k: prev[k] for k in ("split_sizes", "test_prevalence") if k in prev})
    if preset.oracle:
        from ltbench.eval.oracle import oracle_json

        info["oracle"] = {"trained": oracle_json(preset.oracle)}
        scores = ctx.oracle_test_scores()
        if scores is not None:
            info["oracle"].update(scores)
        elif "test_average_precision" in prev.get("oracle", {}):
            info["oracle"].update({k: prev["oracle"][k] for k in ("test_average_precision", "head_map", "tail_map")})
    atomic_write_json(os.path.join(out, "run.json"), info)
    return info


__all__ = ["check_inputs", "parse_shard", "run_table1"]
