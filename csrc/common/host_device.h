// The one definition of LTB_HOST_DEVICE: functions every backend calls. Under nvcc they are
// compiled for host and device; on the host they are forced inline, so the CPU loops that call
// them stay vectorisable.
#pragma once

#ifdef __CUDACC__
#define LTB_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LTB_HOST_DEVICE inline __attribute__((always_inline))
#endif
