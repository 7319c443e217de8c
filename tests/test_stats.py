"""The statistics Table 1 is read with: paired t-tests over seeds, Holm's familywise
correction, the probability of improvement, and the families the report declares."""

import math

import pytest

from ltbench.eval.stats import holm, paired_difference, probability_of_improvement


def test_holm_matches_a_hand_computed_case():
    # m = 4; sorted p: 0.01 (a), 0.02 (c), 0.03 (b), 0.20 (d)
    # adjusted: a 4*0.01 = 0.04; c max(0.04, 3*0.02 = 0.06) = 0.06; b max(0.06, 2*0.03) = 0.06;
    # d max(0.06, 1*0.20) = 0.20
    got = holm({"a": 0.01, "b": 0.03, "c": 0.02, "d": 0.20, "untested": None})
    assert got == pytest.approx({"a": 0.04, "b": 0.06, "c": 0.06, "d": 0.20, "untested": None})
    # at alpha 0.05 only `a` survives; Bonferroni would also keep only `a`, Holm's step-down
    # order is what keeps b and c tied at 0.06 (not 0.12 and 0.08)
    assert [k for k, v in got.items() if v is not None and v <= 0.05] == ["a"]
    assert holm({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})  # capped at 1


def test_paired_t_test_matches_a_hand_computed_case():
    row = {0: 0.30, 1: 0.25, 2: 0.40}
    base = {0: 0.20, 1: 0.20, 2: 0.30, 3: 0.99}  # seed 3 has no row value: not paired
    d = paired_difference(row, base)
    diffs = [0.10, 0.05, 0.10]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    t = mean / (sd / math.sqrt(3))
    from scipy import stats

    assert d["n"] == 3 and d["mean"] == pytest.approx(mean)
    assert d["p"] == pytest.approx(2 * stats.t.sf(t, 2))
    assert d["half_width"] == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert paired_difference({0: 1.0}, {0: 0.5})["p"] is None  # one seed: no test


def test_probability_of_improvement_counts_pairs_of_seeds():
    # x beats y in 3 of the 4 (i, j) pairs, ties half
    assert probability_of_improvement({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.5}) == pytest.approx(0.75)
    assert probability_of_improvement({0: 1.0}, {0: 1.0}) == 0.5
    assert probability_of_improvement({0: 5.0, 1: 6.0}, {0: 1.0, 1: 2.0}, higher_is_better=False) == 0.0  # FID: lower is better


def test_report_families_correct_within_each_family():
    """Two families, each corrected on its own: a difference that is clear in every seed
    survives; the same p-value survives or not depending on its family's size."""
    from ltbench.reproduce.readings import comparisons

    def cell(head, tail, fid=None):
        r = {"head_map": head, "tail_map": tail, "average_precision": {}}
        if fid is not None:
            r["tail_metrics"] = {"oracle": {"mean": {"fid": fid, "kid": fid / 1000}}}
            r["label_fidelity"] = {"mean_tail": 0.5}
        return r

    seeds = range(6)
    rows = {
        "none": {s: cell(0.80, 0.20 + 0.01 * s) for s in seeds},
        "good": {s: cell(0.80 + 0.001 * (s % 2), 0.25 + 0.01 * s + 0.0005 * s, fid=5.0 + 0.1 * s) for s in seeds},
        "smote": {s: cell(0.80, 0.20 + 0.01 * s, fid=6.0 + 0.1 * s + 0.01 * (s % 3)) for s in seeds},
    }
    with_alt = dict(rows, wbce={s: cell(0.80, 0.21 + 0.01 * s) for s in seeds}, oversample={s: cell(0.80, 0.30 + 0.01 * s, fid=1.0) for s in seeds})
    alt = {(e["row"], e["baseline"], e["metric"]) for e in comparisons(with_alt)["alternatives"]["comparisons"]}
    # the generators (not the copies) against the best non-generative row by mean tail mAP: oversample
    assert alt == {("good", "oversample", "tail_map"), ("smote", "oversample", "tail_map")}
    comp = comparisons(rows)
    down = {(e["row"], e["metric"]): e for e in comp["downstream"]["comparisons"]}
    assert down[("good", "tail_map")]["survives"] and down[("good", "tail_map")]["direction"] == "better"
    assert not down[("smote", "tail_map")]["survives"]  # identical to none: no difference
    assert comp["downstream"]["n_comparisons"] == 4
    img = {(e["row"], e["baseline"], e["metric"]): e for e in comp["images"]["comparisons"]}
    e = img[("good", "smote", "fid_oracle")]
    assert e["diff"]["mean"] < 0 and e["direction"] == "better" and e["p_improvement"] > 0.5
    assert comp["alternatives"]["comparisons"] == []  # no non-generative row in this table
    for fam in (f for f in comp.values() if f["comparisons"]):
        ps = sorted(x["p"] for x in fam["comparisons"] if x["p"] is not None)
        holms = sorted(x["p_holm"] for x in fam["comparisons"] if x["p_holm"] is not None)
        assert len(ps) == fam["n_comparisons"] and holms[0] == pytest.approx(min(1.0, len(ps) * ps[0]))
