#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/checks.h"
#include "ops/probe/probe.h"

namespace ltbench {
namespace {

at::Tensor probe_scale_cpu(const at::Tensor& x, double alpha) {
  LTB_CHECK_DEFINED("ltbench::probe_scale", x);
  TORCH_CHECK(x.is_floating_point(), "ltbench::probe_scale: x must be a floating tensor, got ",
              x.scalar_type());
  auto xc = x.contiguous();
  auto out = at::empty_like(xc);
  const int64_t n = xc.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "probe_scale_cpu", [&] {
    const scalar_t* src = xc.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const double a = alpha;
    at::parallel_for(0, n, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) dst[i] = probe::scale(src[i], a);
    });
  });
  return out;
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CPU, m) { m.impl("probe_scale", &ltbench::probe_scale_cpu); }
