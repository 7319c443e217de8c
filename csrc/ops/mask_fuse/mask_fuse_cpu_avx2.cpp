// The AVX2 + FMA copy of mask_fuse's CPU loops (common/cpu_isa_avx2.inc).
#define LTB_AVX2_MATH "ops/mask_fuse/mask_fuse.h"
#define LTB_AVX2_KERNELS "ops/mask_fuse/mask_fuse_cpu_kernels.h"
#include "common/cpu_isa_avx2.inc"
