// Launch geometry shared by the CUDA kernels: grid-stride loops over n elements with enough
// blocks to fill every SM a few times over, never more blocks than elements need.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace ltbench {

constexpr int kThreads = 256;

inline int grid_for(int64_t n, int threads = kThreads) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, sms * 32)));
}

}  // namespace ltbench
