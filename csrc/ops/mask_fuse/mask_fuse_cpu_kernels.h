// CPU loops of mask_fuse and its backward, compiled once per instruction set
// (common/cpu_isa.h; see channel_sample_cpu_kernels.h). Values come from mask_fuse.h.
#ifndef LTB_CPU_ISA
#error "define LTB_CPU_ISA before including a *_cpu_kernels.h"
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/loops.h"
#include "ops/mask_fuse/mask_fuse.h"

namespace ltbench {
namespace LTB_CPU_ISA {
namespace fuse_detail {

// Runs fn(bc, w) for every (b, c) plane in parallel (contiguous HW runs), w being image b's pick
// words (mask_fuse::pick_word per pixel), rebuilt only when b changes. Built once per image into
// a small per-thread buffer (HW words, L1/L2-resident), so the C plane loops are pure bitwise
// streams, as cheap per element as a triad: converting the bools per element inside the plane
// loop costs about a third of the bandwidth.
template <typename U, typename F>
void for_each_plane(const bool* s, const bool* g, const bool* r, int64_t B, int64_t C, int64_t HW, const F& fn) {
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<U> words(HW);
    int64_t cur = -1;
    for (int64_t bc = begin; bc < end; ++bc) {
      if (bc / C != cur) {
        cur = bc / C;
        const bool *sb = s + cur * HW, *gb = g + cur * HW, *rb = r + cur * HW;
        U* w = words.data();
        LTB_SIMD
        for (int64_t i = 0; i < HW; ++i) w[i] = mask_fuse::pick_word<U>(sb[i], gb[i], rb[i]);
      }
      fn(bc, static_cast<const U*>(words.data()));
    }
  });
}

}  // namespace fuse_detail

// out = fuse(a, h) for contiguous [B, C, H, W] a, h, out and contiguous bool masks [B, H, W].
void mask_fuse_kernel(const at::Tensor& a, const at::Tensor& h, const at::Tensor& s, const at::Tensor& g,
                      const at::Tensor& r, at::Tensor& out) {
  const int64_t B = a.size(0), C = a.size(1), HW = a.size(2) * a.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "mask_fuse_cpu", [&] {
    using U = mask_fuse::bits_t<scalar_t>;
    const U* pa = reinterpret_cast<const U*>(a.data_ptr<scalar_t>());
    const U* ph = reinterpret_cast<const U*>(h.data_ptr<scalar_t>());
    U* po = reinterpret_cast<U*>(out.data_ptr<scalar_t>());
    fuse_detail::for_each_plane<U>(s.data_ptr<bool>(), g.data_ptr<bool>(), r.data_ptr<bool>(), B, C, HW,
                                   [&](int64_t bc, const U* __restrict__ w) {
                                     const U* __restrict__ zt = pa + bc * HW;
                                     const U* __restrict__ zh = ph + bc * HW;
                                     U* __restrict__ o = po + bc * HW;
                                     LTB_SIMD
                                     for (int64_t i = 0; i < HW; ++i) o[i] = mask_fuse::select_bits(w[i], zt[i], zh[i]);
                                   });
  });
}

void mask_fuse_backward_kernel(const at::Tensor& grad, const at::Tensor& s, const at::Tensor& g, const at::Tensor& r,
                               at::Tensor& gt, at::Tensor& gh) {
  const int64_t B = grad.size(0), C = grad.size(1), HW = grad.size(2) * grad.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "mask_fuse_backward_cpu", [&] {
    using U = mask_fuse::bits_t<scalar_t>;
    const U* pg = reinterpret_cast<const U*>(grad.data_ptr<scalar_t>());
    U* pt = reinterpret_cast<U*>(gt.data_ptr<scalar_t>());
    U* ph = reinterpret_cast<U*>(gh.data_ptr<scalar_t>());
    fuse_detail::for_each_plane<U>(s.data_ptr<bool>(), g.data_ptr<bool>(), r.data_ptr<bool>(), B, C, HW,
                                   [&](int64_t bc, const U* __restrict__ w) {
                                     const U* __restrict__ v = pg + bc * HW;
                                     U* __restrict__ t = pt + bc * HW;
                                     U* __restrict__ hh = ph + bc * HW;
                                     LTB_SIMD
                                     for (int64_t i = 0; i < HW; ++i) {
                                       t[i] = mask_fuse::grad_tail_bits(w[i], v[i]);
                                       hh[i] = mask_fuse::grad_head_bits(w[i], v[i]);
                                     }
                                   });
  });
}

}  // namespace LTB_CPU_ISA
}  // namespace ltbench
