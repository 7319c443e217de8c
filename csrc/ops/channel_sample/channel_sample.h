// Per-pixel math of channel_sample and imitation_bce, shared by the CPU loops and CUDA kernels.
// A pixel's C logits sit at l[0], l[stride], ..., l[(C-1)*stride] (NCHW: stride = H*W).
#pragma once

#include <cmath>
#include <limits>

#include "common/fastmath.h"
#include "common/loops.h"

namespace ltbench {
namespace softmax_px {

// CUDA: the device's exp/log; CPU: fastmath's vectorisable versions for float.
template <typename acc_t>
LTB_HOST_DEVICE acc_t exp_(acc_t x) {
#ifdef __CUDA_ARCH__
  return ::exp(x);
#else
  return fastmath::exp_any(x);
#endif
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t log_(acc_t x) {
#ifdef __CUDA_ARCH__
  return ::log(x);
#else
  return fastmath::log_any(x);
#endif
}

// Pass 1 (online softmax): running max and the sum of exp(l - max), rescaled when the max grows.
template <typename T, typename acc_t>
LTB_HOST_DEVICE void max_sum(const T* l, int64_t stride, int64_t C, acc_t& m, acc_t& s) {
  m = -std::numeric_limits<acc_t>::infinity();
  s = acc_t(0);
  for (int64_t c = 0; c < C; ++c) {
    const acc_t x = static_cast<acc_t>(l[c * stride]);
    if (x > m) {
      s = (m == -std::numeric_limits<acc_t>::infinity() ? acc_t(0) : s * exp_(m - x)) + acc_t(1);
      m = x;
    } else {
      s += exp_(x - m);
    }
  }
}

// Pass 2 of the inverse-CDF draw: first c with cumsum(p) > u, else the last c with p > 0.
template <typename T, typename acc_t>
LTB_HOST_DEVICE int64_t draw(const T* l, int64_t stride, int64_t C, acc_t m, acc_t inv_s, acc_t u) {
  acc_t acc = acc_t(0);
  int64_t last = 0;
  for (int64_t c = 0; c < C; ++c) {
    const acc_t p = exp_(static_cast<acc_t>(l[c * stride]) - m) * inv_s;
    if (p > acc_t(0)) last = c;
    acc += p;
    if (acc > u) return c;
  }
  return last;
}

// torch.nn.BCELoss clamps both logs at -100 and its gradient divides by max(p (1 - p), 1e-12).
constexpr double kLogClamp = -100.0;
constexpr double kGradEps = 1e-12;

template <typename acc_t>
LTB_HOST_DEVICE acc_t bce_term(acc_t p, bool target) {
  const acc_t lg = target ? log_(p) : log_(acc_t(1) - p);
  return -(lg > acc_t(kLogClamp) ? lg : acc_t(kLogClamp));
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t bce_dp(acc_t p, bool target) {
  const acc_t den = p * (acc_t(1) - p);
  return (p - (target ? acc_t(1) : acc_t(0))) / (den > acc_t(kGradEps) ? den : acc_t(kGradEps));
}

}  // namespace softmax_px
}  // namespace ltbench
