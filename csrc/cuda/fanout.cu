// CUDA twins of fanout_cpu and compose_diff_cpu; contract and edge behaviour in fanout.h.
//
// One block row per output plane (grid.x = plane), grid.y blocks stride over its h*w pixels,
// so the branch on the plane kind is uniform per block and all loads/stores are coalesced.
// The fan-out writes float or __half straight into the caller's buffer (a TensorRT input
// binding, a CuPy/torch array): no staging copy.
#include <cuda_fp16.h>

#include <climits>

#include "fanout.h"

namespace isl {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kPixelsPerThread = 4;

template <typename T>
__device__ __forceinline__ T to_out(float v);
template <>
__device__ __forceinline__ float to_out<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half to_out<__half>(float v) { return __float2half_rn(v); }

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

dim3 plane_grid(int64_t planes, int64_t hw) {
  const int64_t per_block = kThreads * kPixelsPerThread;
  int64_t blocks = (hw + per_block - 1) / per_block;
  if (blocks > 65535) blocks = 65535;
  return dim3(static_cast<unsigned>(planes), static_cast<unsigned>(blocks < 1 ? 1 : blocks));
}

template <typename T>
__global__ void fanout_kernel(const float* __restrict__ x, const uint8_t* __restrict__ edges,
                              const int32_t* __restrict__ group_map, int64_t c, int64_t hw, int64_t groups,
                              T* __restrict__ out) {
  const int64_t planes = 2 * c + 1;
  const int64_t plane = blockIdx.x;
  const int64_t item = plane / planes;
  const int64_t p = plane % planes;
  const int64_t ni = item / groups;
  const int32_t g = static_cast<int32_t>(item % groups);
  T* o = out + plane * hw;
  const int64_t start = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.x;
  if (p < c) {
    const float* xs = x + (ni * c + p) * hw;
    for (int64_t i = start; i < hw; i += step) o[i] = to_out<T>(fanout_masked(xs[i], fanout_keep(group_map[i], g)));
  } else if (p == c) {
    for (int64_t i = start; i < hw; i += step) o[i] = to_out<T>(fanout_hole(fanout_keep(group_map[i], g)));
  } else {
    const uint8_t* es = edges + (ni * c + (p - c - 1)) * hw;
    for (int64_t i = start; i < hw; i += step) o[i] = to_out<T>(fanout_edge(es[i]));
  }
}

template <typename T>
__global__ void compose_diff_kernel(const float* __restrict__ x, const T* __restrict__ xhat,
                                    const int32_t* __restrict__ group_map, int64_t c, int64_t hw, int64_t groups,
                                    float* __restrict__ x_dd, float* __restrict__ x_dif) {
  const int64_t plane = blockIdx.x;  // n * C + c
  const int64_t ni = plane / c;
  const int64_t ci = plane % c;
  const T* group0 = xhat + (ni * groups * c + ci) * hw;
  const int64_t group_stride = c * hw;
  const float* xs = x + plane * hw;
  float* dd = x_dd + plane * hw;
  float* dif = x_dif + plane * hw;
  const int64_t start = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.x;
  for (int64_t i = start; i < hw; i += step) {
    const int32_t gid = group_map[i];
    const float v = group_id_valid(gid, groups) ? to_float(group0[gid * group_stride + i]) : __int_as_float(0x7fc00000);
    dd[i] = v;
    dif[i] = compose_dif(xs[i], v);
  }
}

}  // namespace

cudaError_t fanout_cuda(const float* x, const uint8_t* edges, const int32_t* group_map, int64_t n, int64_t c,
                        int64_t h, int64_t w, int64_t groups, void* out, bool out_half, cudaStream_t stream) {
  const int64_t hw = h * w;
  const int64_t planes = n * groups * (2 * c + 1);
  if (planes == 0 || hw == 0) return cudaSuccess;
  if (planes > INT_MAX) return cudaErrorInvalidConfiguration;
  const dim3 grid = plane_grid(planes, hw);
  if (out_half)
    fanout_kernel<__half><<<grid, kThreads, 0, stream>>>(x, edges, group_map, c, hw, groups, static_cast<__half*>(out));
  else
    fanout_kernel<float><<<grid, kThreads, 0, stream>>>(x, edges, group_map, c, hw, groups, static_cast<float*>(out));
  return cudaGetLastError();
}

cudaError_t compose_diff_cuda(const float* x, const void* xhat, bool xhat_half, const int32_t* group_map, int64_t n,
                              int64_t c, int64_t h, int64_t w, int64_t groups, float* x_dd, float* x_dif,
                              cudaStream_t stream) {
  const int64_t hw = h * w;
  const int64_t planes = n * c;
  if (planes == 0 || hw == 0) return cudaSuccess;
  if (planes > INT_MAX) return cudaErrorInvalidConfiguration;
  const dim3 grid = plane_grid(planes, hw);
  if (xhat_half)
    compose_diff_kernel<__half><<<grid, kThreads, 0, stream>>>(x, static_cast<const __half*>(xhat), group_map, c, hw,
                                                               groups, x_dd, x_dif);
  else
    compose_diff_kernel<float><<<grid, kThreads, 0, stream>>>(x, static_cast<const float*>(xhat), group_map, c, hw,
                                                              groups, x_dd, x_dif);
  return cudaGetLastError();
}

}  // namespace isl
