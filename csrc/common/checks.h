// Argument checks shared by every op. Messages name the op and the argument, so a user sees
// "ltbench::mask_fuse: m_s must be ..." rather than an opaque failure deep in a kernel.
#pragma once

#include <torch/library.h>
#include <ATen/ATen.h>

#define LTB_CHECK_DEFINED(op, t) TORCH_CHECK((t).defined(), op, ": ", #t, " is undefined")

#define LTB_CHECK_DIM(op, t, d) \
  TORCH_CHECK((t).dim() == (d), op, ": ", #t, " must have ", d, " dimensions, got shape ", (t).sizes())

#define LTB_CHECK_SAME_DEVICE(op, a, b)                                                         \
  TORCH_CHECK((a).device() == (b).device(), op, ": ", #a, " (", (a).device(), ") and ", #b, " (", \
              (b).device(), ") must be on the same device")

#define LTB_CHECK_DTYPE(op, t, dt) \
  TORCH_CHECK((t).scalar_type() == (dt), op, ": ", #t, " must be ", dt, ", got ", (t).scalar_type())
