// The AVX2 + FMA copy of mask_fuse's CPU loops (common/cpu_isa.h). Headers first, so
// only the loops below are compiled for AVX2; the shared math they inline is the same source.
#if defined(__x86_64__) && defined(LTBENCH_AVX2_KERNELS)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/loops.h"
#include "ops/mask_fuse/mask_fuse.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define LTB_CPU_ISA isa_avx2
#include "ops/mask_fuse/mask_fuse_cpu_kernels.h"
#pragma GCC pop_options
#endif
