// CPU loops of imitation_bce and its backward, compiled once per instruction set
// (common/cpu_isa.h; see channel_sample_cpu_kernels.h). Every value comes from the shared
// per-pixel functions of channel_sample.h, the same ones the CUDA kernels call.
#ifndef LTB_CPU_ISA
#error "define LTB_CPU_ISA before including a *_cpu_kernels.h"
#endif

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/loops.h"
#include "ops/imitation_bce/imitation_bce.h"

namespace ltbench {
namespace LTB_CPU_ISA {
namespace bce_detail {

constexpr int64_t kBlock = 128;

// Walks pixel blocks: per block, the softmax of every pixel (max_step, exp_shift, prob over
// channel-outer loops on contiguous pixel runs), then `body(b, p0, n, probabilities)`, the
// probabilities stored channel-major with row stride kBlock.
template <typename scalar_t, typename acc_t, typename F>
void for_blocks(const scalar_t* pl, int64_t B, int64_t C, int64_t HW, F&& body) {
  const int64_t nblk = (HW + kBlock - 1) / kBlock;
  at::parallel_for(0, B * nblk, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> prob(C * kBlock);
    acc_t m[kBlock], s[kBlock];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / nblk, p0 = (t % nblk) * kBlock, n = std::min(kBlock, HW - p0);
      const scalar_t* base = pl + b * C * HW + p0;
      for (int64_t i = 0; i < n; ++i) m[i] = softmax_px::neg_inf<acc_t>(), s[i] = acc_t(0);
      for (int64_t c = 0; c < C; ++c) {
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) m[i] = softmax_px::max_step(m[i], static_cast<acc_t>(base[c * HW + i]));
      }
      for (int64_t c = 0; c < C; ++c) {
        acc_t* pr = prob.data() + c * kBlock;
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) {
          pr[i] = softmax_px::exp_shift(static_cast<acc_t>(base[c * HW + i]), m[i]);
          s[i] += pr[i];
        }
      }
      for (int64_t i = 0; i < n; ++i) s[i] = acc_t(1) / s[i];
      for (int64_t c = 0; c < C; ++c) {
        acc_t* pr = prob.data() + c * kBlock;
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) pr[i] = softmax_px::prob(pr[i], s[i]);
      }
      body(b, p0, n, static_cast<const acc_t*>(prob.data()));
    }
  });
}

}  // namespace bce_detail

// Sum over all pixels of the per-pixel BCE (the caller divides by B*C*H*W). l contiguous
// [B, C, H, W], k contiguous int64 [B, H, W] in [0, C).
double imitation_bce_sum_kernel(const at::Tensor& l, const at::Tensor& k) {
  using bce_detail::kBlock;
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3);
  double total = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "imitation_bce_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t* pk = k.data_ptr<int64_t>();
    const int64_t nblk = (HW + kBlock - 1) / kBlock;
    std::vector<double> partial(B * nblk, 0.0);  // per-block sums: a deterministic reduction order
    bce_detail::for_blocks<scalar_t, acc_t>(l.data_ptr<scalar_t>(), B, C, HW, [&](int64_t b, int64_t p0, int64_t n, const acc_t* prob) {
      acc_t prod[kBlock], zeros[kBlock];
      for (int64_t i = 0; i < n; ++i) prod[i] = acc_t(1), zeros[i] = acc_t(0);
      for (int64_t c = 0; c < C; ++c) {
        const acc_t* pr = prob + c * kBlock;
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) softmax_px::bce_prod_step(pr[i], prod[i], zeros[i]);
      }
      double sum = 0.0;
      const int64_t* kk = pk + b * HW + p0;
      for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(softmax_px::bce_pixel(prod[i], zeros[i], prob[kk[i] * kBlock + i]));
      partial[b * nblk + p0 / kBlock] = sum;
    });
    for (double v : partial) total += v;
  });
  return total;
}

// out[B, C, H, W] = d(mean BCE)/d logits * grad (scale = grad / (B*C*H*W)).
void imitation_bce_backward_kernel(double scale, const at::Tensor& l, const at::Tensor& k, at::Tensor& out) {
  using bce_detail::kBlock;
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "imitation_bce_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t* pk = k.data_ptr<int64_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const acc_t sc = static_cast<acc_t>(scale);
    bce_detail::for_blocks<scalar_t, acc_t>(l.data_ptr<scalar_t>(), B, C, HW, [&](int64_t b, int64_t p0, int64_t n, const acc_t* prob) {
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
      for (int64_t c = 0; c < C; ++c) {
        const acc_t* pr = prob + c * kBlock;
        const acc_t* g = gbuf.data() + c * kBlock;
        scalar_t* o = po + b * C * HW + c * HW + p0;
        LTB_SIMD
        for (int64_t i = 0; i < n; ++i) o[i] = static_cast<scalar_t>(softmax_px::bce_grad(sc, pr[i], g[i], dot[i]));
      }
    });
  });
}

}  // namespace LTB_CPU_ISA
}  // namespace ltbench
