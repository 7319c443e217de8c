#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cpu_isa.h"
#include "ops/mask_fuse/mask_fuse_host.h"

#define LTB_CPU_ISA isa_base
#include "ops/mask_fuse/mask_fuse_cpu_kernels.h"
#undef LTB_CPU_ISA

namespace ltbench {

#ifdef LTBENCH_AVX2_KERNELS
namespace isa_avx2 {
void mask_fuse_kernel(const at::Tensor& a, const at::Tensor& h, const at::Tensor& s, const at::Tensor& g,
                      const at::Tensor& r, at::Tensor& out);
void mask_fuse_backward_kernel(const at::Tensor& grad, const at::Tensor& s, const at::Tensor& g, const at::Tensor& r,
                               at::Tensor& gt, at::Tensor& gh);
}  // namespace isa_avx2
#endif

void check_mask_fuse_args(const char* op, const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s,
                          const at::Tensor& m_g, const at::Tensor& m_r) {
  LTB_CHECK_DIM(op, z_t, 4);
  TORCH_CHECK(z_t.sizes() == z_h.sizes(), op, ": z_h must match z_t ", z_t.sizes(), ", got ", z_h.sizes());
  TORCH_CHECK(z_t.scalar_type() == z_h.scalar_type() && at::isFloatingType(z_t.scalar_type()), op,
              ": z_t and z_h must share a floating dtype, got ", z_t.scalar_type(), " and ", z_h.scalar_type());
  LTB_CHECK_SAME_DEVICE(op, z_t, z_h);
  const auto B = z_t.size(0), H = z_t.size(2), W = z_t.size(3);
  for (const auto* m : {&m_s, &m_g, &m_r}) {
    const char* name = m == &m_s ? "m_s" : (m == &m_g ? "m_g" : "m_r");
    TORCH_CHECK(m->dim() == 3 && m->size(0) == B && m->size(1) == H && m->size(2) == W, op, ": ", name,
                " must be [B, H, W] = [", B, ", ", H, ", ", W, "], got ", m->sizes());
    TORCH_CHECK(m->device() == z_t.device(), op, ": ", name, " is on ", m->device(), ", z_t on ", z_t.device());
  }
}

void check_mask_fuse_out(const char* op, const at::Tensor& z_t, const at::Tensor& out) {
  TORCH_CHECK(out.sizes() == z_t.sizes() && out.scalar_type() == z_t.scalar_type() && out.is_contiguous() &&
                  out.device() == z_t.device(),
              op, ": out must be a contiguous ", z_t.scalar_type(), " tensor of shape ", z_t.sizes(), " on ", z_t.device(),
              ", got ", out.scalar_type(), " ", out.sizes(), out.is_contiguous() ? "" : " (non-contiguous)", " on ",
              out.device());
}

void check_mask_fuse_backward_args(const char* op, const at::Tensor& grad, const at::Tensor& m_s, const at::Tensor& m_g,
                                   const at::Tensor& m_r) {
  LTB_CHECK_DIM(op, grad, 4);
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), op, ": grad must be floating point, got ", grad.scalar_type());
  const auto B = grad.size(0), H = grad.size(2), W = grad.size(3);
  for (const auto* m : {&m_s, &m_g, &m_r}) {
    const char* name = m == &m_s ? "m_s" : (m == &m_g ? "m_g" : "m_r");
    TORCH_CHECK(m->dim() == 3 && m->size(0) == B && m->size(1) == H && m->size(2) == W, op, ": ", name,
                " must be [B, H, W] = [", B, ", ", H, ", ", W, "], got ", m->sizes());
    TORCH_CHECK(m->device() == grad.device(), op, ": ", name, " is on ", m->device(), ", grad on ", grad.device());
  }
}

namespace {

void mask_fuse_into_cpu(const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s, const at::Tensor& m_g,
                        const at::Tensor& m_r, at::Tensor& out) {
  check_mask_fuse_args("ltbench::mask_fuse", z_t, z_h, m_s, m_g, m_r);
  check_mask_fuse_out("ltbench::mask_fuse", z_t, out);
  auto a = z_t.contiguous(), h = z_h.contiguous();
  if (out.numel() == 0) return;
  auto s = as_bool_mask(m_s), g = as_bool_mask(m_g), r = as_bool_mask(m_r);
#ifdef LTBENCH_AVX2_KERNELS
  LTB_CPU_DISPATCH(mask_fuse_kernel, a, h, s, g, r, out);
#else
  isa_base::mask_fuse_kernel(a, h, s, g, r, out);
#endif
}

at::Tensor mask_fuse_cpu(const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s, const at::Tensor& m_g,
                         const at::Tensor& m_r) {
  auto out = at::empty(z_t.sizes(), z_t.options().memory_format(at::MemoryFormat::Contiguous));
  mask_fuse_into_cpu(z_t, z_h, m_s, m_g, m_r, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> mask_fuse_backward_cpu(const at::Tensor& grad, const at::Tensor& m_s,
                                                          const at::Tensor& m_g, const at::Tensor& m_r) {
  check_mask_fuse_backward_args("ltbench::mask_fuse_backward", grad, m_s, m_g, m_r);
  auto g = grad.contiguous();
  auto gt = at::empty_like(g), gh = at::empty_like(g);
  if (g.numel() == 0) return {gt, gh};
  auto ms = as_bool_mask(m_s), mg = as_bool_mask(m_g), mr = as_bool_mask(m_r);
#ifdef LTBENCH_AVX2_KERNELS
  LTB_CPU_DISPATCH(mask_fuse_backward_kernel, g, ms, mg, mr, gt, gh);
#else
  isa_base::mask_fuse_backward_kernel(g, ms, mg, mr, gt, gh);
#endif
  return {gt, gh};
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CPU, m) {
  m.impl("mask_fuse", &ltbench::mask_fuse_cpu);
  m.impl("mask_fuse.out", &ltbench::mask_fuse_into_cpu);
  m.impl("mask_fuse_backward", &ltbench::mask_fuse_backward_cpu);
}
