"""``fuse_batch`` is Eq. 6-12 of the paper, checked on a hand-built case where every mask
comparison matters: with S and D the identity, each position's fused code must be the tail's,
the partner's or M^R's pick exactly as the equations say, for CAM values on both sides of the
thresholds and ON them (M^S = [CAM > tau_h] and M^G = [CAM < tau_l] are strict)."""

import torch

from ltbench.method.fusion import fuse_batch


class Identity(torch.nn.Module):
    """S(z) = z and D(s) = s: the fused code is the output."""

    def sparse(self, z):
        return z

    def decoder(self, s):
        return s


def equations(z_t, z_h, m_s, m_g, m_r):
    """Eq. 8-12 written literally, masks broadcast over channels."""
    m_s, m_g, m_r = (m[:, None].float() for m in (m_s, m_g, m_r))
    z_r = z_t * m_r + z_h * (1 - m_r)  # (8)
    z_r_tilde = z_r * (1 - m_g - m_s + 2 * m_g * m_s)  # (9)
    z_t_tilde = z_t * m_s * (1 - m_g)  # (10)
    z_h_tilde = z_h * m_g * (1 - m_s)  # (11)
    return z_h_tilde + z_t_tilde + z_r_tilde  # (12)


def test_fuse_batch_is_eq_6_to_12_on_a_hand_built_case():
    tau_h, tau_l = 0.4, 0.6
    # one image, a 4x4 grid: each row of the grid is one (M^S, M^G) combination, and the CAM
    # values sit below, on and above the thresholds
    cam_t = torch.tensor([[[0.9, 0.41, 0.9, 1.0], [0.9, 0.5, 0.41, 0.9], [0.1, 0.4, 0.0, 0.39], [0.4, 0.2, 0.3, 0.0]]])
    cam_h = torch.tensor([[[0.7, 0.6, 0.9, 1.0], [0.1, 0.59, 0.0, 0.5], [0.1, 0.59, 0.0, 0.2], [0.6, 0.8, 0.61, 0.9]]])
    m_s, m_g = cam_t > tau_h, cam_h < tau_l
    # every combination occurs, and values ON a threshold fall on the strict side
    assert {(bool(a), bool(b)) for a, b in zip(m_s.flatten(), m_g.flatten())} == {(True, False), (True, True), (False, True), (False, False)}
    assert not m_s[0, 2, 1] and not m_g[0, 0, 1]
    c, h, w = 3, 4, 4
    z_t = (1.0 + torch.arange(c * h * w, dtype=torch.float32)).reshape(1, c, h, w)
    z_h = -z_t
    for p in (0.0, 1.0, 0.5):
        gen = torch.Generator().manual_seed(7)
        got = fuse_batch(Identity(), z_t, z_h, cam_t, cam_h, tau_h, tau_l, p, gen)
        u = torch.rand((1, h, w), generator=torch.Generator().manual_seed(7))  # M^R's draw (7)
        m_r = u < p
        want = equations(z_t, z_h, m_s, m_g, m_r)
        assert torch.equal(got, want)
        # the case table the equations reduce to
        pick_t = torch.where(m_s != m_g, m_s, m_r)
        assert torch.equal(got, torch.where(pick_t[:, None], z_t, z_h))
    # M^R decides exactly where the masks agree: at p = 1 every agreeing position is the tail's
    agree = (m_s == m_g)[0]
    got1 = fuse_batch(Identity(), z_t, z_h, cam_t, cam_h, tau_h, tau_l, 1.0, torch.Generator().manual_seed(0))
    got0 = fuse_batch(Identity(), z_t, z_h, cam_t, cam_h, tau_h, tau_l, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(got1[0][:, agree], z_t[0][:, agree]) and torch.equal(got0[0][:, agree], z_h[0][:, agree])
    assert torch.equal(got1[0][:, ~agree], got0[0][:, ~agree])  # elsewhere M^R plays no part
