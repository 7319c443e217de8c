#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/checks.h"
#include "common/loops.h"
#include "ops/mask_fuse/mask_fuse.h"
#include "ops/mask_fuse/mask_fuse_host.h"

namespace ltbench {

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

at::Tensor pick_mask(const at::Tensor& m_s, const at::Tensor& m_g, const at::Tensor& m_r) {
  // [B, H, W] bool: true where the tail vector is taken. Cheap (C times smaller than z).
  auto s = as_bool_mask(m_s), g = as_bool_mask(m_g), r = as_bool_mask(m_r);
  auto pick = at::empty(s.sizes(), s.options());
  const bool* ps = s.data_ptr<bool>();
  const bool* pg = g.data_ptr<bool>();
  const bool* pr = r.data_ptr<bool>();
  bool* out = pick.data_ptr<bool>();
  const int64_t n = pick.numel();
  at::parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = mask_fuse::pick_tail(ps[i], pg[i], pr[i]);
  });
  return pick;
}

namespace {

// Integer type of a scalar's width: the select is done on bits, (a & m) | (h & ~m), which
// vectorises cleanly and copies NaN payloads untouched.
template <typename T> struct Bits { using type = void; };
template <> struct Bits<float> { using type = uint32_t; };
template <> struct Bits<double> { using type = uint64_t; };
template <> struct Bits<c10::Half> { using type = uint16_t; };
template <> struct Bits<c10::BFloat16> { using type = uint16_t; };

template <typename scalar_t>
void fuse_cpu_kernel(const scalar_t* zt, const scalar_t* zh, const bool* pick, scalar_t* out, int64_t B, int64_t C,
                     int64_t HW) {
  using U = typename Bits<scalar_t>::type;
  static_assert(sizeof(U) == sizeof(scalar_t), "bit type must match the scalar");
  // One task per (b, c) plane: contiguous HW runs.
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bc = begin; bc < end; ++bc) {
      const bool* __restrict__ pk = pick + (bc / C) * HW;
      const U* __restrict__ a = reinterpret_cast<const U*>(zt + bc * HW);
      const U* __restrict__ h = reinterpret_cast<const U*>(zh + bc * HW);
      U* __restrict__ o = reinterpret_cast<U*>(out + bc * HW);
      LTB_SIMD
      for (int64_t i = 0; i < HW; ++i) {
        const U m = static_cast<U>(0) - static_cast<U>(pk[i]);  // all ones where the tail vector is picked
        o[i] = (a[i] & m) | (h[i] & ~m);
      }
    }
  });
}

void mask_fuse_into_cpu(const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s,
                              const at::Tensor& m_g, const at::Tensor& m_r, at::Tensor& out) {
  check_mask_fuse_args("ltbench::mask_fuse", z_t, z_h, m_s, m_g, m_r);
  TORCH_CHECK(out.sizes() == z_t.sizes() && out.scalar_type() == z_t.scalar_type() && out.is_contiguous() &&
                  out.device() == z_t.device(),
              "ltbench::mask_fuse: out must be a contiguous ", z_t.scalar_type(), " tensor of shape ", z_t.sizes());
  auto a = z_t.contiguous(), h = z_h.contiguous();
  if (out.numel() == 0) return;
  auto pick = pick_mask(m_s, m_g, m_r);
  const int64_t B = a.size(0), C = a.size(1), HW = a.size(2) * a.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "mask_fuse_cpu", [&] {
    fuse_cpu_kernel<scalar_t>(a.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), pick.data_ptr<bool>(),
                              out.data_ptr<scalar_t>(), B, C, HW);
  });
}

at::Tensor mask_fuse_cpu(const at::Tensor& z_t, const at::Tensor& z_h, const at::Tensor& m_s, const at::Tensor& m_g,
                         const at::Tensor& m_r) {
  auto out = at::empty(z_t.sizes(), z_t.options().memory_format(at::MemoryFormat::Contiguous));
  mask_fuse_into_cpu(z_t, z_h, m_s, m_g, m_r, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> mask_fuse_backward_cpu(const at::Tensor& grad, const at::Tensor& m_s,
                                                          const at::Tensor& m_g, const at::Tensor& m_r) {
  LTB_CHECK_DIM("ltbench::mask_fuse_backward", grad, 4);
  auto g = grad.contiguous();
  auto gt = at::empty_like(g), gh = at::empty_like(g);
  if (g.numel() == 0) return {gt, gh};
  auto pick = pick_mask(m_s, m_g, m_r);
  const int64_t B = g.size(0), C = g.size(1), HW = g.size(2) * g.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "mask_fuse_backward_cpu", [&] {
    const scalar_t* pg = g.data_ptr<scalar_t>();
    scalar_t* pt = gt.data_ptr<scalar_t>();
    scalar_t* ph = gh.data_ptr<scalar_t>();
    const bool* pk = pick.data_ptr<bool>();
    const scalar_t zero(0);
    at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bc = begin; bc < end; ++bc) {
        const bool* k = pk + (bc / C) * HW;
LTB_SIMD
        for (int64_t i = 0; i < HW; ++i) {
          const scalar_t v = pg[bc * HW + i];
          pt[bc * HW + i] = k[i] ? v : zero;
          ph[bc * HW + i] = k[i] ? zero : v;
        }
      }
    });
  });
  return {gt, gh};
}

}  // namespace
}  // namespace ltbench

TORCH_LIBRARY_IMPL(ltbench, CPU, m) {
  m.impl("mask_fuse", &ltbench::mask_fuse_cpu);
  m.impl("mask_fuse.out", &ltbench::mask_fuse_into_cpu);
  m.impl("mask_fuse_backward", &ltbench::mask_fuse_backward_cpu);
}
