// Per-pixel math of imitation_bce (Eq. 2) and its backward, called by the CPU loops and the CUDA
// kernels alike; the softmax is common/softmax_px.h.
#pragma once

#include "common/host_device.h"
#include "common/softmax_px.h"

namespace ltbench {
namespace softmax_px {

// ---- imitation_bce: BCE(softmax(l), one_hot(k)) summed over the channels of a pixel ----------
// torch.nn.BCELoss clamps both logs at -100 and its gradient divides by max(p (1 - p), 1e-12).
constexpr double kLogClamp = -100.0;
constexpr double kGradEps = 1e-12;

// -max(log(x), -100), NaN kept (a NaN compares false, so it is returned as is).
template <typename acc_t>
LTB_HOST_DEVICE acc_t neg_clamped_log(acc_t x) {
  const acc_t lg = log_(x);
  return -(lg < acc_t(kLogClamp) ? acc_t(kLogClamp) : lg);
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t bce_term(acc_t p, bool target) {
  return neg_clamped_log(target ? p : acc_t(1) - p);
}

// sum_c bce = -sum_c log(1 - p_c) + [log(1 - p_k) - log(p_k)] (clamped terms), and
// sum_c log(1 - p_c) = log prod_c (1 - p_c): one log per pixel instead of one per element.
// The product cannot underflow (sum_c p_c = 1, so at most one factor is small, and it is >= the
// dtype's epsilon); a factor that rounds to 0 is a clamped term of exactly 100, counted apart.
// Unclamped terms are > -log(eps) > -100, as in BCELoss. A NaN p makes prod NaN.
template <typename acc_t>
LTB_HOST_DEVICE void bce_prod_step(acc_t p, acc_t& prod, acc_t& zeros) {
  const acc_t q = acc_t(1) - p;
  const bool z = q <= acc_t(0);
  prod *= z ? acc_t(1) : q;
  zeros += z ? acc_t(1) : acc_t(0);
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t bce_pixel(acc_t prod, acc_t zeros, acc_t p_target) {
  return -log_(prod) - acc_t(kLogClamp) * zeros + bce_term(p_target, true) - bce_term(p_target, false);
}

// dBCE/dp_c (BCELoss's formula; a NaN p gives NaN).
template <typename acc_t>
LTB_HOST_DEVICE acc_t bce_dp(acc_t p, bool target) {
  const acc_t den = p * (acc_t(1) - p);
  return (p - (target ? acc_t(1) : acc_t(0))) / (den > acc_t(kGradEps) ? den : acc_t(kGradEps));
}

// dL/dl_c = scale * p_c (g_c - sum_j g_j p_j), g = bce_dp: the softmax's backward.
template <typename acc_t>
LTB_HOST_DEVICE acc_t bce_grad(acc_t scale, acc_t p, acc_t g, acc_t dot) {
  return scale * p * (g - dot);
}

}  // namespace softmax_px
}  // namespace ltbench
