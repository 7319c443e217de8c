"""Vectorised renderer of CXR-Phantom-LT radiographs and their ground-truth finding masks.

Everything is drawn in normalised image coordinates (x, y in [-1, 1], y down, PA view so the
patient's left is the image's right), so an image looks the same at every resolution from
16 to 512 px; edges are soft over about one pixel. All randomness of sample ``i`` comes from
``numpy.random.default_rng([seed, STREAM_IMAGE, i])`` and every finding's parameters are
drawn whether or not the finding is present, so:

* a sample does not depend on the batch it is rendered in (sharding by rank is free), and
* toggling one label changes that finding's pixels and nothing else (tested).
"""

import math
import numpy as np
import torch
import torch.nn.functional as F

from ltbench.data.classes import PAPER_CLASSES
from ltbench.data.phantom.config import PhantomConfig

STREAM_LABELS, STREAM_SPLIT, STREAM_IMAGE = 0, 1, 2
N_UNIFORMS = 96
COARSE_TEX, FINE_TEX = 8, 24
N_RIBS = 10
MASK_THRESHOLD = 0.05  # a pixel belongs to a finding where >= 5% of its full effect is drawn
# Bump whenever a change alters rendered pixels: caches and results keyed on a PhantomConfig
# (e.g. the reproduce runner's) also record it, so images of another renderer are never reused.
# 2: visible rib fracture (larger step, wider gap, callus at the break).
RENDERER_VERSION = 2


class _Draws:
    """Hands out the sample's uniforms in a fixed order, mapped to [lo, hi]: Tensor[B, 1, 1]."""

    def __init__(self, u: torch.Tensor):
        self.u, self.i = u, 0

    def __call__(self, lo: float, hi: float) -> torch.Tensor:
        if self.i >= self.u.shape[1]:
            raise RuntimeError("renderer needs more uniforms than N_UNIFORMS")
        v = lo + (hi - lo) * self.u[:, self.i]
        self.i += 1
        return v.view(-1, 1, 1)

    def side(self) -> torch.Tensor:
        return torch.where(self(0.0, 1.0) < 0.5, -1.0, 1.0)


def _random_inputs(indices, seed: int, size: int):
    u, coarse, fine, noise = [], [], [], []
    for i in indices:
        rng = np.random.default_rng([seed, STREAM_IMAGE, int(i)])
        u.append(rng.random(N_UNIFORMS))
        coarse.append(rng.standard_normal((COARSE_TEX, COARSE_TEX)))
        fine.append(rng.standard_normal((FINE_TEX, FINE_TEX)))
        noise.append(rng.standard_normal((size, size), dtype=np.float32))
    t = lambda a: torch.from_numpy(np.stack(a)).float()  # noqa: E731
    return t(u), t(coarse), t(fine), t(noise)


def _upsample(tex: torch.Tensor, size: int) -> torch.Tensor:
    tex = F.interpolate(tex[:, None], size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    return tex / tex.flatten(1).std(1).clamp_min(1e-6).view(-1, 1, 1)


def render(labels: np.ndarray, indices, seed: int, cfg: PhantomConfig, classes=PAPER_CLASSES):
    """Render radiographs for given label rows.

    labels: uint8[B, K] multi-hot in the order of ``classes``; indices: B sample indices (they
    pick each sample's random stream). Returns ``(images uint8[B, S, S], masks bool[B, K, S, S])``."""
    labels = np.asarray(labels)
    B, S = len(indices), cfg.size
    if labels.shape != (B, len(classes)):
        raise ValueError(f"labels must have shape ({B}, {len(classes)}), got {labels.shape}")
    if B == 0:
        return np.zeros((0, S, S), np.uint8), np.zeros((0, len(classes), S, S), bool)
    u, coarse, fine, noise = _random_inputs(indices, seed, S)
    on = {c: torch.from_numpy(labels[:, k].astype(np.float32)).view(B, 1, 1) for k, c in enumerate(classes)}
    img, weights = _draw(_Draws(u), _upsample(coarse, S), _upsample(fine, S), noise, on, cfg)
    images = (img.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    masks = np.zeros((B, len(classes), S, S), bool)
    for k, c in enumerate(classes):
        masks[:, k] = ((weights[c] > MASK_THRESHOLD) & (on[c] > 0)).numpy()
    return images, masks


def _draw(d: _Draws, coarse, fine, noise, on, cfg: PhantomConfig):
    S = cfg.size
    j = cfg.anatomy_jitter
    ew = 1.2 / S + 0.004  # edge half-width: about one pixel, never razor sharp

    def soft(sdf):  # inside where sdf < 0
        return torch.sigmoid(-sdf / ew)

    def ellipse(X, Y, cx, cy, a, b, angle=0.0):
        dx, dy = X - cx, Y - cy
        if not isinstance(angle, float):
            ca, sa = torch.cos(angle), torch.sin(angle)
            dx, dy = dx * ca + dy * sa, -dx * sa + dy * ca
        return soft((torch.sqrt((dx / a) ** 2 + (dy / b) ** 2) - 1.0) * torch.minimum(torch.as_tensor(a), torch.as_tensor(b)))

    def line(dist, width):
        return torch.exp(-((dist / width) ** 2))

    g = (torch.arange(S, dtype=torch.float32) + 0.5) / S * 2.0 - 1.0
    y0, x0 = torch.meshgrid(g, g, indexing="ij")
    x0, y0 = x0[None], y0[None]

    # --- patient pose and build ---------------------------------------------------------
    cx, cy = d(-0.04 * j, 0.04 * j), d(-0.04 * j, 0.04 * j)
    theta = d(-0.08 * j, 0.08 * j)  # about +-5 degrees
    scale = d(1.0 - 0.06 * j, 1.0 + 0.04 * j)
    X = ((x0 - cx) * torch.cos(theta) + (y0 - cy) * torch.sin(theta)) / scale
    Y = (-(x0 - cx) * torch.sin(theta) + (y0 - cy) * torch.cos(theta)) / scale
    contrast, exposure = d(1.0 - 0.15 * j, 1.0 + 0.15 * j), d(-0.05 * j, 0.05 * j)

    body = ellipse(X, Y, 0.0, 0.15, d(0.86, 0.93), 1.25)
    img = 0.03 + 0.36 * body

    # --- lungs, domes, markings -----------------------------------------------------------
    lx, ly = d(0.36, 0.41), d(-0.08, 0.0)
    la, lb = d(0.24, 0.29), d(0.58, 0.65)
    dome_y = d(0.44, 0.52)
    dome_h = d(0.08, 0.14)
    lung_side, lung_shell, dome_at = {}, {}, {}
    for s in (-1.0, 1.0):
        dy = dome_y - (0.04 if s < 0 else 0.0)  # the right hemidiaphragm sits higher
        dome_at[s] = dy - dome_h
        dome = dy - dome_h * (1.0 - ((X - s * lx) / (la * 1.15)) ** 2).clamp_min(0)
        lung_shell[s] = ellipse(X, Y, s * lx, ly, la, lb)
        lung_side[s] = lung_shell[s] * soft(Y - dome)
    lung = torch.maximum(lung_side[-1.0], lung_side[1.0])
    hilar = sum(torch.exp(-((X - s * 0.17) ** 2 / 0.03 + (Y + 0.02) ** 2 / 0.06)) for s in (-1.0, 1.0))
    markings = 0.035 * coarse + 0.05 * hilar + 0.015 * fine
    lung_level = 0.13 + markings
    img = torch.lerp(img, lung_level, lung)

    # Pneumothorax: a lateral/apical rim without lung markings, edged by a thin pleural line.
    sp = d.side()
    dpt = d(0.05, 0.08) + 0.09 * d(0.0, 1.0)
    sp_lung = torch.where(sp < 0, lung_side[-1.0], lung_side[1.0])
    # shrink the lung towards its medial and basal edges, which stay put: the rim is apical/lateral
    collapsed_sdf_soft = ellipse(X, Y, sp * (lx - dpt), ly + 1.2 * dpt, la - dpt, lb - 1.2 * dpt)
    rim = sp_lung * (1.0 - collapsed_sdf_soft)
    pleural = sp_lung * line(collapsed_sdf_soft - 0.5, 0.25) * (1.0 - rim).clamp_min(0)
    s_ptx = _strength(d, cfg)
    ptx_w = torch.maximum(rim, pleural)
    img = torch.lerp(img, torch.full_like(img, 0.05), on["Pneumothorax"] * rim * (0.4 + 0.6 * s_ptx).clamp(0, 1))
    img = img + on["Pneumothorax"] * 0.18 * s_ptx * pleural

    # Edema: bilateral perihilar haze, patchy.
    s_ed = _strength(d, cfg)
    # compact support (a smooth bump, not a Gaussian), so the haze has an edge and a mask
    haze = sum((1.0 - ((X - s * 0.2) / 0.26) ** 2 - ((Y - ly) / 0.42) ** 2).clamp_min(0) ** 2 for s in (-1.0, 1.0))
    ed_w = (haze * (0.8 + 0.25 * fine)).clamp(0, 1) * lung
    img = img + on["Edema"] * 0.26 * s_ed * ed_w

    # Lung opacity: one or two patchy blobs inside one lung.
    so = d.side()
    blobs = []
    for _ in range(2):
        bx, by, br = so * (lx + d(-0.1, 0.1)), d(-0.35, 0.25), d(0.07, 0.13)
        blobs.append(ellipse(X, Y, bx, by, br, br * d(0.8, 1.25)))
    blobs[1] = blobs[1] * (d(0.0, 1.0) < 0.6)  # a second patch in 60% of cases
    so_lung = torch.where(so < 0, lung_side[-1.0], lung_side[1.0])
    lo_w = (torch.maximum(*blobs) * (0.75 + 0.35 * fine)).clamp(0, 1) * so_lung
    s_lo = _strength(d, cfg)
    img = img + on["Lung Opacity"] * 0.32 * s_lo * lo_w

    # Atelectasis: a linear band opacity at one lung base.
    sa = d.side()
    band = ellipse(X, Y, sa * (lx + d(-0.06, 0.06)), dome_y - dome_h - d(0.16, 0.26), d(0.16, 0.24), d(0.05, 0.07), d.side() * d(0.3, 0.6))  # tilted, unlike the ribs
    sa_lung = torch.where(sa < 0, lung_side[-1.0], lung_side[1.0])
    at_w = band * sa_lung
    s_at = _strength(d, cfg)
    img = img + on["Atelectasis"] * 0.6 * s_at * at_w

    # Pleural effusion: basal fluid with a meniscus rising laterally; blunts the angle.
    se = d.side()
    depth, men = d(0.04, 0.18), d(0.06, 0.14)
    t = ((X * se - 0.1) / 0.45).clamp(0, 1)
    surface = torch.where(se < 0, dome_at[-1.0], dome_at[1.0]) - depth - men * t**2
    se_shell = torch.where(se < 0, lung_shell[-1.0], lung_shell[1.0])
    pe_w = soft(surface - Y) * torch.maximum(se_shell, torch.where(se < 0, lung_side[-1.0], lung_side[1.0]))
    s_pe = _strength(d, cfg)
    img = torch.lerp(img, torch.full_like(img, 0.5), (on["Pleural Effusion"] * pe_w * (0.35 + 0.6 * s_pe)).clamp(0, 1))

    # --- ribs and clavicles (fracture: one rib stepped and interrupted, callus at the break) ---
    # At 64 px a rib is a line about a pixel wide, so a step of a pixel alone is invisible under
    # the noise and texture (every classifier, the oracle included, was at chance on it). The
    # displacement is 1.6-2.6 px and the break carries a small dense callus, the sign that makes
    # a healing rib fracture visible on a real radiograph.
    thorax = soft(X.abs() - 0.8) * soft(-0.9 - Y) * soft(Y - 0.6)
    rib_t = d(0.022, 0.03)
    fr_idx = (2 + d(0.0, 1.0) * 6).floor().clamp(2, 7)  # rib 2..7
    sf = d.side()
    fx = sf * d(0.3, 0.6)
    step = d(0.05, 0.08)
    s_fr = _strength(d, cfg)
    def rib_y(i, x=X):
        return -0.8 + 0.13 * i + 0.45 * x.abs() - 0.2 * x**2

    spine = soft(0.08 - X.abs())  # ribs stop at the spine
    ribs = sum(line(Y - rib_y(i), rib_t) for i in range(N_RIBS)) * spine
    intact = line(Y - rib_y(fr_idx), rib_t) * spine
    stepped = line(Y - rib_y(fr_idx) - step * torch.sigmoid((X - fx) * sf / 0.01), rib_t) * spine
    fractured = stepped * (1.0 - line(X - fx, 0.025 + 1.0 / S))
    callus = ellipse(X, Y, fx, rib_y(fr_idx, fx) + 0.5 * step, 0.08, 0.05)
    win = soft((X - fx).abs() - 0.09) * (X * sf > 0)
    fr_w = torch.maximum(win * torch.maximum(intact, stepped), callus)
    fr_delta = win * (fractured - intact) + 3.0 * callus
    img = img + 0.11 * thorax * (ribs + on["Fracture"] * (0.4 + 0.6 * s_fr) * fr_delta)
    for s in (-1.0, 1.0):
        # clavicle: a bone bar from the sternal notch outwards and up
        px, py = X - s * 0.1, Y + 0.74
        tx, ty = s * 0.55, -0.1
        h = ((px * tx + py * ty) / (tx * tx + ty * ty)).clamp(0, 1)
        img = img + 0.12 * line(torch.sqrt((px - h * tx) ** 2 + (py - h * ty) ** 2), 0.03)

    # --- mediastinum, heart, aorta ---------------------------------------------------------
    xm = d(-0.02, 0.04)
    w_up = d(0.09, 0.12)
    upper = soft(-0.9 - Y) * soft(Y + 0.05)
    med = soft((X - xm).abs() - w_up) * soft(-0.95 - Y) * soft(Y - 0.55)
    hx, hy, hw, hb = xm + 0.07, d(0.2, 0.27), d(0.26, 0.31), d(0.2, 0.24)
    heart = ellipse(X, Y, hx, hy, hw, hb)
    kx, ky, kr = xm + w_up + 0.02, d(-0.42, -0.34), d(0.045, 0.06)
    knob = ellipse(X, Y, kx, ky, kr, kr)
    normal = torch.maximum(torch.maximum(med, heart), knob)

    s_cm, s_ecm, s_ta = _strength(d, cfg), _strength(d, cfg), _strength(d, cfg)
    k = min(cfg.strength_scale, 1.5)
    heart_big = ellipse(X, Y, hx + 0.04 * s_cm, hy + 0.02, hw * (1.0 + k * (0.2 + 0.25 * s_cm)), hb * (1.0 + k * (0.06 + 0.08 * s_cm)))
    med_big = soft((X - xm).abs() - w_up * (1.0 + k * (0.3 + 0.4 * s_ecm))) * upper
    amp = k * (0.025 + 0.04 * s_ta)
    desc_x = xm + w_up * 0.75 + amp * torch.sin((Y - ky) * math.pi / 0.55)
    desc = line(X - desc_x, 0.03 + 0.5 / S) * soft(ky - Y) * soft(Y - 0.2)
    knob_big = ellipse(X, Y, kx + 0.025 * k, ky, kr * (1.0 + k * (0.3 + 0.35 * s_ta)), kr * (1.0 + k * (0.25 + 0.3 * s_ta)))
    tort = torch.maximum(knob_big, desc)
    sil = torch.maximum(normal, on["Cardiomegaly"] * heart_big)
    sil = torch.maximum(sil, on["Enlarged Cardiomediastinum"] * med_big)
    sil = torch.maximum(sil, on["Tortuous Aorta"] * tort)
    img = torch.lerp(img, torch.full_like(img, 0.58), sil)
    cm_w = (heart_big - normal).clamp_min(0)
    ecm_w = (med_big - normal).clamp_min(0)
    ta_w = (tort - normal).clamp_min(0)

    # Pneumomediastinum: thin lucent streaks along both mediastinal borders.
    s_pm = _strength(d, cfg)
    edge = (X - xm).abs() - w_up
    off = d(0.015, 0.03)
    width = max(0.01, 1.3 / S)
    pm_w = (line(edge - off, width) + line(edge + off * 0.6, width)).clamp(0, 1) * soft(-0.8 - Y) * soft(Y + 0.05)
    img = img - on["Pneumomediastinum"] * 0.3 * s_pm * pm_w

    img = exposure + contrast * img + cfg.noise * noise
    visible = 1.0 - sil  # lung findings behind the heart and mediastinum are not drawn there
    at_w, ed_w, lo_w, pe_w, ptx_w = (w * visible for w in (at_w, ed_w, lo_w, pe_w, ptx_w))
    weights = {
        "Atelectasis": at_w,
        "Cardiomegaly": cm_w,
        "Edema": ed_w,
        "Lung Opacity": lo_w,
        "Pleural Effusion": pe_w,
        "Enlarged Cardiomediastinum": ecm_w,
        "Pneumothorax": ptx_w,
        "Fracture": fr_w,
        "Tortuous Aorta": ta_w,
        "Pneumomediastinum": pm_w,
    }
    return img, weights


def _strength(d: _Draws, cfg: PhantomConfig) -> torch.Tensor:
    return cfg.strength_scale * d(cfg.min_strength, 1.0)
