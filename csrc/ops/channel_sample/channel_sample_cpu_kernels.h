// CPU loops of channel_sample, compiled once per instruction set (common/cpu_isa.h): included
// by channel_sample_cpu.cpp (LTB_CPU_ISA = isa_base) and channel_sample_cpu_avx2.cpp
// (isa_avx2). Every value comes from the shared per-pixel functions of channel_sample.h; the
// loops only order the work channel-outer, pixel-inner, so each inner loop is a contiguous,
// vectorised run.
#ifndef LTB_CPU_ISA
#error "define LTB_CPU_ISA before including a *_cpu_kernels.h"
#endif

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/loops.h"
#include "ops/channel_sample/channel_sample.h"

namespace ltbench {
namespace LTB_CPU_ISA {

// Writes idx[B, H, W]; l contiguous [B, C, H, W] (C > 0), u contiguous [B, H, W] of acc type.
void channel_sample_kernel(const at::Tensor& l, const at::Tensor& u, at::Tensor& out) {
  constexpr int64_t kBlock = 256;  // pixels per task: a block of each channel row is one cache-friendly run
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "channel_sample_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pl = l.data_ptr<scalar_t>();
    const acc_t* pu = u.data_ptr<acc_t>();
    int64_t* po = out.data_ptr<int64_t>();
    const int64_t nblk = (HW + kBlock - 1) / kBlock;
    at::parallel_for(0, B * nblk, 1, [&](int64_t begin, int64_t end) {
      // exp(l - max) of a block of pixels for every channel: C * kBlock values (64 KiB for
      // C = 64), cache-resident, so each logit is read once and exponentiated once.
      std::vector<acc_t> e(C * kBlock);
      acc_t m[kBlock], s[kBlock], acc[kBlock];
      // 32-bit bookkeeping next to 32-bit floats keeps the vector lanes aligned
      int32_t idx[kBlock], last[kBlock], found[kBlock];
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / nblk, p0 = (t % nblk) * kBlock, n = std::min(kBlock, HW - p0);
        const scalar_t* base = pl + b * C * HW + p0;
        for (int64_t i = 0; i < n; ++i) m[i] = softmax_px::neg_inf<acc_t>();
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* row = base + c * HW;
          LTB_SIMD
          for (int64_t i = 0; i < n; ++i) m[i] = softmax_px::max_step(m[i], static_cast<acc_t>(row[i]));
        }
        for (int64_t i = 0; i < n; ++i) s[i] = acc_t(0), acc[i] = acc_t(0), idx[i] = 0, last[i] = 0, found[i] = 0;
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* row = base + c * HW;
          acc_t* ec = e.data() + c * kBlock;
          LTB_SIMD
          for (int64_t i = 0; i < n; ++i) {
            ec[i] = softmax_px::exp_shift(static_cast<acc_t>(row[i]), m[i]);
            s[i] += ec[i];
          }
        }
        for (int64_t i = 0; i < n; ++i) s[i] = acc_t(1) / s[i];
        const acc_t* ub = pu + b * HW + p0;
        for (int32_t c = 0; c < static_cast<int32_t>(C); ++c) {
          const acc_t* ec = e.data() + c * kBlock;
          LTB_SIMD
          for (int64_t i = 0; i < n; ++i) softmax_px::draw_step(c, softmax_px::prob(ec[i], s[i]), ub[i], acc[i], idx[i], last[i], found[i]);
        }
        int64_t* o = po + b * HW + p0;
        for (int64_t i = 0; i < n; ++i) o[i] = softmax_px::draw_result(found[i], idx[i], last[i]);
      }
    });
  });
}

}  // namespace LTB_CPU_ISA
}  // namespace ltbench
