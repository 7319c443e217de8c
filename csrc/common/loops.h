// Shared helpers of the CPU and CUDA kernels.
#pragma once

#ifdef __CUDACC__
#define LTB_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LTB_HOST_DEVICE inline __attribute__((always_inline))  // inlined, so simd loops calling it vectorise
#endif

#include <ATen/ATen.h>

// "#pragma omp simd" spelled so it may appear inside macro arguments (AT_DISPATCH lambdas).
#define LTB_SIMD _Pragma("omp simd")

namespace ltbench {

// 0/1 masks may come as bool, uint8 or float; kernels read them as bool.
inline at::Tensor as_bool_mask(const at::Tensor& m) {
  return (m.scalar_type() == at::kBool ? m : m.ne(0)).contiguous();
}

}  // namespace ltbench
