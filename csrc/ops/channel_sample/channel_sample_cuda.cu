#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_launch.cuh"
#include "ops/channel_sample/channel_sample.h"

namespace ltbench {
void check_channel_sample_args(const at::Tensor& logits, const at::Tensor& u);

namespace {

// One thread per pixel: for consecutive threads the reads of channel c are consecutive
// addresses (NCHW), so every load is coalesced. The values are those of the CPU loops: the same
// shared functions (common/softmax_px.h, channel_sample.h) called in the same order; the logits
// are read three times (max, sum, draw; the pixel's C values stay in L1) and the probabilities
// and one-hots are never written: one int64 write per pixel.
template <typename scalar_t, typename acc_t>
__global__ void channel_sample_kernel(const scalar_t* __restrict__ l, const acc_t* __restrict__ u,
                                      int64_t* __restrict__ out, int64_t B, int64_t C, int64_t HW) {
  const int64_t n = B * HW;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = i / HW, p = i % HW;
    const scalar_t* px = l + b * C * HW + p;
    acc_t m = softmax_px::neg_inf<acc_t>(), s = acc_t(0);
    for (int64_t c = 0; c < C; ++c) m = softmax_px::max_step(m, static_cast<acc_t>(px[c * HW]));
    for (int64_t c = 0; c < C; ++c) s += softmax_px::exp_shift(static_cast<acc_t>(px[c * HW]), m);
    const acc_t inv = acc_t(1) / s, ui = u[i];
    acc_t acc = acc_t(0);
    int32_t idx = 0, last = 0, found = 0;
    for (int32_t c = 0; c < static_cast<int32_t>(C); ++c)
      softmax_px::draw_step(c, softmax_px::prob(softmax_px::exp_shift(static_cast<acc_t>(px[c * HW]), m), inv), ui, acc,
                            idx, last, found);
    out[i] = softmax_px::draw_result(found, idx, last);
  }
}

at::Tensor channel_sample_cuda(const at::Tensor& logits, const at::Tensor& u) {
  check_channel_sample_args(logits, u);
  const c10::cuda::CUDAGuard guard(logits.device());
  auto l = logits.contiguous();
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3);
  auto out = at::empty({B, l.size(2), l.size(3)}, l.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  const int blocks = grid_for(B * HW);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "channel_sample_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto uu = u.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    channel_sample_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        l.data_ptr<scalar_t>(), uu.data_ptr<acc_t>(), out.data_ptr<int64_t>(), B, C, HW);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CUDA, m) { m.impl("channel_sample", &ltbench::channel_sample_cuda); }
