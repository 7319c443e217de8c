// Host-side helpers of mask_fuse shared by the CPU and CUDA files (defined in mask_fuse_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

namespace ltbench {
void check_mask_fuse_args(const char* op, const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s,
                          const at::Tensor& m_g, const at::Tensor& m_r);
void check_mask_fuse_out(const char* op, const at::Tensor& z_t, const at::Tensor& out);
// The backward's arguments: grad [B, C, H, W] floating, each mask [B, H, W] on grad's device
// (the kernels index the masks by grad's shape, so a wrong mask shape would read out of bounds).
void check_mask_fuse_backward_args(const char* op, const at::Tensor& grad, const at::Tensor& m_s, const at::Tensor& m_g,
                                   const at::Tensor& m_r);
}  // namespace ltbench
