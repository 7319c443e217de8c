// Per-element math of mask_fuse (Eq. 7-12 of the paper as a select), shared by CPU and CUDA.
//   pick_t = (m_s != m_g) ? m_s : m_r ;  z_f = pick_t ? z_t : z_h
// Equal to the formula for finite inputs; unlike the formula, a NaN/inf in the vector that is
// not picked never reaches the output, and the gradient goes wholly to the picked vector.
#pragma once

#include "common/loops.h"

namespace ltbench {
namespace mask_fuse {

LTB_HOST_DEVICE bool pick_tail(bool s, bool g, bool r) { return (s != g) ? s : r; }

template <typename T>
LTB_HOST_DEVICE T select(bool pick, T zt, T zh) { return pick ? zt : zh; }

}  // namespace mask_fuse
}  // namespace ltbench
