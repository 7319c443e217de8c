#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_launch.cuh"
#include "ops/imitation_bce/imitation_bce.h"

namespace ltbench {
void check_imitation_bce_args(const char* op, const at::Tensor& logits, const at::Tensor& idx);
void check_imitation_bce_grad(const char* op, const at::Tensor& grad);

namespace {

// The pixel's softmax, as the CPU loops compute it (the same shared functions, same order).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void pixel_softmax(const scalar_t* px, int64_t HW, int64_t C, acc_t& m, acc_t& inv) {
  m = softmax_px::neg_inf<acc_t>();
  acc_t s = acc_t(0);
  for (int64_t c = 0; c < C; ++c) m = softmax_px::max_step(m, static_cast<acc_t>(px[c * HW]));
  for (int64_t c = 0; c < C; ++c) s += softmax_px::exp_shift(static_cast<acc_t>(px[c * HW]), m);
  inv = acc_t(1) / s;
}

// One thread per pixel; per-block partial sums (reduced in shared memory) are summed by
// at::sum afterwards, so the result does not depend on atomics' ordering.
template <typename scalar_t, typename acc_t>
__global__ void bce_forward_kernel(const scalar_t* __restrict__ l, const int64_t* __restrict__ k,
                                   double* __restrict__ partial, int64_t B, int64_t C, int64_t HW) {
  __shared__ double red[kThreads];
  double sum = 0.0;
  const int64_t n = B * HW;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = i / HW, p = i % HW;
    const scalar_t* px = l + b * C * HW + p;
    acc_t m, inv;
    pixel_softmax<scalar_t, acc_t>(px, HW, C, m, inv);
    const int64_t target = k[i];
    acc_t prod = acc_t(1), zeros = acc_t(0), pt = acc_t(0);
    for (int64_t c = 0; c < C; ++c) {
      const acc_t pc = softmax_px::prob(softmax_px::exp_shift(static_cast<acc_t>(px[c * HW]), m), inv);
      softmax_px::bce_prod_step(pc, prod, zeros);
      pt = c == target ? pc : pt;
    }
    sum += static_cast<double>(softmax_px::bce_pixel(prod, zeros, pt));
  }
  red[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = red[0];
}

template <typename scalar_t, typename acc_t>
__global__ void bce_backward_kernel(const scalar_t* __restrict__ l, const int64_t* __restrict__ k, acc_t scale,
                                    scalar_t* __restrict__ out, int64_t B, int64_t C, int64_t HW) {
  const int64_t n = B * HW;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = i / HW, p = i % HW;
    const scalar_t* px = l + b * C * HW + p;
    scalar_t* o = out + b * C * HW + p;
    acc_t m, inv;
    pixel_softmax<scalar_t, acc_t>(px, HW, C, m, inv);
    const int64_t target = k[i];
    acc_t dot = acc_t(0);
    for (int64_t c = 0; c < C; ++c) {
      const acc_t pc = softmax_px::prob(softmax_px::exp_shift(static_cast<acc_t>(px[c * HW]), m), inv);
      dot += softmax_px::bce_dp(pc, c == target) * pc;
    }
    for (int64_t c = 0; c < C; ++c) {
      const acc_t pc = softmax_px::prob(softmax_px::exp_shift(static_cast<acc_t>(px[c * HW]), m), inv);
      o[c * HW] = static_cast<scalar_t>(softmax_px::bce_grad(scale, pc, softmax_px::bce_dp(pc, c == target), dot));
    }
  }
}

at::Tensor imitation_bce_cuda(const at::Tensor& logits, const at::Tensor& idx) {
  check_imitation_bce_args("ltbench::imitation_bce", logits, idx);
  const c10::cuda::CUDAGuard guard(logits.device());
  auto l = logits.contiguous();
  auto k = idx.to(at::kLong).contiguous();
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3), N = l.numel();
  if (N == 0) return at::full({}, std::numeric_limits<double>::quiet_NaN(), l.options());
  // as on the CPU: an index outside [0, C) is an error, not a silently wrong loss (a sync, which
  // the Python wrapper's own check costs anyway)
  TORCH_CHECK(k.min().item<int64_t>() >= 0 && k.max().item<int64_t>() < C, "ltbench::imitation_bce: idx must be in [0, ",
              C, ")");
  const int blocks = grid_for(B * HW);
  auto partial = at::empty({blocks}, l.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "imitation_bce_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    bce_forward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        l.data_ptr<scalar_t>(), k.data_ptr<int64_t>(), partial.data_ptr<double>(), B, C, HW);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return (partial.sum() / static_cast<double>(N)).to(l.scalar_type());
}

at::Tensor imitation_bce_backward_cuda(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& idx) {
  check_imitation_bce_args("ltbench::imitation_bce_backward", logits, idx);
  check_imitation_bce_grad("ltbench::imitation_bce_backward", grad);
  const c10::cuda::CUDAGuard guard(logits.device());
  auto l = logits.contiguous();
  auto k = idx.to(at::kLong).contiguous();
  auto out = at::empty_like(l);
  const int64_t B = l.size(0), C = l.size(1), HW = l.size(2) * l.size(3), N = l.numel();
  if (N == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.scalar_type(), "imitation_bce_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t scale = static_cast<acc_t>(grad.item<double>() / static_cast<double>(N));
    bce_backward_kernel<scalar_t, acc_t><<<grid_for(B * HW), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        l.data_ptr<scalar_t>(), k.data_ptr<int64_t>(), scale, out.data_ptr<scalar_t>(), B, C, HW);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CUDA, m) {
  m.impl("imitation_bce", &ltbench::imitation_bce_cuda);
  m.impl("imitation_bce_backward", &ltbench::imitation_bce_backward_cuda);
}
