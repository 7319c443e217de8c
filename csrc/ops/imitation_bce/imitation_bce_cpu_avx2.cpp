// The AVX2 + FMA copy of imitation_bce's CPU loops (common/cpu_isa.h). Headers first, so
// only the loops below are compiled for AVX2; the shared math they inline is the same source.
#if defined(__x86_64__) && defined(LTBENCH_AVX2_KERNELS)
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/loops.h"
#include "ops/imitation_bce/imitation_bce.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define LTB_CPU_ISA isa_avx2
#include "ops/imitation_bce/imitation_bce_cpu_kernels.h"
#pragma GCC pop_options
#endif
