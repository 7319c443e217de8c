#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cuda_launch.cuh"
#include "common/loops.h"
#include "ops/mask_fuse/mask_fuse.h"
#include "ops/mask_fuse/mask_fuse_host.h"

namespace ltbench {
namespace {

at::Tensor pick_mask_cuda(const at::Tensor& m_s, const at::Tensor& m_g, const at::Tensor& m_r) {
  auto s = as_bool_mask(m_s), g = as_bool_mask(m_g), r = as_bool_mask(m_r);
  return at::where(s.ne(g), s, r).contiguous();  // [B, H, W]: C times smaller than z
}

// Scalar path: one element per thread-iteration (any dtype, any alignment).
template <typename scalar_t>
__global__ void fuse_kernel(const scalar_t* __restrict__ zt, const scalar_t* __restrict__ zh,
                            const bool* __restrict__ pick, scalar_t* __restrict__ out, int64_t n, int64_t C,
                            int64_t HW) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = i / (C * HW), p = i % HW;
    out[i] = mask_fuse::select(pick[b * HW + p], zt[i], zh[i]);
  }
}

// float4 path: 16-byte loads and stores (HW % 4 == 0, so a vector never straddles planes).
__global__ void fuse_kernel_f4(const float4* __restrict__ zt, const float4* __restrict__ zh,
                               const bool* __restrict__ pick, float4* __restrict__ out, int64_t n4, int64_t C,
                               int64_t HW) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t e = i * 4, b = e / (C * HW), p = e % HW;
    const bool* k = pick + b * HW + p;
    const float4 a = zt[i], h = zh[i];
    out[i] = make_float4(k[0] ? a.x : h.x, k[1] ? a.y : h.y, k[2] ? a.z : h.z, k[3] ? a.w : h.w);
  }
}

template <typename scalar_t>
__global__ void fuse_backward_kernel(const scalar_t* __restrict__ g, const bool* __restrict__ pick,
                                     scalar_t* __restrict__ gt, scalar_t* __restrict__ gh, int64_t n, int64_t C,
                                     int64_t HW) {
  const scalar_t zero(0);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = i / (C * HW), p = i % HW;
    const bool k = pick[b * HW + p];
    gt[i] = k ? g[i] : zero;
    gh[i] = k ? zero : g[i];
  }
}

void mask_fuse_into_cuda(const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s,
                               const at::Tensor& m_g, const at::Tensor& m_r, at::Tensor& out) {
  check_mask_fuse_args("ltbench::mask_fuse", z_t, z_h, m_s, m_g, m_r);
  TORCH_CHECK(out.sizes() == z_t.sizes() && out.scalar_type() == z_t.scalar_type() && out.is_contiguous() &&
                  out.device() == z_t.device(),
              "ltbench::mask_fuse: out must be a contiguous ", z_t.scalar_type(), " tensor of shape ", z_t.sizes());
  const c10::cuda::CUDAGuard guard(z_t.device());
  auto a = z_t.contiguous(), h = z_h.contiguous();
  const int64_t n = out.numel();
  if (n == 0) return;
  auto pick = pick_mask_cuda(m_s, m_g, m_r);
  const int64_t C = a.size(1), HW = a.size(2) * a.size(3);
  const int threads = kThreads;
  auto stream = at::cuda::getCurrentCUDAStream();
  const bool vec4 = a.scalar_type() == at::kFloat && HW % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(a.data_ptr()) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(h.data_ptr()) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(out.data_ptr()) % 16 == 0;
  if (vec4) {
    fuse_kernel_f4<<<grid_for(n / 4, threads), threads, 0, stream>>>(
        reinterpret_cast<const float4*>(a.data_ptr<float>()), reinterpret_cast<const float4*>(h.data_ptr<float>()),
        pick.data_ptr<bool>(), reinterpret_cast<float4*>(out.data_ptr<float>()), n / 4, C, HW);
  } else {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "mask_fuse_cuda", [&] {
      fuse_kernel<scalar_t><<<grid_for(n, threads), threads, 0, stream>>>(
          a.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), pick.data_ptr<bool>(), out.data_ptr<scalar_t>(), n, C, HW);
    });
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor mask_fuse_cuda(const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s, const at::Tensor& m_g,
                          const at::Tensor& m_r) {
  auto out = at::empty(z_t.sizes(), z_t.options().memory_format(at::MemoryFormat::Contiguous));
  mask_fuse_into_cuda(z_t, z_h, m_s, m_g, m_r, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> mask_fuse_backward_cuda(const at::Tensor& grad, const at::Tensor& m_s,
                                                           const at::Tensor& m_g, const at::Tensor& m_r) {
  LTB_CHECK_DIM("ltbench::mask_fuse_backward", grad, 4);
  const c10::cuda::CUDAGuard guard(grad.device());
  auto g = grad.contiguous();
  auto gt = at::empty_like(g), gh = at::empty_like(g);
  const int64_t n = g.numel();
  if (n == 0) return {gt, gh};
  auto pick = pick_mask_cuda(m_s, m_g, m_r);
  const int64_t C = g.size(1), HW = g.size(2) * g.size(3);
  const int threads = kThreads;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "mask_fuse_backward_cuda", [&] {
    fuse_backward_kernel<scalar_t><<<grid_for(n, threads), threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        g.data_ptr<scalar_t>(), pick.data_ptr<bool>(), gt.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(), n, C, HW);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gt, gh};
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CUDA, m) {
  m.impl("mask_fuse", &ltbench::mask_fuse_cuda);
  m.impl("mask_fuse.out", &ltbench::mask_fuse_into_cuda);
  m.impl("mask_fuse_backward", &ltbench::mask_fuse_backward_cuda);
}
