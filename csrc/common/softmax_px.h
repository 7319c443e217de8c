// Softmax over the channels of one pixel, shared by channel_sample and imitation_bce: the one
// copy that the CPU loops (<op>_cpu_kernels.h, channel-outer and pixel-inner so they vectorise)
// and the CUDA kernels (one thread per pixel) both call. Only indexing, loop order and launch differ between the
// backends; every value is computed by the functions below, in the same order:
//   m = max_c l_c            (max_step over c = 0..C-1)
//   s = sum_c exp(l_c - m)   (exp_shift, summed over c = 0..C-1)
//   p_c = exp(l_c - m) * (1 / s)
// NaN and inf propagate as in torch.softmax: a NaN or +inf logit, or a pixel whose logits are
// all -inf, makes every p of the pixel NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "common/fastmath.h"
#include "common/host_device.h"

namespace ltbench {
namespace softmax_px {

template <typename acc_t>
LTB_HOST_DEVICE acc_t exp_(acc_t x) {
  return fastmath::exp_any(x);
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t log_(acc_t x) {
  return fastmath::log_any(x);
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t neg_inf() {
  return -std::numeric_limits<acc_t>::infinity();
}

// Running max over channels. A NaN logit is skipped here and reaches s through exp_shift.
template <typename acc_t>
LTB_HOST_DEVICE acc_t max_step(acc_t m, acc_t x) {
  return x > m ? x : m;
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t exp_shift(acc_t x, acc_t m) {
  return exp_(x - m);
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t prob(acc_t e, acc_t inv_s) {
  return e * inv_s;
}

}  // namespace softmax_px
}  // namespace ltbench
