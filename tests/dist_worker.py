"""Run by tests/test_distributed.py as ``python tests/dist_worker.py MODE OUT`` (one process) or
under ``torchrun --nproc_per_node=2`` (a gloo process group): the same work either way, so
the test can compare one process with two.

MODE ``generate``: t2i and fsa-il samples (refined, SDEdit noise, random p) of a small
setup; rank 0 writes OUT/generate.pt.
MODE ``il``: iterated learning on seeded synthetic latents; every rank writes
OUT/il-rank{r}.pt (its weights and log).
"""

import json
import os
import sys

import numpy as np
import torch

torch.set_num_threads(1)


def setup_data(n=256, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, 16, 16, generator=g)
    y = (torch.rand(n, k, generator=g) < 0.3).float()
    y[:12, 3] = 1  # the tail class has examples
    z[y[:, 0] == 1, :, 4:8, 4:8] += 1.5  # learnable signal
    return z, y


def main():
    mode, out = sys.argv[1], sys.argv[2]
    from ltbench.utils.dist import group_rank_world, init_distributed

    init_distributed()
    rank, world = group_rank_world()
    os.makedirs(out, exist_ok=True)
    from torch.utils.data import TensorDataset

    from ltbench.method.il import ILConfig, ILModel, train_il

    cfg = ILConfig(sparse_channels=16, generations=2, interaction_epochs=1, imitation_epochs=1, ngf=8, max_depth=2, batch_size=32, seed=0)
    z, y = setup_data()
    if mode == "il":
        if os.environ.get("LTBENCH_TEST_NO_ALLREDUCE"):  # the test's negative control
            import ltbench.method.il as il

            il._average_gradients = lambda *a, **k: None
        train = TensorDataset(z, y, torch.arange(len(z)))
        model = train_il(train, None, cfg, os.path.join(out, "il"), progress=False)
        log = [json.loads(line) for line in open(os.path.join(out, "il", "log.jsonl"))] if rank == 0 else None
        torch.save({"state": model.state_dict(), "log": log, "world": world}, os.path.join(out, f"il-rank{rank}.pt"))
        return
    from baselines.t2i import TextToImage
    from ltbench.augment.fsa_il import generate_fusions
    from ltbench.method.fusion import FusionConfig
    from ltbench.prior.pipeline import load_prior

    classes, head, tail = ["h0", "h1", "h2", "t0"], ["h0", "h1", "h2"], ["t0"]
    prior = load_prior("phantom")
    z, y = z[:96], y[:96]
    zp = torch.randn(len(z), *prior.latent_shape, generator=torch.Generator().manual_seed(1))
    t2i = TextToImage(["Atelectasis", "Edema", "Pneumothorax"], ["Atelectasis"], ["Edema", "Pneumothorax"], prior=prior, n_per_class=3, steps=3, batch_size=2, seed=4)
    z_t2i, y_t2i = t2i.fit_generate(zp, np.zeros((len(zp), 3), np.uint8))
    torch.manual_seed(0)
    model = ILModel(tuple(zp.shape[1:]), len(classes), cfg).eval()
    g = torch.Generator().manual_seed(2)
    cams = torch.rand(len(zp), *zp.shape[2:], generator=g).numpy()
    scores = torch.rand(len(zp), len(classes), generator=g).numpy()
    ds = TensorDataset(zp, y, torch.arange(len(zp)))
    fcfg = FusionConfig(n_per_class=5, batch_size=2, p_mode="sampled", refine_steps=1, refine_schedule=10, refine_mode="sdedit", seed=3)
    with torch.no_grad():
        z_f, y_f = generate_fusions(model, ds, cams, scores, classes, head, tail, fcfg, prior=prior)
    if rank == 0:
        torch.save({"t2i": z_t2i, "t2i_labels": y_t2i, "fsa": z_f, "fsa_labels": y_f, "world": world}, os.path.join(out, "generate.pt"))


if __name__ == "__main__":
    from ltbench.utils.dist import finish_distributed

    main()
    finish_distributed()
