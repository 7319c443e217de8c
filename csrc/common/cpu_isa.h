// Runtime choice of the CPU kernels' instruction set. Every CPU kernel is compiled twice from
// one source (<op>_cpu_kernels.h): once for the baseline of the build target (x86-64: SSE2) in
// namespace isa_base, and, on x86-64, once for AVX2 + FMA in namespace isa_avx2 (the
// <op>_cpu_avx2.cpp files). The AVX2 copy runs only where the CPU has both, so an extension
// built on one node runs on any node of a cluster. LTBENCH_CPU_ISA=base forces the baseline.
#pragma once

#include <cstdlib>
#include <cstring>

namespace ltbench {

inline bool cpu_use_avx2() {
#if defined(__x86_64__) && defined(LTBENCH_AVX2_KERNELS)
  static const bool use = [] {
    const char* force = std::getenv("LTBENCH_CPU_ISA");
    if (force != nullptr && std::strcmp(force, "base") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return use;
#else
  return false;
#endif
}

inline const char* cpu_isa_name() { return cpu_use_avx2() ? "avx2" : "base"; }

}  // namespace ltbench

// Calls isa_avx2::fn or isa_base::fn with the same arguments.
#define LTB_CPU_DISPATCH(fn, ...) (::ltbench::cpu_use_avx2() ? isa_avx2::fn(__VA_ARGS__) : isa_base::fn(__VA_ARGS__))
