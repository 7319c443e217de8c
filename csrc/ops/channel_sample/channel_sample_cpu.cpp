#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cpu_isa.h"

#define LTB_CPU_ISA isa_base
#include "ops/channel_sample/channel_sample_cpu_kernels.h"
#undef LTB_CPU_ISA

namespace ltbench {

#ifdef LTBENCH_AVX2_KERNELS
namespace isa_avx2 {
void channel_sample_kernel(const at::Tensor& l, const at::Tensor& u, at::Tensor& out);
}
#endif

void check_channel_sample_args(const at::Tensor& logits, const at::Tensor& u) {
  const char* op = "ltbench::channel_sample";
  LTB_CHECK_DIM(op, logits, 4);
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": logits must be floating point, got ", logits.scalar_type());
  TORCH_CHECK(logits.size(1) > 0, op, ": logits need at least one channel");
  TORCH_CHECK(u.dim() == 3 && u.size(0) == logits.size(0) && u.size(1) == logits.size(2) && u.size(2) == logits.size(3),
              op, ": u must be [B, H, W] = [", logits.size(0), ", ", logits.size(2), ", ", logits.size(3), "], got ",
              u.sizes());
  TORCH_CHECK(at::isFloatingType(u.scalar_type()), op, ": u must be floating point, got ", u.scalar_type());
  LTB_CHECK_SAME_DEVICE(op, logits, u);
}

namespace {

at::Tensor channel_sample_cpu(const at::Tensor& logits, const at::Tensor& u) {
  check_channel_sample_args(logits, u);
  auto l = logits.contiguous();
  auto out = at::empty({l.size(0), l.size(2), l.size(3)}, l.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  auto uu = u.to(at::toOpMathType(l.scalar_type())).contiguous();
#ifdef LTBENCH_AVX2_KERNELS
  LTB_CPU_DISPATCH(channel_sample_kernel, l, uu, out);
#else
  isa_base::channel_sample_kernel(l, uu, out);
#endif
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CPU, m) { m.impl("channel_sample", &ltbench::channel_sample_cpu); }
