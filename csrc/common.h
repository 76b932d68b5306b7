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

namespace isl {

template <typename T>
ISL_HD T clamp(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

}  // namespace isl
