#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/checks.h"
#include "ops/channel_sample/channel_sample.h"

namespace ltbench {

void check_imitation_bce_args(const char* op, const at::Tensor& logits, const at::Tensor& idx) {
  LTB_CHECK_DIM(op, logits, 4);
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": student_logits must be floating point, got ",
              logits.scalar_type());
  TORCH_CHECK(idx.dim() == 3 && idx.size(0) == logits.size(0) && idx.size(1) == logits.size(2) &&
                  idx.size(2) == logits.size(3),
              op, ": idx must be [B, H, W] = [", logits.size(0), ", ", logits.size(2), ", ", logits.size(3), "], got ",
              idx.sizes());
  TORCH_CHECK(idx.scalar_type() == at::kLong || idx.scalar_type() == at::kInt, op, ": idx must be int64 or int32, got ",
              idx.scalar_type());
  LTB_CHECK_SAME_DEVICE(op, logits, idx);
}

namespace {

constexpr int64_t kBlock = 128;

// Walks pixel blocks: per block, max and sum of exp over channels (channel-outer loops over
// contiguous pixel runs), then `body(c, row, probabilities-of-row, pixel count)`.
template <typename scalar_t, typename acc_t, typename F>
void for_blocks(const scalar_t* pl, int64_t B, int64_t C, int64_t HW, F&& body_factory) {
  const int64_t nblk = (HW + kBlock - 1) / kBlock;
  at::parallel_for(0, B * nblk, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> prob(C * kBlock);
    acc_t m[kBlock], s[kBlock];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / nblk, p0 = (t % nblk) * kBlock, n = std::min(kBlock, HW - p0);
      const scalar_t* base = pl + b * C * HW + p0;
      for (int64_t i = 0; i < n; ++i) m[i] = -std::numeric_limits<acc_t>::infinity(), s[i] = acc_t(0);
      for (int64_t c = 0; c < C; ++c) {
LTB_SIMD
        for (int64_t i = 0; i < n; ++i) m[i] = std::max(m[i], static_cast<acc_t>(base[c * HW + i]));
      }
      for (int64_t c = 0; c < C; ++c) {
        acc_t* pr = prob.data() + c * kBlock;
LTB_SIMD
        for (int64_t i = 0; i < n; ++i) {
          pr[i] = softmax_px::exp_(static_cast<acc_t>(base[c * HW + i]) - m[i]);
          s[i] += pr[i];
        }
      }
      for (int64_t i = 0; i < n; ++i) s[i] = acc_t(1) / s[i];
      for (int64_t c = 0; c < C; ++c) {
        acc_t* pr = prob.data() + c * kBlock;
LTB_SIMD
        for (int64_t i = 0; i < n; ++i) pr[i] *= s[i];
      }
      body_factory(b, p0, n, prob.data());
    }
  });
}

at::Tensor imitation_bce_cpu(const at::Tensor& logits, const at::Tensor& idx) {
  check_imitation_bce_args("ltbench::imitation_bce", logits, idx);
  auto l = logits.contiguous();
  auto k = idx.to(at::kLong).contiguous();
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3), N = l.numel();
  if (N == 0) return at::full({}, std::numeric_limits<double>::quiet_NaN(), l.options());  // mean of nothing, as BCELoss
  TORCH_CHECK(k.min().item<int64_t>() >= 0 && k.max().item<int64_t>() < C, "ltbench::imitation_bce: idx must be in [0, ",
              C, ")");
  double total = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "imitation_bce_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t* pk = k.data_ptr<int64_t>();
    const int64_t nblk = (HW + kBlock - 1) / kBlock;
    std::vector<double> partial(B * nblk, 0.0);  // per-block sums: a deterministic reduction order
    for_blocks<scalar_t, acc_t>(l.data_ptr<scalar_t>(), B, C, HW, [&](int64_t b, int64_t p0, int64_t n, const acc_t* prob) {
      // sum_c bce = -sum_c log(1 - p_c) + per pixel [log(1 - p_k) - log(p_k)] (clamped terms).
      // sum_c log(1 - p_c) = log prod_c (1 - p_c): one log per pixel instead of one per
      // element. The product cannot underflow (sum_c p_c = 1, so at most one factor is small,
      // and it is >= the dtype's epsilon); a factor that rounds to 0 is a clamped term of
      // exactly 100, counted apart. Unclamped terms are > -log(eps) > -100, as in BCELoss.
      acc_t prod[kBlock], zeros[kBlock];
      for (int64_t i = 0; i < n; ++i) prod[i] = acc_t(1), zeros[i] = acc_t(0);
      for (int64_t c = 0; c < C; ++c) {
        const acc_t* pr = prob + c * kBlock;
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) {
          const acc_t q = acc_t(1) - pr[i];
          const bool z = q <= acc_t(0);
          prod[i] *= z ? acc_t(1) : q;
          zeros[i] += z ? acc_t(1) : acc_t(0);
        }
      }
      double sum = 0.0;
      const int64_t* kk = pk + b * HW + p0;
      for (int64_t i = 0; i < n; ++i) {
        const acc_t pt = prob[kk[i] * kBlock + i];
        sum += static_cast<double>(-softmax_px::log_(prod[i]) - acc_t(softmax_px::kLogClamp) * zeros[i] +
                                   softmax_px::bce_term(pt, true) - softmax_px::bce_term(pt, false));
      }
      partial[b * nblk + p0 / kBlock] = sum;
    });
    for (double v : partial) total += v;
  });
  return at::full({}, total / static_cast<double>(N), l.options());
}

at::Tensor imitation_bce_backward_cpu(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& idx) {
  check_imitation_bce_args("ltbench::imitation_bce_backward", logits, idx);
  auto l = logits.contiguous();
  auto k = idx.to(at::kLong).contiguous();
  auto out = at::empty_like(l);
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3), N = l.numel();
  if (N == 0) return out;
  const double scale = grad.item<double>() / static_cast<double>(N);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "imitation_bce_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t* pk = k.data_ptr<int64_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    for_blocks<scalar_t, acc_t>(l.data_ptr<scalar_t>(), B, C, HW, [&](int64_t b, int64_t p0, int64_t n, const acc_t* prob) {
      // dL/dl_j = p_j (g_j - sum_c g_c p_c), g_c = dL/dp_c of the clamped BCE
      thread_local std::vector<acc_t> gbuf;
      gbuf.resize(C * kBlock);
      acc_t dot[kBlock];
      const int64_t* kk = pk + b * HW + p0;
      for (int64_t i = 0; i < n; ++i) dot[i] = acc_t(0);
      for (int64_t c = 0; c < C; ++c) {
        const acc_t* pr = prob + c * kBlock;
        acc_t* g = gbuf.data() + c * kBlock;
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) {
          g[i] = softmax_px::bce_dp(pr[i], kk[i] == c);
          dot[i] += g[i] * pr[i];
        }
      }
      const acc_t sc = static_cast<acc_t>(scale);
      for (int64_t c = 0; c < C; ++c) {
        const acc_t* pr = prob + c * kBlock;
        const acc_t* g = gbuf.data() + c * kBlock;
        scalar_t* o = po + b * C * HW + c * HW + p0;
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) o[i] = static_cast<scalar_t>(sc * pr[i] * (g[i] - dot[i]));
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CPU, m) {
  m.impl("imitation_bce", &ltbench::imitation_bce_cpu);
  m.impl("imitation_bce_backward", &ltbench::imitation_bce_backward_cpu);
}
