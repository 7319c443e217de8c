// Host-side helpers of mask_fuse shared by the CPU and CUDA files (defined in mask_fuse_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

namespace ltbench {
void check_mask_fuse_args(const char* op, const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s,
                          const at::Tensor& m_g, const at::Tensor& m_r);
void check_mask_fuse_out(const char* op, const at::Tensor& z_t, const at::Tensor& out);
}  // namespace ltbench
