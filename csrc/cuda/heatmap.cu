// CUDA twin of heatmap_cpu; the formula and edge behaviour are documented in heatmap.h.
//
//   heat:  box <= kMaxTiledBox: one 16x16 block per output tile loads u (normalised channel
//          mean) for the tile and its halo into shared memory, sums the box separably there
//          (float, direct sums) and writes heat. Larger boxes: a direct kernel recomputes u for
//          every box position (slow, but any box works and nothing is allocated).
//   apds:  one block per slice reduces sum(heat) (double) and the foreground count (uint64)
//          in a fixed order, so the result is deterministic run to run.
// No scratch memory is allocated; both kernels are asynchronous on the caller's stream.
#include <climits>

#include "heatmap.h"

namespace isl {
namespace {

constexpr int kTile = 16;
constexpr int kMaxTiledBox = 63;  // shared memory: (16+62)^2 + (16+62)*16 floats = 29 KiB
constexpr int kReduceThreads = 256;
constexpr int64_t kMaxGridZ = 65535;

__global__ void heat_tiled_kernel(const float* __restrict__ x_dif, int64_t c, int64_t h, int64_t w, int r,
                                  float threshold, float gamma, float bmax, float* __restrict__ heat) {
  extern __shared__ float smem[];
  const int span = kTile + 2 * r;
  float* u = smem;                   // [span][span]: u over the tile and its halo (0 outside the image)
  float* hsum = smem + span * span;  // [span][kTile]: horizontal box sums
  const int64_t hw = h * w;
  const float* dif = x_dif + static_cast<int64_t>(blockIdx.z) * c * hw;
  const int64_t y0 = static_cast<int64_t>(blockIdx.y) * kTile - r;
  const int64_t x0 = static_cast<int64_t>(blockIdx.x) * kTile - r;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int box = 2 * r + 1;

  for (int k = tid; k < span * span; k += kTile * kTile) {
    const int64_t gy = y0 + k / span;
    const int64_t gx = x0 + k % span;
    u[k] = (gy >= 0 && gy < h && gx >= 0 && gx < w) ? heat_norm_at(dif, c, hw, gy * w + gx, threshold) : 0.0f;
  }
  __syncthreads();
  for (int k = tid; k < span * kTile; k += kTile * kTile) {
    const float* row = u + (k / kTile) * span + k % kTile;
    float s = 0.0f;
    for (int j = 0; j < box; ++j) s += row[j];
    hsum[k] = s;
  }
  __syncthreads();
  const int64_t gy = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.y;
  const int64_t gx = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  if (gy < h && gx < w) {
    float s = 0.0f;
    for (int j = 0; j < box; ++j) s += hsum[(threadIdx.y + j) * kTile + threadIdx.x];
    const float b = u[(threadIdx.y + r) * span + threadIdx.x + r] + s;
    heat[static_cast<int64_t>(blockIdx.z) * hw + gy * w + gx] = heat_enhance(b, gamma, bmax);
  }
}

__global__ void heat_direct_kernel(const float* __restrict__ x_dif, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t r, float threshold, float gamma, float bmax, float* __restrict__ heat) {
  const int64_t hw = h * w;
  const int64_t total = n * hw;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ni = k / hw;
    const int64_t i = k % hw;
    const int64_t y = i / w, x = i % w;
    const float* dif = x_dif + ni * c * hw;
    float s = 0.0f;
    for (int64_t yy = (y - r > 0 ? y - r : 0); yy <= (y + r < h - 1 ? y + r : h - 1); ++yy)
      for (int64_t xx = (x - r > 0 ? x - r : 0); xx <= (x + r < w - 1 ? x + r : w - 1); ++xx)
        s += heat_norm_at(dif, c, hw, yy * w + xx, threshold);
    heat[k] = heat_enhance(heat_norm_at(dif, c, hw, i, threshold) + s, gamma, bmax);
  }
}

__global__ void apds_kernel(const float* __restrict__ heat, const float* __restrict__ x, int64_t c, int64_t hw,
                            float* __restrict__ apds) {
  __shared__ double sums[kReduceThreads];
  __shared__ unsigned long long counts[kReduceThreads];
  const int64_t ni = blockIdx.x;
  const float* hs = heat + ni * hw;
  const float* xs = x + ni * c * hw;
  double sum = 0.0;
  unsigned long long count = 0;
  for (int64_t i = threadIdx.x; i < hw; i += kReduceThreads) {
    sum += hs[i];
    count += heat_foreground(xs, c, hw, i) ? 1ull : 0ull;
  }
  sums[threadIdx.x] = sum;
  counts[threadIdx.x] = count;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      sums[threadIdx.x] += sums[threadIdx.x + half];
      counts[threadIdx.x] += counts[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) apds[ni] = counts[0] > 0 ? static_cast<float>(sums[0] / static_cast<double>(counts[0])) : 0.0f;
}

}  // namespace

cudaError_t heatmap_cuda(const float* x_dif, const float* x, int64_t n, int64_t c, int64_t h, int64_t w,
                         float threshold, int64_t box, float gamma, float* heat, float* apds, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n > INT_MAX) return cudaErrorInvalidConfiguration;
  const int64_t hw = h * w;
  const float bmax = static_cast<float>(1 + box * box);
  if (box <= kMaxTiledBox) {
    const int r = static_cast<int>(box / 2);
    const int span = kTile + 2 * r;
    const size_t shared = static_cast<size_t>(span * span + span * kTile) * sizeof(float);
    const dim3 block(kTile, kTile);
    for (int64_t first = 0; first < n; first += kMaxGridZ) {
      const int64_t count = n - first < kMaxGridZ ? n - first : kMaxGridZ;
      const dim3 grid(static_cast<unsigned>((w + kTile - 1) / kTile), static_cast<unsigned>((h + kTile - 1) / kTile),
                      static_cast<unsigned>(count));
      heat_tiled_kernel<<<grid, block, shared, stream>>>(x_dif + first * c * hw, c, h, w, r, threshold, gamma, bmax,
                                                        heat + first * hw);
    }
  } else {
    int64_t blocks = (n * hw + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    heat_direct_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(x_dif, n, c, h, w, box / 2, threshold, gamma,
                                                                          bmax, heat);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  apds_kernel<<<static_cast<unsigned>(n), kReduceThreads, 0, stream>>>(heat, x, c, hw, apds);
  return cudaGetLastError();
}

}  // namespace isl
