// The AVX2 + FMA copy of channel_sample's CPU loops (common/cpu_isa_avx2.inc).
#define LTB_AVX2_MATH "ops/channel_sample/channel_sample.h"
#define LTB_AVX2_KERNELS "ops/channel_sample/channel_sample_cpu_kernels.h"
#include "common/cpu_isa_avx2.inc"
