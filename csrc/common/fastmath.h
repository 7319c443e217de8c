// Branch-free float exp/log (Cephes polynomials, ~1-2 ulp on their normal range) written as
// plain arithmetic so the compiler vectorises the CPU loops that call them (glibc's expf/logf
// are opaque calls that keep a loop scalar). Used for float; double keeps std::exp/std::log.
// The CUDA kernels call these same functions (only the bit casts and floor are spelled with
// the device's intrinsics, which compute the same values), so the CPU tests check the
// arithmetic the GPU runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/host_device.h"

namespace ltbench {
namespace fastmath {

LTB_HOST_DEVICE float bits_to_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

LTB_HOST_DEVICE uint32_t float_to_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

LTB_HOST_DEVICE float floor_(float x) {
#ifdef __CUDA_ARCH__
  return ::floorf(x);
#else
  return std::floor(x);
#endif
}

// exp(x); exactly 0 below -87.3 (so exp(-inf) = 0 and "p > 0" tests stay meaningful).
LTB_HOST_DEVICE float expf(float x) {
  const float xc = x > 88.3762626647949f ? 88.3762626647949f : (x < -87.3365478515625f ? -87.3365478515625f : x);
  const float fx = floor_(xc * 1.44269504088896341f + 0.5f);
  float r = xc - fx * 0.693359375f + fx * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const float scale = bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(fx) + 127) << 23);
  return x < -87.3365478515625f ? 0.0f : y * scale;
}

// log(x) for x > 0 normal; log(x <= 0) -> -inf (callers clamp at -100 like BCELoss); NaN and
// +inf pass through as std::log does (NaN -> NaN, +inf -> +inf), so a NaN reaches the loss.
LTB_HOST_DEVICE float logf(float x) {
  const uint32_t u = float_to_bits(x);
  int32_t e = static_cast<int32_t>((u >> 23) & 0xff) - 126;
  float m = bits_to_float((u & 0x007fffffu) | 0x3f000000u);  // mantissa in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = static_cast<float>(e);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  const float r = m + y + fe * 0.693359375f;
  return x <= 0.0f ? -INFINITY : (x < INFINITY ? r : x);
}

template <typename acc_t>
LTB_HOST_DEVICE acc_t exp_any(acc_t x) {
  return ::exp(x);  // double: the C library's (host) or the device's exp
}
template <>
LTB_HOST_DEVICE float exp_any<float>(float x) {
  return expf(x);
}
template <typename acc_t>
LTB_HOST_DEVICE acc_t log_any(acc_t x) {
  return ::log(x);
}
template <>
LTB_HOST_DEVICE float log_any<float>(float x) {
  return logf(x);
}

}  // namespace fastmath
}  // namespace ltbench
