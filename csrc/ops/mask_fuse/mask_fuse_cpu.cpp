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

namespace {

// Integer type of a scalar's width: the select is done on bits, (a & m) | (h & ~m), which
// vectorises cleanly and copies NaN payloads untouched.
template <typename T> struct Bits { using type = void; };
template <> struct Bits<float> { using type = uint32_t; };
template <> struct Bits<double> { using type = uint64_t; };
template <> struct Bits<c10::Half> { using type = uint16_t; };
template <> struct Bits<c10::BFloat16> { using type = uint16_t; };

// Fills m[i] with all ones where pixel i of image b takes the tail vector, zeros elsewhere
// (the shared pick_tail per pixel). Done once per image into a small per-thread buffer (HW
// words, L1/L2-resident), so the C plane loops below are pure bitwise streams, (a & m) | (h & ~m),
// as cheap per element as a triad: converting the bool per element inside the plane loop
// costs about a third of the bandwidth.
template <typename U>
void fill_pick_words(const bool* s, const bool* g, const bool* r, int64_t HW, U* m) {
  LTB_SIMD
  for (int64_t i = 0; i < HW; ++i) m[i] = static_cast<U>(0) - static_cast<U>(mask_fuse::pick_tail(s[i], g[i], r[i]));
}

// Runs fn(bc, m) for every (b, c) plane in parallel (contiguous HW runs), m being image b's
// pick words, rebuilt only when b changes.
template <typename U, typename F>
void for_each_plane(const bool* s, const bool* g, const bool* r, int64_t B, int64_t C, int64_t HW, const F& fn) {
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<U> words(HW);
    int64_t cur = -1;
    for (int64_t bc = begin; bc < end; ++bc) {
      if (bc / C != cur) {
        cur = bc / C;
        fill_pick_words<U>(s + cur * HW, g + cur * HW, r + cur * HW, HW, words.data());
      }
      fn(bc, static_cast<const U*>(words.data()));
    }
  });
}

template <typename scalar_t>
void fuse_cpu_kernel(const scalar_t* zt, const scalar_t* zh, const bool* ps, const bool* pg, const bool* pr,
                     scalar_t* out, int64_t B, int64_t C, int64_t HW) {
  using U = typename Bits<scalar_t>::type;
  static_assert(sizeof(U) == sizeof(scalar_t), "bit type must match the scalar");
  for_each_plane<U>(ps, pg, pr, B, C, HW, [&](int64_t bc, const U* __restrict__ m) {
    const U* __restrict__ a = reinterpret_cast<const U*>(zt + bc * HW);
    const U* __restrict__ h = reinterpret_cast<const U*>(zh + bc * HW);
    U* __restrict__ o = reinterpret_cast<U*>(out + bc * HW);
    LTB_SIMD
    for (int64_t i = 0; i < HW; ++i) o[i] = (a[i] & m[i]) | (h[i] & ~m[i]);
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
  auto s = as_bool_mask(m_s), g = as_bool_mask(m_g), r = as_bool_mask(m_r);
  const int64_t B = a.size(0), C = a.size(1), HW = a.size(2) * a.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "mask_fuse_cpu", [&] {
    fuse_cpu_kernel<scalar_t>(a.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), s.data_ptr<bool>(), g.data_ptr<bool>(),
                              r.data_ptr<bool>(), out.data_ptr<scalar_t>(), B, C, HW);
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
  auto ms = as_bool_mask(m_s), mg = as_bool_mask(m_g), mr = as_bool_mask(m_r);
  const int64_t B = g.size(0), C = g.size(1), HW = g.size(2) * g.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "mask_fuse_backward_cpu", [&] {
    using U = typename Bits<scalar_t>::type;
    const U* pg = reinterpret_cast<const U*>(g.data_ptr<scalar_t>());
    U* pt = reinterpret_cast<U*>(gt.data_ptr<scalar_t>());
    U* ph = reinterpret_cast<U*>(gh.data_ptr<scalar_t>());
    const bool *s = ms.data_ptr<bool>(), *q = mg.data_ptr<bool>(), *r = mr.data_ptr<bool>();
    for_each_plane<U>(s, q, r, B, C, HW, [&](int64_t bc, const U* __restrict__ m) {
      const U* __restrict__ v = pg + bc * HW;
      U* __restrict__ t = pt + bc * HW;
      U* __restrict__ h = ph + bc * HW;
      // +0.0 (all-zero bits) where the vector was not picked
      LTB_SIMD
      for (int64_t i = 0; i < HW; ++i) {
        t[i] = v[i] & m[i];
        h[i] = v[i] & ~m[i];
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
