#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/checks.h"
#include "ops/channel_sample/channel_sample.h"

namespace ltbench {

void check_channel_sample_args(const at::Tensor& logits, const at::Tensor& u) {
  const char* op = "ltbench::channel_sample";
  LTB_CHECK_DIM(op, logits, 4);
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": logits must be floating point, got ", logits.scalar_type());
  TORCH_CHECK(logits.size(1) > 0, op, ": logits need at least one channel");
  TORCH_CHECK(u.dim() == 3 && u.size(0) == logits.size(0) && u.size(1) == logits.size(2) && u.size(2) == logits.size(3),
              op, ": u must be [B, H, W] = [", logits.size(0), ", ", logits.size(2), ", ", logits.size(3), "], got ",
              u.sizes());
  TORCH_CHECK(at::isFloatingType(u.scalar_type()), op, ": u must be floating point, got ", u.scalar_type());
  LTB_CHECK_SAME_DEVICE(op, logits, u);
}

namespace {

constexpr int64_t kBlock = 256;  // pixels per task: a block of each channel row is one cache-friendly run

at::Tensor channel_sample_cpu(const at::Tensor& logits, const at::Tensor& u) {
  check_channel_sample_args(logits, u);
  auto l = logits.contiguous();
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3);
  auto out = at::empty({B, l.size(2), l.size(3)}, l.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "channel_sample_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto uu = u.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    const scalar_t* pl = l.data_ptr<scalar_t>();
    const acc_t* pu = uu.data_ptr<acc_t>();
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
        // channel-outer, pixel-inner: every inner loop is a contiguous, vectorised run
        for (int64_t i = 0; i < n; ++i) m[i] = -std::numeric_limits<acc_t>::infinity();
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* row = base + c * HW;
          LTB_SIMD
          for (int64_t i = 0; i < n; ++i) m[i] = std::max(m[i], static_cast<acc_t>(row[i]));
        }
        for (int64_t i = 0; i < n; ++i) s[i] = acc_t(0), acc[i] = acc_t(0), idx[i] = 0, last[i] = 0, found[i] = 0;
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* row = base + c * HW;
          acc_t* ec = e.data() + c * kBlock;
          LTB_SIMD
          for (int64_t i = 0; i < n; ++i) {
            ec[i] = softmax_px::exp_(static_cast<acc_t>(row[i]) - m[i]);
            s[i] += ec[i];
          }
        }
        for (int64_t i = 0; i < n; ++i) s[i] = acc_t(1) / s[i];
        const acc_t* uu_b = pu + b * HW + p0;
        // walk the cumulative sum; branch-free so it vectorises
        for (int32_t c = 0; c < static_cast<int32_t>(C); ++c) {
          const acc_t* ec = e.data() + c * kBlock;
          LTB_SIMD
          for (int64_t i = 0; i < n; ++i) {
            const acc_t pc = ec[i] * s[i];
            last[i] = pc > acc_t(0) ? c : last[i];
            acc[i] += pc;
            const int32_t hit = (found[i] == 0) & (acc[i] > uu_b[i]);
            idx[i] = hit ? c : idx[i];
            found[i] |= hit;
          }
        }
        int64_t* o = po + b * HW + p0;
        for (int64_t i = 0; i < n; ++i) o[i] = found[i] ? idx[i] : last[i];
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CPU, m) { m.impl("channel_sample", &ltbench::channel_sample_cpu); }
