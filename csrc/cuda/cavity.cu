// CUDA twin of cavity_cpu; the rule is documented in cavity.h. One thread scans one row (first
// kernel) or one column (second kernel, after the first on the same stream). Nothing is allocated.
#include <climits>

#include "cavity.h"

namespace isl {
namespace {

constexpr int kThreads = 128;

__global__ void cavity_rows_kernel(const float* __restrict__ x, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t channel, float bone, int64_t margin, float* __restrict__ mask) {
  const int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (line >= n * h) return;
  const int64_t ni = line / h, y = line % h, hw = h * w;
  cavity_line(x + (ni * c + channel) * hw + y * w, w, 1, bone, margin, false, mask + ni * hw + y * w);
}

__global__ void cavity_cols_kernel(const float* __restrict__ x, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t channel, float bone, int64_t margin, float* __restrict__ mask) {
  const int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (line >= n * w) return;
  const int64_t ni = line / w, xi = line % w, hw = h * w;
  cavity_line(x + (ni * c + channel) * hw + xi, h, w, bone, margin, true, mask + ni * hw + xi);
}

unsigned blocks_for(int64_t lines) { return static_cast<unsigned>((lines + kThreads - 1) / kThreads); }

}  // namespace

cudaError_t cavity_cuda(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                        int64_t margin, float* mask, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if ((n * h + kThreads - 1) / kThreads > INT_MAX || (n * w + kThreads - 1) / kThreads > INT_MAX)
    return cudaErrorInvalidConfiguration;
  cavity_rows_kernel<<<blocks_for(n * h), kThreads, 0, stream>>>(x, n, c, h, w, channel, bone, margin, mask);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  cavity_cols_kernel<<<blocks_for(n * w), kThreads, 0, stream>>>(x, n, c, h, w, channel, bone, margin, mask);
  return cudaGetLastError();
}

}  // namespace isl
