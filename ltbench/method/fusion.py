"""Stage 3: partner choice, masks and fusion (Sec. 3.3, Eq. 6-13), decoding, refinement.

Partner choice (``partner_rule``):
* ``paper``: for a tail example, the head class of highest confusion (argmax of C's scores
  over the head classes), then the exact ``knn`` nearest neighbours in CAM space among that
  class's examples; the partner is drawn uniformly from them.
* ``code`` (the authors' code): the ``knn`` nearest neighbours in CAM space over ALL head-class
  examples. Exact here (the code used approximate pynndescent), and indexed correctly: the
  code looked tail CAMs up by position in the tail list and returned positions inside the
  head subset as if they were global indices; ``choose_partners`` always works in global
  positions of the dataset.

* ``class-confusion``: the paper's confusion matrix: for every tail example of class c, the
  head class C confuses most with c over all of c's examples (mean score), then as ``paper``.

Candidates (``partner_candidates``): ``no-tail`` (the authors' code: head examples without any
tail label) or ``any`` example with the head label.

Masks (Eq. 6): M^S = [CAM_tail > tau_h], M^G = [CAM_head < tau_l], thresholds fixed (paper
figure: 0.4 / 0.4) or drawn once per run from N(0.5, 0.1) (code). M^R ~ Bernoulli(p), p fixed
(paper: 0.5) or U(0, 1) per batch (code). Fusion is ``ops.mask_fuse``; z_F = D(z_F^s).
``masks="random"`` is the control: M^S and M^G replaced by random masks of the same areas.

Decoder (``decoder``): ``eval`` (BatchNorm with its running statistics: a sample depends on
nothing else) or ``train-batch2`` (the authors' fusion script: S and D never put in eval mode,
fusions in batches of 2, so BatchNorm normalises each pair with its own statistics; a sample
then depends on its batch partner).

Refinement prompt (``refine_prompt``): the tail class's name (paper) or the names of the union
of both examples' labels (code).

Labels (``label_policy``): ``union`` of tail and partner labels (paper), ``tail`` (the tail
class only, as the code stores), ``oracle`` (relabelled by a classifier trained on real data).

Devices (``device``): the kNN distances, S, the masks, ``ops.mask_fuse`` and D run on the
device; M^R's uniforms (and ``random_like_masks``' positions) are drawn on the CPU from each
sample's CPU generator and then copied, so a sample's masks are the same on every device.
Fusion runs in float32 (it is a small part of generation; the select itself is exact in any
dtype). On CUDA, neighbours whose CAM distances tie to float rounding can be ranked in
another order than on the CPU (cdist's reductions differ), so a partner can differ in a tie.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ltbench import ops
from ltbench.utils.device import module_device, resolve_device, to_device

from ltbench.config import PAPER_N_PER_CLASS, REFINE_GUIDANCE, ROENTGEN_STEPS, Config, opt


@dataclass(frozen=True)
class FusionConfig(Config):
    n_per_class: int = opt(PAPER_N_PER_CLASS, "generated samples per tail class (authors' base_n)", ge=0, le=10_000_000)
    partner_rule: str = opt("paper", "\"paper\" (head class C confuses the example with, then kNN), \"class-confusion\" (per tail class) or \"code\" (kNN over all head)")
    knn: int = opt(3, "neighbours the partner is drawn from (code: 3)", ge=1, le=100_000)
    thresholds: str = opt("fixed", "\"fixed\" (tau_h, tau_l) or \"sampled\" once per run from N(0.5, 0.1) (code)")
    tau_h: float = opt(0.4, "M^S = [CAM_tail > tau_h] (paper figure)", ge=0, le=1)
    tau_l: float = opt(0.4, "M^G = [CAM_head < tau_l] (paper figure)", ge=0, le=1)
    p_mode: str = opt("fixed", "\"fixed\" p or \"sampled\" U(0, 1) per batch (code)")
    p: float = opt(0.5, "Bernoulli rate of M^R (paper)", ge=0, le=1)
    label_policy: str = opt("union", "\"union\" (paper), \"tail\" (code's stored label), \"oracle\"")
    refine_steps: int = opt(0, "k: diffusion steps of refinement (the paper's @k); 0 = none", ge=0, le=1000, cli="--steps")
    refine_schedule: int = opt(ROENTGEN_STEPS, "N: the schedule the last k steps are taken from (code)", ge=1, le=1000)
    refine_guidance: float = opt(REFINE_GUIDANCE, "classifier-free guidance in refinement (code)", ge=1, le=100)
    refine_mode: str = opt("tail", "\"tail\" (code: last k steps, no noise) or \"sdedit\"")
    refine_prompt: str = opt("tail", "\"tail\": the tail class's name (paper) or \"union\" of both examples' label names (code)")
    partner_candidates: str = opt("no-tail", "head examples without any tail label (code) or \"any\"")
    # measured on the phantom's ground-truth masks (docs/method.md, "Which CAM"): GradCAM++ on
    # every block after the first puts M^S on the finding above chance for all five tail
    # classes; the paper's EigenCAM on the last block puts it below chance for four
    cam: str = opt("gradcam++", "\"eigencam\" (paper), \"gradcam\" or \"gradcam++\" (targeted at the example's rarest label)")
    cam_layers: str = opt("multi", "\"last\" block (paper) or \"multi\": every block after the first (code: VGG11 features[2:-1])")
    masks: str = opt("cam", "\"cam\" (Eq. 6) or \"random\": M^S, M^G replaced by random masks of their areas (control)")
    decoder: str = opt("eval", "\"eval\" BatchNorm or \"train-batch2\" (authors' script: train mode, pairs)")
    batch_size: int = opt(64, "fusions per batch (decode and refinement batch)", ge=1, le=1 << 20)
    seed: int = opt(0, "partners, masks, thresholds, refinement noise: per sample from this seed", ge=0)

    def __post_init__(self):
        from ltbench.method.cam import CAM_LAYERS, CAM_METHODS

        for name, allowed in (("partner_rule", ("paper", "class-confusion", "code")), ("thresholds", ("fixed", "sampled")), ("p_mode", ("fixed", "sampled")), ("label_policy", ("union", "tail", "oracle")), ("refine_mode", ("tail", "sdedit")), ("refine_prompt", ("tail", "union")), ("partner_candidates", ("no-tail", "any")), ("cam", CAM_METHODS), ("cam_layers", CAM_LAYERS), ("masks", ("cam", "random")), ("decoder", ("eval", "train-batch2"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


def knn_rows(query: np.ndarray, cams, candidates: np.ndarray, k: int, chunk: int = 8192, device=None) -> np.ndarray:
    """Exact k nearest candidates (euclidean on flattened CAMs) for each query CAM.
    query float[Q, H*W]; cams [N, H, W] (memory map ok); candidates int[M] global positions.
    Returns int64[Q, min(k, M)] global positions, nearest first (a NumPy array). The distances
    are computed on ``device`` (None: the CPU), one chunk of candidates at a time."""
    dev = torch.device("cpu") if device is None else resolve_device(device)
    q = to_device(torch.from_numpy(np.asarray(query, dtype=np.float32)), dev)
    best_d = torch.full((len(q), 0), float("inf"), device=dev)
    best_i = torch.zeros((len(q), 0), dtype=torch.int64, device=dev)
    for s in range(0, len(candidates), chunk):
        rows = candidates[s : s + chunk]
        c = to_device(torch.from_numpy(np.asarray(cams[np.sort(rows)], dtype=np.float32).reshape(len(rows), -1)), dev)
        rows_sorted = to_device(torch.from_numpy(np.sort(rows).astype(np.int64)), dev)
        d = torch.cdist(q, c)
        d_all, i_all = torch.cat([best_d, d], 1), torch.cat([best_i, rows_sorted.expand(len(q), -1)], 1)
        top = torch.topk(d_all, min(k, d_all.shape[1]), dim=1, largest=False)
        best_d, best_i = top.values, torch.gather(i_all, 1, top.indices)
    return best_i.cpu().numpy()


def choose_partners(tail_pos: np.ndarray, labels: np.ndarray, cams, scores, head: list[int], rule: str, k: int, rng: np.random.Generator, allowed: np.ndarray | None = None, class_pos: np.ndarray | None = None, device=None) -> tuple[np.ndarray, np.ndarray]:
    """Partners (global positions) for tail examples at global positions ``tail_pos``.
    ``allowed`` bool[N]: the examples that may be partners (None: all); ``class_pos``: every
    example of the tail class (rule ``class-confusion``: C's mean scores over them pick one head
    class for the whole class). Returns ``(partner_pos int64[T], head_class int64[T])``;
    ``head_class`` is the confused head class (paper rules) or the first head label of the
    partner (code rule). ``device``: where the kNN distances are computed (None: the CPU); the
    draw among the neighbours is ``rng``'s, on the host."""
    tail_pos = np.asarray(tail_pos, dtype=np.int64)
    partners = np.empty(len(tail_pos), np.int64)
    hclass = np.empty(len(tail_pos), np.int64)
    head = np.asarray(head)
    ok = np.ones(len(labels), bool) if allowed is None else np.asarray(allowed, bool)
    if rule in ("paper", "class-confusion"):
        if rule == "paper":
            confused = head[np.argmax(np.asarray(scores)[tail_pos][:, head], axis=1)]
        else:
            rows = tail_pos if class_pos is None else np.asarray(class_pos)
            confused = np.full(len(tail_pos), head[np.argmax(np.asarray(scores)[rows][:, head].mean(0))])
        groups = {hc: np.flatnonzero(confused == hc) for hc in np.unique(confused)}
        for hc, members in groups.items():
            cand = np.flatnonzero((labels[:, hc] == 1) & ok)
            _pick(tail_pos, members, cand, cams, k, rng, partners, device)
            hclass[members] = hc
    elif rule == "code":
        cand = np.flatnonzero((labels[:, head].max(1) == 1) & ok)
        _pick(tail_pos, np.arange(len(tail_pos)), cand, cams, k, rng, partners, device)
        hclass[:] = head[np.argmax(labels[partners][:, head], axis=1)]
    else:
        raise ValueError(f"partner rule must be 'paper', 'class-confusion' or 'code', got {rule!r}")
    return partners, hclass


def _pick(tail_pos, members, cand, cams, k, rng, partners, device=None):
    if len(cand) == 0:
        raise ValueError("no head-class examples to pair tail examples with (partner_candidates='no-tail' excludes examples with a tail label; try 'any')")
    query_rows = tail_pos[members]
    q = np.asarray(cams[query_rows], dtype=np.float32).reshape(len(members), -1)
    near = knn_rows(q, cams, cand, k + 1, device=device)  # +1: the tail example itself may be a candidate
    for j, m in enumerate(members):
        choices = [r for r in near[j] if r != query_rows[j]][:k] or list(near[j][:1])
        partners[m] = choices[rng.integers(len(choices))]


def thresholds(cfg: FusionConfig, rng: np.random.Generator) -> tuple[float, float]:
    if cfg.thresholds == "fixed":
        return cfg.tau_h, cfg.tau_l
    tau_h, tau_l = rng.normal(0.5, 0.1, size=2)
    return float(tau_h), float(tau_l)


def random_like_masks(m: torch.Tensor, gens) -> torch.Tensor:
    """The control for Eq. 6: per sample, a mask with as many cells as ``m`` (bool[B, H, W], any
    device) at random positions drawn from that sample's generator (on the generator's device,
    then copied to ``m``'s)."""
    out = torch.zeros_like(m)
    flat = out.view(len(m), -1)
    for i, (g, area) in enumerate(zip(gens, m.flatten(1).sum(1).tolist())):
        flat[i, to_device(torch.randperm(flat.shape[1], generator=g, device=g.device)[: int(area)], m.device)] = True
    return out


@torch.no_grad()
def fuse_batch(model, z_t: torch.Tensor, z_h: torch.Tensor, cam_t: torch.Tensor, cam_h: torch.Tensor, tau_h: float, tau_l: float, p, gen, random_masks: bool = False, device=None) -> torch.Tensor:
    """Eq. 6-13 for a batch: latents Tensor[B, C, H, W] of tail and partner, their CAMs
    Tensor[B, H, W] (any device) -> fused latents z_F = D(z_F^s), Tensor[B, C, H, W] on
    ``device`` (None: where the model is; else the model is moved there, in place). The random mask M^R is drawn from ``gen``: one
    generator for the batch, or a list of B (one per sample: the sample then does not depend on
    its batch); the uniforms are drawn on the generators' device (the CPU for
    ``sample_generator``'s) and copied. ``p`` a float or Tensor[B]. ``random_masks``: M^S and M^G
    are replaced by random masks of their areas, drawn after M^R (the control)."""
    if device is None:
        dev = module_device(model)
    else:
        dev = resolve_device(device)
        model.to(dev)
    z_t, z_h, cam_t, cam_h = (to_device(t, dev) for t in (z_t, z_h, cam_t, cam_h))
    s_t, s_h = model.sparse(z_t), model.sparse(z_h)
    m_s = cam_t > tau_h  # (6) class-specific: where the tail finding is
    m_g = cam_h < tau_l  # (6) class-generic: where the head example has nothing specific
    per_sample = isinstance(gen, (list, tuple))
    if per_sample:
        if len(gen) != len(m_s):
            raise ValueError(f"{len(gen)} generators for a batch of {len(m_s)}")
        u = torch.stack([torch.rand(m_s.shape[1:], generator=g, device=g.device) for g in gen])
    else:
        u = torch.rand(m_s.shape, generator=gen, device=gen.device)
    u = to_device(u, dev)
    if random_masks:
        gens = gen if per_sample else [gen] * len(m_s)
        m_s, m_g = random_like_masks(m_s, gens), random_like_masks(m_g, gens)
    p = torch.as_tensor(p, dtype=u.dtype, device=dev)
    m_r = u < (p[:, None, None] if p.ndim == 1 else p)  # (7)
    return model.decoder(ops.mask_fuse(s_t, s_h, m_s, m_g, m_r))  # (8)-(13)


def fuse_authors(model, z_t, z_h, cam_t, cam_h, tau_h, tau_l, p, gens, random_masks: bool = False, device=None) -> torch.Tensor:
    """``fuse_batch`` as the authors' fusion script runs it: S and D in train mode (BatchNorm
    normalises with the batch's own statistics) on batches of 2. ``model`` must be a copy
    (train mode updates its running statistics). An odd last sample is fused beside the one
    before it and only its own output kept."""
    n, out = len(z_t), []
    if n < 2:  # BatchNorm cannot take batch statistics from one sample at the 1x1 bottleneck
        model.eval()
        return fuse_batch(model, z_t, z_h, cam_t, cam_h, tau_h, tau_l, p, list(gens), random_masks, device)
    model.train()
    p = torch.as_tensor(p)
    for i in range(0, n, 2):
        j = min(i, max(n - 2, 0))  # the pair [j, j + 2): the last sample of an odd batch pairs with its neighbour
        sl = slice(j, min(j + 2, n))
        pp = p[sl] if p.ndim == 1 else p
        z = fuse_batch(model, z_t[sl], z_h[sl], cam_t[sl], cam_h[sl], tau_h, tau_l, pp, list(gens[sl]), random_masks, device)
        out.append(z[i - j :])
    return torch.cat(out)
