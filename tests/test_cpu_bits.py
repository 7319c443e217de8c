"""CPU results stay bit-identical across the device plumbing (issue 24): the method's outputs on
tiny seeded inputs (an IL fit of two generations, its log, CAMs, partner choice, fusions of three
configurations, the augmenter end to end) hash to the digests recorded in
``tests/data/cpu_bits.json``, which were computed with the code before ``device=`` existed.

Float results depend on the torch build, on the CPU's instruction set (oneDNN picks its
kernels at run time) and possibly on the CPU model (Table 1's cells differed between an Intel
Xeon and this AMD EPYC, both AVX-512), so the test compares only where all of those match the
recording and is skipped elsewhere. The key is not proven complete: a first recording was not
reproduced by its own commit on a machine with the same key (see ``recorded_with``). To record anew (a deliberate change of the numbers): ``python tests/test_cpu_bits.py``.
"""

import json
import os
import sys
import tempfile

import numpy as np
import pytest
import torch

from ltbench.reproduce.stages import state_digest
from ltbench.utils.provenance import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD = os.path.join(HERE, "data", "cpu_bits.json")


def environment() -> dict:
    from ltbench import ops

    return {"torch": torch.__version__, "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_isa": ops.cpu_isa(), "extension": ops.extension_available()}


def outputs() -> dict:
    """The method on tiny seeded inputs, through calls that exist with and without ``device=``
    (their defaults: the CPU on a machine without CUDA)."""
    from torch.utils.data import TensorDataset

    from ltbench.augment import make_augmenter
    from ltbench.augment.fsa_il import generate_fusions
    from ltbench.method.cam import compute_cams
    from ltbench.method.fusion import FusionConfig, choose_partners, knn_rows
    from ltbench.method.il import ILConfig, train_il

    torch.set_num_threads(1)  # summation order fixed whatever the machine's cores
    out = {}
    g = torch.Generator().manual_seed(0)
    z = torch.randn(96, 4, 8, 8, generator=g)
    y = (torch.rand(96, 4, generator=g) < 0.3).float()
    y[:12, 3] = 1
    y[12:, 3] = 0
    z[y[:, 0] == 1, :, 2:5, 2:5] += 1.5
    ds = TensorDataset(z, y, torch.arange(96))
    cfg = ILConfig(sparse_channels=8, generations=2, ngf=4, max_depth=2, batch_size=32, lr=1e-3, bn_recalibration=64)
    d = tempfile.mkdtemp()
    model = train_il(ds, TensorDataset(z[:24], y[:24], torch.arange(24)), cfg, os.path.join(d, "il"), progress=False)
    out["il_weights"] = model.state_dict()
    out["il_log"] = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(os.path.join(d, "il", "log.jsonl"))]
    cams, scores = compute_cams(model, ds, os.path.join(d, "cams"), batch_size=40, progress=False, method="gradcam++", layers="multi")
    cams, scores = np.array(cams), np.array(scores)
    out["cams"], out["scores"] = cams, scores
    labels = y.numpy().astype(np.uint8)
    out["knn"] = knn_rows(cams[:5].reshape(5, -1), cams, np.arange(12, 96), 3, chunk=29)
    out["partners"] = choose_partners(np.arange(12), labels, cams, scores, [0, 1, 2], "paper", 3, np.random.default_rng(1), allowed=labels[:, 3] == 0)
    classes, head, tail = ["h0", "h1", "h2", "t0"], ["h0", "h1", "h2"], ["t0"]
    for name, fc in {
        "paper": FusionConfig(n_per_class=5, batch_size=2),
        "sampled": FusionConfig(n_per_class=4, batch_size=3, p_mode="sampled", thresholds="sampled", masks="random", partner_rule="code", partner_candidates="any"),
        "authors": FusionConfig(n_per_class=5, batch_size=3, decoder="train-batch2", label_policy="tail", partner_rule="class-confusion"),
    }.items():
        out[f"fusions_{name}"] = generate_fusions(model, ds, cams, scores, classes, head, tail, fc)
    aug = make_augmenter("fsa-il", classes=classes, head=head, tail=tail, il=cfg, fusion=FusionConfig(n_per_class=3), work_dir=os.path.join(d, "fsa"))
    out["augmenter"] = aug.fit_resample(z, labels)
    return out


@pytest.mark.slow
def test_cpu_outputs_are_the_recorded_bits():
    with open(RECORD) as f:
        record = json.load(f)
    env = environment()
    if env != record["environment"]:
        pytest.skip(f"recorded on {record['environment']}, this is {env}: float bits are not comparable")
    got = {k: state_digest(v) for k, v in outputs().items()}
    assert got == record["digests"], {k: (v, record["digests"].get(k)) for k, v in got.items() if v != record["digests"].get(k)}


if __name__ == "__main__":
    os.makedirs(os.path.dirname(RECORD), exist_ok=True)
    with open(RECORD, "w") as f:
        json.dump({"environment": environment(), "digests": {k: state_digest(v) for k, v in outputs().items()}, "recorded_with": sys.argv[1] if len(sys.argv) > 1 else "this checkout"}, f, indent=2)
        f.write("\n")
    print(RECORD)
