#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_launch.cuh"
#include "ops/probe/probe.h"

namespace ltbench {
namespace {

template <typename scalar_t>
__global__ void probe_scale_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                                   int64_t n, double alpha) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)blockDim.x * gridDim.x) {
    dst[i] = probe::scale(src[i], alpha);
  }
}

at::Tensor probe_scale_cuda(const at::Tensor& x, double alpha) {
  LTB_CHECK_DEFINED("ltbench::probe_scale", x);
  TORCH_CHECK(x.is_floating_point(), "ltbench::probe_scale: x must be a floating tensor, got ",
              x.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto out = at::empty_like(xc);
  const int64_t n = xc.numel();
  if (n == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "probe_scale_cuda", [&] {
    probe_scale_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(
        xc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, alpha);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CUDA, m) { m.impl("probe_scale", &ltbench::probe_scale_cuda); }
