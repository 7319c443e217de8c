// Per-pixel math of channel_sample (the inverse-CDF draw), called by the CPU loops and the CUDA
// kernel alike; the softmax it draws from is common/softmax_px.h.
#pragma once

#include <cstdint>

#include "common/host_device.h"
#include "common/softmax_px.h"

namespace ltbench {
namespace softmax_px {

// ---- channel_sample: inverse-CDF draw --------------------------------------------------------
// State per pixel: acc = cumsum of p so far, idx = the first c with acc > u (valid once found),
// last = the last c with p > 0. Result: idx if found, else last (rounding can leave u >= the
// total; a NaN u never compares, so it also yields last).
template <typename acc_t>
LTB_HOST_DEVICE void draw_step(int32_t c, acc_t p, acc_t u, acc_t& acc, int32_t& idx, int32_t& last,
                               int32_t& found) {
  last = p > acc_t(0) ? c : last;
  acc += p;
  const int32_t hit = (found == 0) & (acc > u);
  idx = hit ? c : idx;
  found |= hit;
}

LTB_HOST_DEVICE int64_t draw_result(int32_t found, int32_t idx, int32_t last) { return found ? idx : last; }

}  // namespace softmax_px
}  // namespace ltbench
