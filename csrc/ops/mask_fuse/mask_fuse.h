// Per-element math of mask_fuse (Eq. 7-12 of the paper as a select), the one copy that the CPU
// loops and the CUDA kernels both call:
//   pick_t = (m_s != m_g) ? m_s : m_r ;  z_f = pick_t ? z_t : z_h
// The select works on the scalars' bit patterns, (a & w) | (h & ~w) with w all ones where the
// tail is picked: it copies values (NaN payloads, -0.0) untouched, so a NaN/inf in the vector
// that is not picked never reaches the output, and the gradient goes wholly to the picked
// vector. Equal to the formula for finite inputs.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace ltbench {
namespace mask_fuse {

// Unsigned integer of a scalar's width (float: uint32_t, double: uint64_t, half/bf16: uint16_t).
template <int Bytes> struct BitsOfSize;
template <> struct BitsOfSize<2> { using type = uint16_t; };
template <> struct BitsOfSize<4> { using type = uint32_t; };
template <> struct BitsOfSize<8> { using type = uint64_t; };
template <typename T> using bits_t = typename BitsOfSize<sizeof(T)>::type;

LTB_HOST_DEVICE bool pick_tail(bool s, bool g, bool r) { return (s != g) ? s : r; }

// All ones where the tail vector is picked, zero elsewhere.
template <typename U>
LTB_HOST_DEVICE U pick_word(bool s, bool g, bool r) {
  return static_cast<U>(static_cast<U>(0) - static_cast<U>(pick_tail(s, g, r)));
}

template <typename U>
LTB_HOST_DEVICE U select_bits(U w, U zt, U zh) {
  return static_cast<U>((zt & w) | (zh & ~w));
}

// Backward: the incoming gradient goes to the picked vector, +0.0 (all-zero bits) to the other.
template <typename U>
LTB_HOST_DEVICE U grad_tail_bits(U w, U g) {
  return static_cast<U>(g & w);
}
template <typename U>
LTB_HOST_DEVICE U grad_head_bits(U w, U g) {
  return static_cast<U>(g & ~w);
}

}  // namespace mask_fuse
}  // namespace ltbench
