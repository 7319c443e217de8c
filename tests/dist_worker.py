"""Run by tests/test_distributed.py as ``python tests/dist_worker.py MODE OUT`` (one process) or
under ``torchrun --nproc_per_node=2`` (a gloo process group): the same work either way, so
the test can compare one process with two.

MODE ``generate``: t2i and fsa-il samples (refined, SDEdit noise, random p) of a small
setup; rank 0 writes OUT/generate.pt.
MODE ``il``: iterated learning on seeded synthetic latents; every rank writes
OUT/il-rank{r}.pt (its weights and log).
MODE ``classifier``: the mAP harness's DenseNet121 (a warm start, then a row's steps) on
seeded synthetic images; every rank writes OUT/classifier-rank{r}.pt (weights, test scores).
MODE ``oracle``: ``fit_multilabel`` (the oracle's and the perceptual net's trainer) with
degradations; every rank writes OUT/oracle-rank{r}.pt.
MODE ``prior``: ``train_prior`` with a tiny config (both stages); rank 0 writes the pipeline
to OUT/prior.

With LTBENCH_TEST_NO_ALLREDUCE set (the tests' negative control) the ranks train without
exchanging gradients.
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


class GhostBatches(torch.nn.Module):
    """The one-process reference of W ranks' BatchNorm: the rows r, r + W, ... of a batch go
    through the network together (normalised by their own statistics), as rank r's do."""

    def __init__(self, module, parts):
        super().__init__()
        self.module, self.parts = module, parts

    def forward(self, x):
        outs = [self.module(x[r :: self.parts]) for r in range(self.parts)]
        out = outs[0].new_empty((len(x), *outs[0].shape[1:]))
        for r, o in enumerate(outs):
            out[r :: self.parts] = o
        return out


def _backend():
    import torch.distributed as dist

    return dist.get_backend() if dist.is_initialized() else None


def main():
    mode, out = sys.argv[1], sys.argv[2]
    from ltbench.utils.dist import group_rank_world, init_distributed

    init_distributed()
    rank, world = group_rank_world()
    os.makedirs(out, exist_ok=True)
    no_allreduce = bool(os.environ.get("LTBENCH_TEST_NO_ALLREDUCE"))
    if no_allreduce:
        import ltbench.prior.train
        import ltbench.utils.dist

        ltbench.utils.dist.wrap_ddp = ltbench.prior.train.wrap_ddp = lambda m, **k: m
    ghost = int(os.environ.get("LTBENCH_TEST_GHOST_BATCHES", 0))
    if ghost:  # one process normalising each of `ghost` interleaved parts of a batch on its own
        import ltbench.utils.dist

        ltbench.utils.dist.wrap_ddp = lambda m, **k: GhostBatches(m, ghost)
    if mode in ("classifier", "oracle"):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(160, 1, 32, 32, generator=g)
        y = (torch.rand(160, 3, generator=g) < 0.3).float()
        x[y[:, 0] == 1, :, 4:10, 4:10] += 0.5  # learnable signals
        x[y[:, 1] == 1, :, 14:20, 14:20] -= 0.3
        x = x.clamp(0, 1)
        if mode == "classifier":
            from ltbench.eval.classifier import ClassifierConfig, predict, train_classifier, warm_start

            cfg = ClassifierConfig(input_size=32, steps=1, warm_steps=1, batch_size=16, finetune_lr=5e-4)
            init = warm_start(x[:128], y[:128], cfg, seed=1)
            net = train_classifier(x[:128], y[:128], cfg, seed=1, n_real=96, init=init)
            scores = predict(net, x[128:], cfg)
            torch.save({"state": net.state_dict(), "scores": scores, "world": world}, os.path.join(out, f"classifier-rank{rank}.pt"))
        else:
            from ltbench.nets import SmallCNN, fit_multilabel, predict_proba

            torch.manual_seed(0)
            net = fit_multilabel(SmallCNN(1, 3, 8), x[:128], y[:128], epochs=2, batch_size=24, seed=0, augment=True)
            torch.save({"state": net.state_dict(), "scores": predict_proba(net, x[128:]), "world": world}, os.path.join(out, f"oracle-rank{rank}.pt"))
        return
    if mode == "prior":
        from ltbench.prior.train import PriorTrainConfig, train_prior

        # finding_weight 0: the loss is a plain mean over the batch's pixels, so its gradient
        # splits exactly over the ranks (the finding weights are normalised per rank)
        cfg = PriorTrainConfig(n_images=48, size=32, vae_channels=(8, 8), latent_channels=4, vae_steps=3, vae_batch=8, finding_weight=0.0, perceptual_weight=0.0, unet_steps=3, unet_batch=8, checkpoint_every=100, unet_storage_dtype="float32")
        train_prior(cfg, os.path.join(out, "prior"), os.path.join(out, "work"), progress=False)
        return
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
        torch.save({"state": model.state_dict(), "log": log, "world": world, "backend": _backend()}, os.path.join(out, f"il-rank{rank}.pt"))
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
        torch.save({"t2i": z_t2i, "t2i_labels": y_t2i, "fsa": z_f, "fsa_labels": y_f, "world": world, "backend": _backend()}, os.path.join(out, "generate.pt"))


if __name__ == "__main__":
    from ltbench.utils.dist import finish_distributed

    main()
    from ltbench.utils.dist import group_rank_world

    # this rank's work is done and written: an abort after this line is teardown's
    open(os.path.join(sys.argv[2], f".rank{group_rank_world()[0]}.done"), "w").close()
    finish_distributed()
