#include <ATen/ATen.h>
#include <torch/library.h>

#include <limits>

#include "common/checks.h"
#include "common/cpu_isa.h"

#define LTB_CPU_ISA isa_base
#include "ops/imitation_bce/imitation_bce_cpu_kernels.h"
#undef LTB_CPU_ISA

namespace ltbench {

#ifdef LTBENCH_AVX2_KERNELS
namespace isa_avx2 {
double imitation_bce_sum_kernel(const at::Tensor& l, const at::Tensor& k);
void imitation_bce_backward_kernel(double scale, const at::Tensor& l, const at::Tensor& k, at::Tensor& out);
}  // namespace isa_avx2
#endif

void check_imitation_bce_args(const char* op, const at::Tensor& logits, const at::Tensor& idx) {
  LTB_CHECK_DIM(op, logits, 4);
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": student_logits must be floating point, got ",
              logits.scalar_type());
  TORCH_CHECK(idx.dim() == 3 && idx.size(0) == logits.size(0) && idx.size(1) == logits.size(2) &&
                  idx.size(2) == logits.size(3),
              op, ": idx must be [B, H, W] = [", logits.size(0), ", ", logits.size(2), ", ", logits.size(3), "], got ",
              idx.sizes());
  TORCH_CHECK(idx.scalar_type() == at::kLong || idx.scalar_type() == at::kInt, op, ": idx must be int64 or int32, got ",
              idx.scalar_type());
  LTB_CHECK_SAME_DEVICE(op, logits, idx);
}

void check_imitation_bce_grad(const char* op, const at::Tensor& grad) {
  TORCH_CHECK(grad.numel() == 1 && at::isFloatingType(grad.scalar_type()), op,
              ": grad must be a floating scalar (the loss's gradient), got ", grad.scalar_type(), " ", grad.sizes());
}

namespace {

at::Tensor imitation_bce_cpu(const at::Tensor& logits, const at::Tensor& idx) {
  check_imitation_bce_args("ltbench::imitation_bce", logits, idx);
  auto l = logits.contiguous();
  auto k = idx.to(at::kLong).contiguous();
  const int64_t C = l.size(1), N = l.numel();
  if (N == 0) return at::full({}, std::numeric_limits<double>::quiet_NaN(), l.options());  // mean of nothing, as BCELoss
  TORCH_CHECK(k.min().item<int64_t>() >= 0 && k.max().item<int64_t>() < C, "ltbench::imitation_bce: idx must be in [0, ",
              C, ")");
#ifdef LTBENCH_AVX2_KERNELS
  const double total = LTB_CPU_DISPATCH(imitation_bce_sum_kernel, l, k);
#else
  const double total = isa_base::imitation_bce_sum_kernel(l, k);
#endif
  return at::full({}, total / static_cast<double>(N), l.options());
}

at::Tensor imitation_bce_backward_cpu(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& idx) {
  check_imitation_bce_args("ltbench::imitation_bce_backward", logits, idx);
  check_imitation_bce_grad("ltbench::imitation_bce_backward", grad);
  auto l = logits.contiguous();
  auto k = idx.to(at::kLong).contiguous();
  auto out = at::empty_like(l);
  const int64_t N = l.numel();
  if (N == 0) return out;
  const double scale = grad.item<double>() / static_cast<double>(N);
#ifdef LTBENCH_AVX2_KERNELS
  LTB_CPU_DISPATCH(imitation_bce_backward_kernel, scale, l, k, out);
#else
  isa_base::imitation_bce_backward_kernel(scale, l, k, out);
#endif
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CPU, m) {
  m.impl("imitation_bce", &ltbench::imitation_bce_cpu);
  m.impl("imitation_bce_backward", &ltbench::imitation_bce_backward_cpu);
}
