// Per-element math of the build probe, shared by the CPU loop and the CUDA kernel.
#pragma once

#include <ATen/OpMathType.h>

#include "common/host_device.h"

namespace ltbench {
namespace probe {

// Computes in the op-math type (float for half/bfloat16, double for double) so float64
// gradcheck sees exact arithmetic.
template <typename scalar_t>
LTB_HOST_DEVICE scalar_t scale(scalar_t x, double alpha) {
  using acc_t = at::opmath_type<scalar_t>;
  return static_cast<scalar_t>(static_cast<acc_t>(x) * static_cast<acc_t>(alpha));
}

}  // namespace probe
}  // namespace ltbench
