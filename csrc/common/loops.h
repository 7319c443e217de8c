// Shared helpers of the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

#include "common/host_device.h"

// "#pragma omp simd" spelled so it may appear inside macro arguments (AT_DISPATCH lambdas).
#define LTB_SIMD _Pragma("omp simd")

namespace ltbench {

// 0/1 masks may come as bool, uint8 or float; kernels read them as bool.
inline at::Tensor as_bool_mask(const at::Tensor& m) {
  return (m.scalar_type() == at::kBool ? m : m.ne(0)).contiguous();
}

}  // namespace ltbench
