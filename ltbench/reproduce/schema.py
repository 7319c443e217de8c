"""The Table 1 cell: its key, its schema, validation and loading. Everything that reads results
(the runner resuming, reports, projections) goes through here, never through the runner.

A cell is one JSON file ``OUT/cells/<row>__seed<seed>.json``:
``{"schema", "metadata": {git sha, time, versions, device, ops backend, seed, ...},
"config": {row, seed, the resolved preset, the identity of its inputs}, "results": {...}}``."""

import glob
import json
import math
import os

SCHEMA = "ltbench.table1.cell/2"
METADATA_KEYS = ("git_sha", "utc_time", "versions", "device", "ops_backend", "seed")
RESULT_KEYS = ("cost", "tail_metrics", "label_fidelity", "head_map", "tail_map", "average_precision", "train_size")


class ConfigMismatch(ValueError):
    """A cell on disk was computed with another configuration or from other inputs."""


def cell_key(row: str, seed: int) -> str:
    return f"{row}__seed{seed}"


def cell_path(out: str, row: str, seed: int) -> str:
    return os.path.join(out, "cells", cell_key(row, seed) + ".json")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_metrics(res: dict, problems: list) -> None:
    tm = res.get("tail_metrics")
    if tm is not None:
        if not isinstance(tm, dict):
            problems.append("results.tail_metrics is not an object")
        else:
            for space, v in tm.items():
                if isinstance(v, str):
                    continue  # "n/a (no ... weights)"
                mean = v.get("mean") if isinstance(v, dict) else None
                if not isinstance(mean, dict) or not all(x is None or _number(x) for x in mean.values()):
                    problems.append(f"results.tail_metrics.{space}.mean is not an object of numbers")
    lf = res.get("label_fidelity")
    if lf is not None and not (isinstance(lf, dict) and (lf.get("mean_tail") is None or _number(lf.get("mean_tail")))):
        problems.append("results.label_fidelity.mean_tail is not a number")
    ap = res.get("average_precision")
    if ap is not None and not (isinstance(ap, dict) and all(_number(x) and 0 <= x <= 1 for x in ap.values())):
        problems.append("results.average_precision is not an object of numbers in [0, 1]")
    for k in ("head_map", "tail_map"):
        v = res.get(k)
        if k in res and not (_number(v) and 0.0 <= v <= 1.0):
            problems.append(f"results.{k} = {v!r} is not a number in [0, 1]")


def validate_cell(cell, where: str = "cell") -> dict:
    """Check a cell's structure and value types; raises ValueError naming what is wrong."""
    if not isinstance(cell, dict):
        raise ValueError(f"{where} is not a valid Table 1 cell: a JSON {type(cell).__name__}, not an object")
    problems = []
    if cell.get("schema") != SCHEMA:
        problems.append(f"schema is {cell.get('schema')!r}, expected {SCHEMA!r}")
    for part, keys in (("metadata", METADATA_KEYS), ("results", RESULT_KEYS)):
        section = cell.get(part)
        if not isinstance(section, dict):
            problems.append(f"{part} is not an object")
            continue
        missing = [k for k in keys if k not in section]
        if missing:
            problems.append(f"{part} lacks {missing}")
    cfg = cell.get("config") if isinstance(cell.get("config"), dict) else {}
    if not isinstance(cfg.get("row"), str) or not isinstance(cfg.get("seed"), int):
        problems.append("config lacks row/seed")
    if isinstance(cell.get("results"), dict):
        _check_metrics(cell["results"], problems)
    if problems:
        raise ValueError(f"{where} is not a valid Table 1 cell: " + "; ".join(problems))
    return cell


def read_json(path: str, what: str = "file"):
    """A JSON file, or a ValueError naming it (never a traceback from the decoder)."""
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it to recompute that {what}") from None


def read_cell(path: str) -> dict:
    return validate_cell(read_json(path, "cell"), path)


def load_cells(out: str) -> list[dict]:
    """Every cell under ``out/cells``, validated (sorted by file name)."""
    return [read_cell(p) for p in sorted(glob.glob(os.path.join(out, "cells", "*.json")))]


def check_config(cell: dict, want: dict, path: str) -> None:
    """Raise ConfigMismatch naming the differing fields when ``cell`` was computed with another
    config than ``want``."""
    got = cell.get("config") or {}
    want = json.loads(json.dumps(want))  # as a cell stores it: tuples are lists in JSON
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        raise ConfigMismatch(f"{path} was computed with another configuration (differs in: {', '.join(diff)}); use another --out (or delete the cell to recompute it)")


def read_run_info(out: str) -> dict:
    """``out/run.json`` (the run record: preset, config, invocations), checked for shape."""
    path = os.path.join(out, "run.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{out} holds no run.json; run `python -m ltbench.reproduce table1 --out {out}` first")
    info = read_json(path, "run record")
    if not isinstance(info, dict) or not isinstance(info.get("invocations", []), list) or not isinstance(info.get("config", {}), dict):
        raise ValueError(f"{path} is malformed (not a run record: expected an object with preset, config and invocations); delete it (the cells are kept and the table re-renders)")
    return info


__all__ = ["ConfigMismatch", "SCHEMA", "cell_key", "cell_path", "check_config", "load_cells", "read_cell", "read_json", "read_run_info", "validate_cell"]
