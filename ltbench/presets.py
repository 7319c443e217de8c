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


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING  # a required field: always shown


def _diff(obj, prefix: str = "", defaults=None) -> dict:
    """Fields of a config dataclass that differ from the class's defaults (or from the
    ``defaults`` instance); nested configs are compared field by field."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        d = getattr(defaults, f.name) if defaults is not None else _default(f)
        if dataclasses.is_dataclass(v) and type(v) is type(d):
            out.update(_diff(v, prefix + f.name + ".", defaults=d))
        elif d is dataclasses.MISSING or v != d:
            out[prefix + f.name] = v
    return out


def describe() -> list[dict]:
    """One entry per preset: kind, name, what uses it, and the fields it sets."""
    rows = []
    for kind, reg in registries().items():
        for name, preset in sorted(reg.items()):
            rows.append({"kind": kind, "name": name, "used_by": USED_BY[kind], "sets": _diff(preset)})
    return rows
