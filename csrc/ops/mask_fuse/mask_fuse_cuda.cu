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

// One pick word per pixel ([B, H, W], C times smaller than z), from the shared pick_word.
template <typename U>
__global__ void pick_kernel(const bool* __restrict__ s, const bool* __restrict__ g, const bool* __restrict__ r,
                            U* __restrict__ w, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x)
    w[i] = mask_fuse::pick_word<U>(s[i], g[i], r[i]);
}

// Scalar path: one element per thread-iteration, on the scalars' bits (any dtype, any alignment).
template <typename U>
__global__ void fuse_kernel(const U* __restrict__ zt, const U* __restrict__ zh, const U* __restrict__ w,
                            U* __restrict__ out, int64_t n, int64_t C, int64_t HW) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = i / (C * HW), p = i % HW;
    out[i] = mask_fuse::select_bits(w[b * HW + p], zt[i], zh[i]);
  }
}

// 32-bit scalars, 16 bytes per load and store (HW % 4 == 0, so a vector never straddles planes).
__global__ void fuse_kernel_v4(const uint4* __restrict__ zt, const uint4* __restrict__ zh,
                               const uint32_t* __restrict__ w, uint4* __restrict__ out, int64_t n4, int64_t C,
                               int64_t HW) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t e = i * 4, b = e / (C * HW), p = e % HW;
    const uint32_t* k = w + b * HW + p;
    const uint4 a = zt[i], h = zh[i];
    out[i] = make_uint4(mask_fuse::select_bits(k[0], a.x, h.x), mask_fuse::select_bits(k[1], a.y, h.y),
                        mask_fuse::select_bits(k[2], a.z, h.z), mask_fuse::select_bits(k[3], a.w, h.w));
  }
}

template <typename U>
__global__ void fuse_backward_kernel(const U* __restrict__ g, const U* __restrict__ w, U* __restrict__ gt,
                                     U* __restrict__ gh, int64_t n, int64_t C, int64_t HW) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = i / (C * HW), p = i % HW;
    const U k = w[b * HW + p];
    gt[i] = mask_fuse::grad_tail_bits(k, g[i]);
    gh[i] = mask_fuse::grad_head_bits(k, g[i]);
  }
}

template <typename U>
at::Tensor pick_words_cuda(const at::Tensor& m_s, const at::Tensor& m_g, const at::Tensor& m_r, at::ScalarType word) {
  auto s = as_bool_mask(m_s), g = as_bool_mask(m_g), r = as_bool_mask(m_r);
  // int16/int32/int64 storage of the same width as U (the bits are read through U*)
  auto w = at::empty(s.sizes(), s.options().dtype(word));
  const int64_t n = s.numel();
  if (n > 0) {
    pick_kernel<U><<<grid_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        s.data_ptr<bool>(), g.data_ptr<bool>(), r.data_ptr<bool>(), reinterpret_cast<U*>(w.data_ptr()), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return w;
}

template <typename U>
constexpr at::ScalarType word_type() {
  return sizeof(U) == 2 ? at::kShort : (sizeof(U) == 4 ? at::kInt : at::kLong);
}

void mask_fuse_into_cuda(const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s, const at::Tensor& m_g,
                         const at::Tensor& m_r, at::Tensor& out) {
  check_mask_fuse_args("ltbench::mask_fuse", z_t, z_h, m_s, m_g, m_r);
  check_mask_fuse_out("ltbench::mask_fuse", z_t, out);
  const c10::cuda::CUDAGuard guard(z_t.device());
  auto a = z_t.contiguous(), h = z_h.contiguous();
  const int64_t n = out.numel();
  if (n == 0) return;
  const int64_t C = a.size(1), HW = a.size(2) * a.size(3);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "mask_fuse_cuda", [&] {
    using U = mask_fuse::bits_t<scalar_t>;
    auto w = pick_words_cuda<U>(m_s, m_g, m_r, word_type<U>());
    const U* pw = reinterpret_cast<const U*>(w.data_ptr());
    const bool vec4 = sizeof(U) == 4 && HW % 4 == 0 && reinterpret_cast<uintptr_t>(a.data_ptr()) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(h.data_ptr()) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(out.data_ptr()) % 16 == 0;
    if (vec4) {
      fuse_kernel_v4<<<grid_for(n / 4), kThreads, 0, stream>>>(
          reinterpret_cast<const uint4*>(a.data_ptr()), reinterpret_cast<const uint4*>(h.data_ptr()),
          reinterpret_cast<const uint32_t*>(w.data_ptr()), reinterpret_cast<uint4*>(out.data_ptr()), n / 4, C, HW);
    } else {
      fuse_kernel<U><<<grid_for(n), kThreads, 0, stream>>>(reinterpret_cast<const U*>(a.data_ptr()),
                                                            reinterpret_cast<const U*>(h.data_ptr()), pw,
                                                            reinterpret_cast<U*>(out.data_ptr()), n, C, HW);
    }
  });
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
  check_mask_fuse_backward_args("ltbench::mask_fuse_backward", grad, m_s, m_g, m_r);
  const c10::cuda::CUDAGuard guard(grad.device());
  auto g = grad.contiguous();
  auto gt = at::empty_like(g), gh = at::empty_like(g);
  const int64_t n = g.numel();
  if (n == 0) return {gt, gh};
  const int64_t C = g.size(1), HW = g.size(2) * g.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "mask_fuse_backward_cuda", [&] {
    using U = mask_fuse::bits_t<scalar_t>;
    auto w = pick_words_cuda<U>(m_s, m_g, m_r, word_type<U>());
    fuse_backward_kernel<U><<<grid_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        reinterpret_cast<const U*>(g.data_ptr()), reinterpret_cast<const U*>(w.data_ptr()),
        reinterpret_cast<U*>(gt.data_ptr()), reinterpret_cast<U*>(gh.data_ptr()), n, C, HW);
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
