"""The readings of a Table 1: declared families of comparisons, paired tests over seeds with a
familywise (Holm) correction, the probability of improvement, per-class tables and the "room
to help" of the downstream instrument. Computed from cells only (through the report); the
README reads only what survives.

Families (declared here, before any number is seen):

* ``downstream``: every row against ``none`` on head and on tail mAP (the user's question:
  does adding these samples, or training this way, change the classifier?);
* ``images``: every generator against ``smote`` and against ``t2i`` on tail FID, KID and
  label fidelity (which way of synthesising is better);
* ``alternatives``: every generator against the best row that generates nothing new
  (random oversampling and the training-side long-tail methods), on tail mAP and on each tail
  class's AP, the best chosen per metric by its mean over seeds (an optimistic baseline: a
  generator that beats it has beaten each);

Within a seed every row shares the classifier's initialisation, its real-data stream, the FID
reference set and the held-out floor, so a row's difference from a baseline is paired by seed;
everything the user would meet when refitting (the generator's fit, the classifier's
initialisation, the reference draw) varies between seeds and is in the test's variance.
"""


import numpy as np

from ltbench.eval.stats import holm, mean_interval, paired_difference, paired_interval, probability_of_improvement

ALPHA = 0.05  # familywise error rate of each family
BASELINE = "none"
IMAGE_BASELINES = ("smote", "t2i")
FLOORS = ("real", "vae")


def _fid(r):
    m = (r.get("tail_metrics") or {}).get("oracle")
    return None if not isinstance(m, dict) else m["mean"].get("fid")


def _kid(r):
    m = (r.get("tail_metrics") or {}).get("oracle")
    return None if not isinstance(m, dict) or m["mean"].get("kid") is None else 1000 * m["mean"]["kid"]


def _lf(r):
    return (r.get("label_fidelity") or {}).get("mean_tail")


# metric key -> (title, getter from a cell's results, higher is better)
METRIC = {
    "head_map": ("head mAP", lambda r: r.get("head_map"), True),
    "tail_map": ("tail mAP", lambda r: r.get("tail_map"), True),
    "fid_oracle": ("tail FID (oracle)", _fid, False),
    "kid_oracle": ("tail KID x1000 (oracle)", _kid, False),
    "label_fidelity": ("label fidelity (tail)", _lf, True),
}
FAMILIES = {
    "downstream": "every row against `none` on head and tail mAP",
    "images": "every generator against `smote` and against `t2i` on tail FID, KID and label fidelity",
    "alternatives": "every generator against the best non-generative row (oversampling, long-tail losses, cRT; the best by mean per metric) on tail mAP and each tail class's AP",
}
NON_GENERATIVE = ("oversample", "wbce", "asl", "logit-adj", "crt")


def by_seed(cells: list[dict], seeds: int | None = None) -> dict:
    """{row: {seed: results}} of the cells (seeds below ``seeds`` when given)."""
    out: dict = {}
    for c in cells:
        s = c["config"]["seed"]
        if seeds is None or s < seeds:
            out.setdefault(c["config"]["row"], {})[s] = c["results"]
    return out


def _values(runs: dict, metric: str) -> dict:
    if metric.startswith("AP "):
        c = metric[3:]
        return {s: (r.get("average_precision") or {}).get(c) for s, r in runs.items()}
    get = METRIC[metric][1]
    return {s: get(r) for s, r in runs.items()}


def _title(metric: str) -> tuple[str, bool]:
    return (f"AP {metric[3:]}", True) if metric.startswith("AP ") else METRIC[metric][0::2]


def _best(rows: dict, candidates, metric: str) -> str | None:
    """The candidate row with the highest mean of ``metric`` over its seeds."""
    means = {r: np.mean([v for v in _values(rows[r], metric).values() if v is not None]) for r in candidates if r in rows}
    return max(means, key=means.get) if means else None


def family_members(rows: dict) -> dict:
    """{family: [(row, baseline, metric), ...]} for the rows present."""
    down = [(r, BASELINE, m) for r in rows if r != BASELINE for m in ("head_map", "tail_map")] if BASELINE in rows else []
    generators = [r for r in rows if r not in (BASELINE, *FLOORS) and any(_fid(x) is not None for x in rows[r].values())]
    images = [(r, b, m) for b in IMAGE_BASELINES if b in rows for r in generators if r != b for m in ("fid_oracle", "kid_oracle", "label_fidelity")]
    tail = sorted({c for runs in rows.values() for r in runs.values() for c in (r.get("average_precision") or {})} & set(tail_of(rows)))
    alternatives = []
    for m in ["tail_map"] + [f"AP {c}" for c in tail]:
        best = _best(rows, NON_GENERATIVE, m)
        if best is not None:
            alternatives += [(r, best, m) for r in generators if r.partition("+")[0] not in NON_GENERATIVE]
    return {"downstream": down, "images": images, "alternatives": alternatives}


def tail_of(rows: dict) -> list:
    """The tail classes the cells' per-class label fidelity names (their tail)."""
    for runs in rows.values():
        for r in runs.values():
            pc = (r.get("label_fidelity") or {}).get("per_class")
            if pc:
                return list(pc)
    return []


def comparisons(rows: dict, alpha: float = ALPHA) -> dict:
    """Per family, every comparison: the paired difference row - baseline over the seeds both
    have (mean, 95% interval, two-sided paired t-test p), Holm's adjusted p within the family,
    P(row better than baseline) over seeds, and whether it survives at ``alpha``."""
    out = {}
    for fam, members in family_members(rows).items():
        entries = []
        for row, base, metric in members:
            higher = _title(metric)[1]
            x, y = _values(rows[row], metric), _values(rows[base], metric)
            d = paired_difference(x, y)
            entries.append({"row": row, "baseline": base, "metric": metric, "higher_is_better": higher, "diff": d, "p": d.pop("p"), "p_improvement": probability_of_improvement(x, y, higher)})
        adjusted = holm({i: e["p"] for i, e in enumerate(entries)})
        for i, e in enumerate(entries):
            e["p_holm"] = adjusted[i]
            e["survives"] = bool(e["p_holm"] is not None and e["p_holm"] <= alpha)
            better = e["diff"]["mean"] is not None and (e["diff"]["mean"] > 0) == e["higher_is_better"] and e["diff"]["mean"] != 0
            e["direction"] = None if e["diff"]["mean"] is None else ("better" if better else "worse" if e["diff"]["mean"] != 0 else "equal")
        out[fam] = {"description": FAMILIES[fam], "alpha": alpha, "correction": "holm", "n_comparisons": sum(e["p"] is not None for e in entries), "comparisons": entries}
    return out


def per_class(rows: dict, tail) -> dict:
    """{row: {class: {"ap": interval over seeds, "d_ap": paired difference from `none`,
    "label_fidelity": interval}}} for the tail classes."""
    out = {}
    base = rows.get(BASELINE)
    for row, runs in rows.items():
        entry = {}
        for c in tail:
            ap = {s: (r.get("average_precision") or {}).get(c) for s, r in runs.items()}
            lf = {s: (((r.get("label_fidelity") or {}).get("per_class") or {}).get(c) or {}).get("tail") for s, r in runs.items()}
            entry[c] = {
                "ap": mean_interval([v for v in ap.values() if v is not None]),
                "d_ap": None if base is None or row == BASELINE else paired_interval(ap, {s: (r.get("average_precision") or {}).get(c) for s, r in base.items()}),
                "label_fidelity": mean_interval([v for v in lf.values() if v is not None]),
            }
        out[row] = entry
    return out


def room_to_help(rows: dict, tail, prevalence: dict | None, ceiling: dict | None) -> dict:
    """Per tail class: the `none` row's AP over seeds against the class's prevalence in the test
    split (chance) and the oracle's AP on it (the ceiling; 1 without an oracle). There is room
    for a generator to help where the AP's interval lies above chance and below the ceiling:
    the interval on the logit scale (``reproduce/room.py``, shared with the calibration); the
    t-interval on the AP scale is kept as ``ap`` for reference."""
    from ltbench.reproduce.room import room

    base = rows.get(BASELINE)
    if base is None:
        return {}
    out = {}
    for c in tail:
        aps = [r["average_precision"][c] for r in base.values() if c in (r.get("average_precision") or {})]
        chance = None if prevalence is None else prevalence.get(c)
        top = 1.0 if not ceiling else ceiling.get(c, 1.0)
        out[c] = {"ap": mean_interval(aps), "prevalence": chance, "ceiling": top, **room(aps, chance, top)}
    return out


def _iv(v, d: int = 3, signed: bool = False) -> str:
    if v is None or v.get("mean") is None:
        return "–"
    f = f"{{:{'+' if signed else ''}.{d}f}}"
    s = f.format(v["mean"])
    if v.get("lo") is not None:
        s += f" [{f.format(v['lo'])}, {f.format(v['hi'])}]"
    return s


def _p(p) -> str:
    return "–" if p is None else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def render_comparisons(comp: dict) -> list:
    """Markdown lines: one table per family, every comparison with its corrected p."""
    lines = []
    for fam, f in comp.items():
        if not f["comparisons"]:
            continue
        lines += [f"### Family `{fam}`: {f['description']}", "",
                  f"{f['n_comparisons']} paired comparisons over seeds; Holm's correction at familywise alpha = {f['alpha']}; **yes** = survives. P(better) is the probability that the row beats its baseline over pairs of seeds (ties count half).", "",
                  "| row | vs | metric | Δ (row − baseline) [95% CI] | p | Holm p | P(better) | survives |", "|---|---|---|---|---|---|---|---|"]
        for e in f["comparisons"]:
            d = 2 if e["metric"] in ("fid_oracle", "kid_oracle") else 3
            pi = "–" if e["p_improvement"] is None else f"{e['p_improvement']:.2f}"
            lines.append(f"| `{e['row']}` | `{e['baseline']}` | {_title(e['metric'])[0]} {'↑' if e['higher_is_better'] else '↓'} | {_iv(e['diff'], d, True)} | {_p(e['p'])} | {_p(e['p_holm'])} | {pi} | {'**yes**, ' + e['direction'] if e['survives'] else 'no'} |")
        lines.append("")
    return lines


def render_room(room: dict) -> list:
    if not room:
        return []
    lines = ["### Room to help (the `none` row against chance and the ceiling)", "",
             "Per tail class: `none`'s average precision over seeds, the class's prevalence in the test split (what a classifier that cannot see the finding scores) and the oracle's AP on the same split (the ceiling). A generator can only help where the 95% interval over seeds, taken on the logit scale (an AP lies in (0, 1); `ltbench/reproduce/room.py`), lies between the two. The t-interval on the AP scale is shown for reference.", "",
             "| tail class | `none` AP [95% CI, logit scale] | t-interval on the AP scale | chance (prevalence) | ceiling (oracle) | room to help |", "|---|---|---|---|---|---|"]
    for c, v in room.items():
        chance = "–" if v["prevalence"] is None else f"{v['prevalence']:.4f}"
        verdict = "unknown (no test prevalence in run.json)" if v["room"] is None else "yes" if v["room"] else "NO (" + ("at chance" if not v["above_chance"] else "at the ceiling") + ")"
        raw = "–" if v["ap"]["lo"] is None else f"[{v['ap']['lo']:.3f}, {v['ap']['hi']:.3f}]"
        lines.append(f"| {c} | {_iv({**v['ap'], **v['interval']})} | {raw} | {chance} | {v['ceiling']:.3f} | {verdict} |")
    return lines + [""]


def render_per_class(pc: dict, tail) -> list:
    lines = ["### Per tail class", "", "Average precision (mean over seeds [95% CI]) and its paired difference from `none`:", "",
             "| row | " + " | ".join(tail) + " |", "|---|" + "---|" * len(tail)]
    for row, e in pc.items():
        lines.append(f"| `{row}` | " + " | ".join(_iv(e[c]["ap"]) + ("" if e[c]["d_ap"] is None else f"<br>Δ {_iv(e[c]['d_ap'], 3, True)}") for c in tail) + " |")
    lines += ["", "Label fidelity (share of the samples made for the class that the oracle calls positive for it; mean over seeds [95% CI]):", "",
              "| row | " + " | ".join(tail) + " |", "|---|" + "---|" * len(tail)]
    for row, e in pc.items():
        if all(e[c]["label_fidelity"]["mean"] is None for c in tail):
            continue
        lines.append(f"| `{row}` | " + " | ".join(_iv(e[c]["label_fidelity"], 2) for c in tail) + " |")
    return lines + [""]


def survivors(comp: dict) -> set:
    """{(row, baseline, metric)} of the comparisons that survive their family's correction."""
    return {(e["row"], e["baseline"], e["metric"]) for f in comp.values() for e in f["comparisons"] if e["survives"]}


__all__ = ["ALPHA", "FAMILIES", "by_seed", "comparisons", "family_members", "per_class", "render_comparisons", "render_per_class", "render_room", "room_to_help", "survivors"]
