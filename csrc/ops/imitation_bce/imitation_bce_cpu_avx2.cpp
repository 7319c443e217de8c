// The AVX2 + FMA copy of imitation_bce's CPU loops (common/cpu_isa_avx2.inc).
#define LTB_AVX2_MATH "ops/imitation_bce/imitation_bce.h"
#define LTB_AVX2_KERNELS "ops/imitation_bce/imitation_bce_cpu_kernels.h"
#include "common/cpu_isa_avx2.inc"
