// Shared definitions for the isl-rt kernels, usable from C++ (.cpp) and CUDA (.cu).
//
// Per-pixel math that both the CPU and the GPU kernels need is written once as ISL_HD inline
// functions in the family headers, so the two implementations cannot drift apart.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ISL_HD __host__ __device__ __forceinline__
#else
#define ISL_HD inline
#endif

// CPU-only helpers for the hot loops of the .cpp kernels: force inlining into the ISA clones,
// and compile a function for AVX2 and the baseline with a run-time choice (GCC/Clang, x86-64).
#if defined(__GNUC__) && !defined(__CUDACC__)
#define ISL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ISL_ALWAYS_INLINE inline
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__CUDACC__)
#define ISL_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ISL_CPU_CLONES
#endif

namespace isl {

template <typename T>
ISL_HD T clamp(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// float32 arithmetic rounded once per operation on both sides: nvcc would otherwise contract
// a*b+c into an FMA (one rounding) while the CPU build rounds twice (-ffp-contract=off), and the
// CPU and CUDA kernels that promise bitwise-equal results would drift apart.
ISL_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

ISL_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

ISL_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

ISL_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

}  // namespace isl
