"""The method's ops as pure-PyTorch references: the contracts of docs/kernels.md."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from ltbench import ops


def test_channel_sample_frequencies_match_softmax():
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, 0.0], dtype=torch.float64)
    n = 40_000
    x = logits.view(1, 5, 1, 1).expand(1, 5, 200, 200).contiguous()
    u = torch.rand(1, 200, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    idx = ops.channel_sample(x, u)
    counts = np.bincount(idx.flatten().numpy(), minlength=5)
    expected = torch.softmax(logits, 0).numpy() * n
    assert counts.sum() == n
    assert chisquare(counts, expected).pvalue > 1e-3


def test_channel_sample_is_the_inverse_cdf():
    logits = torch.randn(3, 7, 4, 5, dtype=torch.float64)
    u = torch.rand(3, 4, 5, dtype=torch.float64)
    idx = ops.channel_sample(logits, u)
    cdf = torch.softmax(logits, 1).cumsum(1)
    for b, h, w in np.ndindex(3, 4, 5):
        first = int(np.argmax(cdf[b, :, h, w].numpy() > u[b, h, w].item()))
        assert idx[b, h, w] == first
    assert idx.dtype == torch.int64 and torch.equal(idx, ops.channel_sample(logits, u))  # deterministic given u


def test_channel_sample_rounding_falls_back_to_last_positive_category():
    logits = torch.tensor([0.0, 0.0, -float("inf"), -float("inf")]).view(1, 4, 1, 1)
    assert ops.channel_sample(logits, torch.tensor([[[1.0]]])).item() == 1


def test_channel_sample_errors_name_the_argument():
    with pytest.raises(ValueError, match="u must be"):
        ops.channel_sample(torch.randn(2, 3, 4, 4), torch.rand(2, 4))
    with pytest.raises(ValueError, match="logits must be"):
        ops.channel_sample(torch.randn(3, 4, 4), torch.rand(3, 4))
    assert ops.channel_sample(torch.randn(0, 3, 4, 4), torch.rand(0, 4, 4)).shape == (0, 4, 4)


def test_imitation_bce_equals_bce_of_softmax_and_one_hot_literally():
    logits = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 6, (2, 3, 3))
    p = torch.softmax(logits, 1)
    t = torch.zeros_like(p)
    for b, h, w in np.ndindex(2, 3, 3):
        t[b, idx[b, h, w], h, w] = 1
    literal = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    torch.testing.assert_close(ops.imitation_bce(logits, idx), literal)
    assert torch.autograd.gradcheck(lambda x: ops.imitation_bce(x, idx), (logits,))


def test_imitation_bce_clamps_like_bceloss():
    logits = torch.tensor([[[[200.0]], [[-200.0]]]])  # p = (1, 0): log(0) clamps at -100
    loss = ops.imitation_bce(logits, torch.tensor([[[1]]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="idx must be in"):
        ops.imitation_bce(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mask_fuse_equals_eq_7_to_12(dtype):
    g = torch.Generator().manual_seed(0)
    z_t, z_h = torch.randn(4, 8, 5, 6, generator=g, dtype=dtype), torch.randn(4, 8, 5, 6, generator=g, dtype=dtype)
    m_s, m_g, m_r = (torch.rand(4, 5, 6, generator=g) < 0.5 for _ in range(3))
    fused = ops.mask_fuse(z_t, z_h, m_s, m_g, m_r)
    torch.testing.assert_close(fused, ops.mask_fuse_formula(z_t, z_h, m_s, m_g, m_r))
    # term by term, by hand, per pixel
    for b, h, w in np.ndindex(4, 5, 6):
        s, gg, r = float(m_s[b, h, w]), float(m_g[b, h, w]), float(m_r[b, h, w])
        z_r = z_t[b, :, h, w] * r + z_h[b, :, h, w] * (1 - r)
        expect = z_h[b, :, h, w] * gg * (1 - s) + z_t[b, :, h, w] * s * (1 - gg) + z_r * (1 - gg - s + 2 * gg * s)
        torch.testing.assert_close(fused[b, :, h, w], expect)


def test_mask_fuse_masks_any_dtype_and_nan_policy():
    z_t, z_h = torch.randn(1, 2, 2, 2), torch.full((1, 2, 2, 2), float("nan"))
    ones = torch.ones(1, 2, 2)
    out = ops.mask_fuse(z_t, z_h, ones, torch.zeros(1, 2, 2), ones.to(torch.uint8))
    assert torch.equal(out, z_t)  # the unpicked head vector's NaNs do not leak
    with pytest.raises(ValueError, match="m_g must be"):
        ops.mask_fuse(z_t, z_t, ones, torch.zeros(2, 2), ones)


def test_mask_fuse_gradient_goes_to_the_picked_vector():
    z_t = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    z_h = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    m = [torch.rand(2, 4, 4) < 0.5 for _ in range(3)]
    assert torch.autograd.gradcheck(lambda a, b: ops.mask_fuse(a, b, *m), (z_t, z_h))
    ops.mask_fuse(z_t, z_h, *m).sum().backward()
    pick = torch.where(m[0] != m[1], m[0], m[2])[:, None].expand_as(z_t)
    assert torch.equal(z_t.grad, pick.double()) and torch.equal(z_h.grad, (~pick).double())


def test_sparse_embedding_is_a_softmax_over_channels():
    """S(z) is the channel softmax of the student's logits (dim 1): a softmax over pixels or
    over the batch would also give non-negative maps, but not these."""
    from ltbench.method.il import ILConfig, ILModel

    model = ILModel((4, 16, 16), 10, ILConfig(ngf=8))
    z = torch.randn(3, 4, 16, 16)
    s = model.sparse(z)
    logits = model.student(z)
    assert s.shape == logits.shape and s.shape[1] > 1
    torch.testing.assert_close(s, torch.softmax(logits, 1))
    assert not torch.allclose(s, torch.softmax(logits.flatten(2), 2).view_as(s))
