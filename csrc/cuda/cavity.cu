// CUDA twin of cavity_cpu; the rule is documented in cavity.h. One thread scans one row (first
// kernel) or one column (second kernel, after the first on the same stream). With `largest`, one
// block per slice then keeps its first-ranked component (third kernel); its scratch (a label and
// a rank per pixel) is allocated and freed in stream order on the caller's stream.
#include <climits>

#include "cavity.h"

namespace isl {
namespace {

constexpr int kThreads = 128;
constexpr int kComponentThreads = 512;  // a power of two (the tree reduction halves it)

__global__ void cavity_rows_kernel(const float* __restrict__ x, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t channel, float bone, int64_t margin, float* __restrict__ mask) {
  const int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (line >= n * h) return;
  const int64_t ni = line / h, y = line % h, hw = h * w;
  cavity_line(x + (ni * c + channel) * hw + y * w, w, 1, bone, margin, false, 0, mask + ni * hw + y * w);
}

__global__ void cavity_cols_kernel(const float* __restrict__ x, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t channel, float bone, int64_t margin, int finish_sides,
                                   float* __restrict__ mask) {
  const int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (line >= n * w) return;
  const int64_t ni = line / w, xi = line % w, hw = h * w;
  cavity_line(x + (ni * c + channel) * hw + xi, h, w, bone, margin, true, finish_sides, mask + ni * hw + xi);
}

// One block per slice: the codes of the slice become its 0/1 mask with only the first-ranked
// component kept. label[p] is always the raster index of an inside pixel of p's component (p
// itself at first) and only decreases, so the sweeps end with every pixel of a component
// labelled by its first pixel: a fixed point has equal labels across every inside edge, and the
// first pixel's label can only be itself.
__global__ void cavity_largest_kernel(float* __restrict__ mask, int64_t h, int64_t w, int sides,
                                      int32_t* __restrict__ labels, unsigned long long* __restrict__ ranks) {
  const int64_t hw = h * w;
  float* code = mask + blockIdx.x * hw;
  int32_t* label = labels + blockIdx.x * hw;
  volatile int32_t* vlabel = label;  // read what other threads' atomics wrote, not a cached copy
  unsigned long long* rank = ranks + blockIdx.x * hw;
  __shared__ int changed;
  __shared__ unsigned long long best_rank[kComponentThreads];
  __shared__ int32_t best_first[kComponentThreads];

  for (int64_t p = threadIdx.x; p < hw; p += blockDim.x) {
    label[p] = cavity_inside(code[p], sides) ? static_cast<int32_t>(p) : -1;
    rank[p] = 0;
  }
  __syncthreads();
  // the smallest label of each pixel's 4-neighbourhood, and of the pixel its label names
  while (true) {
    if (threadIdx.x == 0) changed = 0;
    __syncthreads();
    for (int64_t p = threadIdx.x; p < hw; p += blockDim.x) {
      const int32_t own = vlabel[p];
      if (own < 0) continue;
      const int64_t y = p / w, xi = p % w;
      int32_t low = own;
      const int64_t neighbours[4] = {xi > 0 ? p - 1 : -1, xi + 1 < w ? p + 1 : -1, y > 0 ? p - w : -1,
                                     y + 1 < h ? p + w : -1};
      for (const int64_t q : neighbours) {
        if (q < 0) continue;
        const int32_t lq = vlabel[q];
        if (lq >= 0 && lq < low) low = lq;
      }
      const int32_t jump = vlabel[low];  // an inside pixel of the same component, so >= 0
      if (jump < low) low = jump;
      if (low < own) {
        atomicMin(&label[p], low);
        changed = 1;
      }
    }
    __syncthreads();
    const int again = changed;
    __syncthreads();  // everyone has read `changed` before thread 0 clears it
    if (!again) break;
  }
  // ranks of the components, held at their first pixels
  for (int64_t p = threadIdx.x; p < hw; p += blockDim.x) {
    const int32_t l = label[p];
    if (l >= 0) atomicAdd(&rank[l], static_cast<unsigned long long>(cavity_rank(cavity_enclosed(code[p]) ? 1 : 0, 1)));
  }
  __syncthreads();
  unsigned long long my_rank = 0;
  int32_t my_first = -1;
  for (int64_t p = threadIdx.x; p < hw; p += blockDim.x) {
    if (label[p] == p && (my_first < 0 || cavity_ranks_before(rank[p], p, my_rank, my_first))) {
      my_rank = rank[p];
      my_first = static_cast<int32_t>(p);
    }
  }
  best_rank[threadIdx.x] = my_rank;
  best_first[threadIdx.x] = my_first;
  __syncthreads();
  for (int half = kComponentThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const int other = threadIdx.x + half;
      if (best_first[other] >= 0 &&
          (best_first[threadIdx.x] < 0 || cavity_ranks_before(best_rank[other], best_first[other],
                                                              best_rank[threadIdx.x], best_first[threadIdx.x]))) {
        best_rank[threadIdx.x] = best_rank[other];
        best_first[threadIdx.x] = best_first[other];
      }
    }
    __syncthreads();
  }
  const int32_t kept = best_first[0];
  for (int64_t p = threadIdx.x; p < hw; p += blockDim.x) code[p] = (kept >= 0 && label[p] == kept) ? 1.0f : 0.0f;
}

unsigned blocks_for(int64_t lines) { return static_cast<unsigned>((lines + kThreads - 1) / kThreads); }

}  // namespace

cudaError_t cavity_cuda(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                        int64_t margin, int sides, bool largest, float* mask, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if ((n * h + kThreads - 1) / kThreads > INT_MAX || (n * w + kThreads - 1) / kThreads > INT_MAX || n > INT_MAX)
    return cudaErrorInvalidConfiguration;
  if (largest && h * w > INT32_MAX) return cudaErrorInvalidValue;
  cavity_rows_kernel<<<blocks_for(n * h), kThreads, 0, stream>>>(x, n, c, h, w, channel, bone, margin, mask);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  cavity_cols_kernel<<<blocks_for(n * w), kThreads, 0, stream>>>(x, n, c, h, w, channel, bone, margin,
                                                                 largest ? 0 : sides, mask);
  err = cudaGetLastError();
  if (err != cudaSuccess || !largest) return err;
  // scratch: a rank (8 bytes) then a label (4 bytes) per pixel, in stream order
  const size_t pixels = static_cast<size_t>(n * h * w);
  void* scratch = nullptr;
  err = cudaMallocAsync(&scratch, pixels * (sizeof(unsigned long long) + sizeof(int32_t)), stream);
  if (err != cudaSuccess) return err;
  auto* ranks = static_cast<unsigned long long*>(scratch);
  auto* labels = reinterpret_cast<int32_t*>(ranks + pixels);
  cavity_largest_kernel<<<static_cast<unsigned>(n), kComponentThreads, 0, stream>>>(mask, h, w, sides, labels, ranks);
  err = cudaGetLastError();
  const cudaError_t freed = cudaFreeAsync(scratch, stream);
  return err != cudaSuccess ? err : freed;
}

}  // namespace isl
