"""Every named preset of ltbench, listed from one place (``ltbench presets``).

Presets are named configurations of four kinds, each kept next to the config it fills:

- ``dataset``: how to open a dataset from local files (``ltbench.data.presets.DATASETS``);
- ``table1``: a whole Table 1 run (``ltbench.reproduce.presets.PRESETS``);
- ``il``: iterated-learning settings (``ltbench.method.il.IL_PRESETS``);
- ``prior``: training the phantom prior (``ltbench.prior.train.PRESETS``).

A preset states only what differs from its config's defaults, and every default lives once,
in the config dataclass (shared constants in ``ltbench.config``): ``describe()`` shows exactly
those differences.
"""

import dataclasses

USED_BY = {
    "dataset": "ltbench encode --dataset, python -m ltbench.reproduce table1 --data",
    "table1": "python -m ltbench.reproduce table1 --preset",
    "il": "the table1 presets (il=...), ltbench train-il defaults (phantom)",
    "prior": "ltbench prior train --preset",
}


def registries() -> dict[str, dict]:
    from ltbench.data.presets import DATASETS
    from ltbench.method.il import IL_PRESETS
    from ltbench.prior.train import PRESETS as PRIOR_PRESETS
    from ltbench.reproduce.presets import PRESETS as TABLE1_PRESETS

    return {"dataset": DATASETS, "table1": TABLE1_PRESETS, "il": IL_PRESETS, "prior": PRIOR_PRESETS}


def _diff(obj, prefix: str = "") -> dict:
    """Fields of a config dataclass that differ from the class's defaults (nested configs
    compared field by field)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            d = f.default
        elif f.default_factory is not dataclasses.MISSING:
            d = f.default_factory()
        else:
            out[prefix + f.name] = v
            continue
        if dataclasses.is_dataclass(v) and dataclasses.is_dataclass(d) and type(v) is type(d):
            out.update(_diff_against(v, d, prefix + f.name + "."))
        elif v != d:
            out[prefix + f.name] = v
    return out


def _diff_against(v, d, prefix: str) -> dict:
    out = {}
    for f in dataclasses.fields(v):
        a, b = getattr(v, f.name), getattr(d, f.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            out.update(_diff_against(a, b, prefix + f.name + "."))
        elif a != b:
            out[prefix + f.name] = a
    return out


def describe() -> list[dict]:
    """One entry per preset: kind, name, what uses it, and the fields it sets."""
    rows = []
    for kind, reg in registries().items():
        for name, preset in sorted(reg.items()):
            rows.append({"kind": kind, "name": name, "used_by": USED_BY[kind], "sets": _diff(preset)})
    return rows
