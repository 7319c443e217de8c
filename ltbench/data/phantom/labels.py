"""Label model of CXR-Phantom-LT: real co-occurrence, MIMIC-CXR-LT marginals.

Rows are drawn from the CheXpert train label CSV that torchxrayvision ships (223,414 real
patients' label rows; eight of our ten classes), re-weighted by iterative proportional
fitting (raking) so that every marginal matches the MIMIC-CXR-LT 2023 prevalence
(``classes.TARGET_PREVALENCE``) while the joint structure (which findings go together)
stays that of real patients. CheXpert's "uncertain" (-1) and blank are mapped to negative
("U-Zeros"): a phantom finding is either drawn or not, and a positive must be a finding
that is really there. Raking then restores the marginals that U-Zeros lowers.

The two classes CheXpert lacks are drawn conditionally:
* Tortuous Aorta given Enlarged Cardiomediastinum (relative risk ``TA_RR``): an elongated,
  unfolded aorta is itself one of the commonest causes of a widened mediastinal silhouette
  on a frontal film, so the two are reported together far more often than by chance.
* Pneumomediastinum given Pneumothorax (relative risk ``PM_RR``): both are air leaks with a
  shared cause (barotrauma, alveolar rupture) and frequently coexist.
The conditional rates are solved so the marginals still hit their targets.
"""

import functools
import os

import numpy as np
import pandas as pd

from ltbench.data.classes import PAPER_CLASSES, TARGET_PREVALENCE

TA_RR = 4.0  # P(TA | ECM) / P(TA | no ECM)
PM_RR = 8.0  # P(PM | PTX) / P(PM | no PTX)
RAKE_ITERS = 200


def chexpert_csv_path() -> str:
    from ltbench.data.xrv import import_torchxrayvision

    torchxrayvision = import_torchxrayvision()  # without its process-wide "ignore all warnings"

    path = os.path.join(os.path.dirname(torchxrayvision.__file__), "data", "chexpert_train.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"CheXpert label CSV not found at {path}; the phantom's label model needs the copy "
            "that torchxrayvision ships (reinstall torchxrayvision)"
        )
    return path


@functools.lru_cache(maxsize=1)
def label_patterns() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Distinct CheXpert label rows over the classes it has, with their raked weights.

    Returns ``(columns, patterns uint8[P, K'], probabilities float64[P])``."""
    df = pd.read_csv(chexpert_csv_path())
    cols = tuple(c for c in PAPER_CLASSES if c in df.columns)
    pos = (df[list(cols)].to_numpy() == 1.0).astype(np.uint8)  # U-Zeros: -1 and NaN -> 0
    patterns, counts = np.unique(pos, axis=0, return_counts=True)
    w = counts.astype(np.float64)
    targets = np.array([TARGET_PREVALENCE[c] for c in cols])
    for _ in range(RAKE_ITERS):
        for k, t in enumerate(targets):
            on = patterns[:, k] == 1
            cur = w[on].sum() / w.sum()
            w[on] *= t / cur
            w[~on] *= (1.0 - t) / (1.0 - cur)
    prob = w / w.sum()
    achieved = patterns.T.astype(np.float64) @ prob
    if not np.allclose(achieved, targets, rtol=1e-3):
        raise RuntimeError(f"raking did not converge: {dict(zip(cols, achieved))}")
    return cols, patterns, prob


def _conditional_rate(target: float, parent_rate: float, rr: float) -> tuple[float, float]:
    """(P(child | parent), P(child | no parent)) with the given relative risk and marginal."""
    base = target / (parent_rate * rr + 1.0 - parent_rate)
    return min(1.0, base * rr), base


def sample_labels(n: int, rng: np.random.Generator, classes=PAPER_CLASSES) -> np.ndarray:
    """Draw ``n`` multi-hot label rows. Returns uint8[n, len(classes)] in the order of ``classes``."""
    cols, patterns, prob = label_patterns()
    rows = patterns[rng.choice(len(prob), size=n, p=prob)]
    out = {c: rows[:, i] for i, c in enumerate(cols)}
    ecm = out["Enlarged Cardiomediastinum"].astype(bool)
    p_on, p_off = _conditional_rate(TARGET_PREVALENCE["Tortuous Aorta"], TARGET_PREVALENCE["Enlarged Cardiomediastinum"], TA_RR)
    out["Tortuous Aorta"] = (rng.random(n) < np.where(ecm, p_on, p_off)).astype(np.uint8)
    ptx = out["Pneumothorax"].astype(bool)
    p_on, p_off = _conditional_rate(TARGET_PREVALENCE["Pneumomediastinum"], TARGET_PREVALENCE["Pneumothorax"], PM_RR)
    out["Pneumomediastinum"] = (rng.random(n) < np.where(ptx, p_on, p_off)).astype(np.uint8)
    missing = [c for c in classes if c not in out]
    if missing:
        raise KeyError(f"the phantom has no label model for {missing}; it renders {list(PAPER_CLASSES)}")
    return np.stack([out[c] for c in classes], axis=1)
