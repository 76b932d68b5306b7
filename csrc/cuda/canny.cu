// CUDA twins of the canny family (gaussian_blur, canny); semantics in csrc/canny.h.
//
// gaussian_blur: one thread per pixel, a horizontal then a vertical launch through a scratch
// plane, taps and order as the CPU (blur_first / blur_step), so results are bitwise equal.
//
// canny:
//   1. (sigma > 0) the blur above, into a float32 scratch batch.
//   2. canny_classify: one thread per pixel; a 32x8 block stages its source tile with a 2-pixel
//      replicated apron in shared memory, computes the squared Sobel magnitudes of the 34x10
//      pixels around it (0 outside the plane), and classifies its pixel with canny_class()
//      (NMS + double threshold) into the output buffer: 0 not an edge, 1 candidate, 2 strong.
//   3. Hysteresis as connected components, in a fixed number of launches (no loop until stable):
//        label_init     L[p] = p for every pixel
//        label_merge    every candidate p unions itself with its candidate neighbours
//                       left, up-left, up and up-right (together these cover all 8-adjacencies);
//                       lock-free union-find: link the larger root under the smaller one with
//                       atomicMin and retry if the root changed meanwhile (Playne & Hawick, 2018)
//        label_flatten  L[p] = root(p) for every candidate
//        label_flag     every strong pixel sets the top bit of its root's entry
//        label_resolve  out[p] = candidate and root flagged
//      A candidate becomes an edge iff its 8-connected candidate component holds a strong pixel,
//      which is exactly the set the CPU's one-pass stack hysteresis reaches.
//   Labels are global pixel indices of the batch (uint32 with the top bit as flag), so a batch
//   holds fewer than 2^31 pixels (checked by the binding).
#include <cuda_runtime.h>

#include <type_traits>

#include "canny.h"
#include "check.h"

namespace isl {

namespace {

constexpr int kTileX = 32, kTileY = 8, kApron = 2, kMaxGridZ = 65535;
constexpr uint32_t kFlag = 0x80000000u, kIndex = 0x7fffffffu;

// ---- Gaussian blur -------------------------------------------------------------------------

template <typename P>
__global__ void blur_horizontal(const P* __restrict__ src, int64_t plane0, int h, int w, GaussKernel g,
                                float* __restrict__ dst) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= w || y >= h) return;
  const int64_t row = ((plane0 + blockIdx.z) * h + y) * static_cast<int64_t>(w);
  const P* s = src + row;
  float acc = blur_first(g.w[0], static_cast<float>(s[x]));
  for (int i = 1; i <= g.radius; ++i)
    acc = blur_step(acc, g.w[i], static_cast<float>(s[reflect101(x - i, w)]), static_cast<float>(s[reflect101(x + i, w)]));
  dst[row + x] = acc;
}

__global__ void blur_vertical(const float* __restrict__ src, int64_t plane0, int h, int w, GaussKernel g,
                              float* __restrict__ dst) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= w || y >= h) return;
  const float* p = src + (plane0 + blockIdx.z) * h * static_cast<int64_t>(w);
  float acc = blur_first(g.w[0], p[static_cast<int64_t>(y) * w + x]);
  for (int i = 1; i <= g.radius; ++i)
    acc = blur_step(acc, g.w[i], p[static_cast<int64_t>(reflect101(y - i, h)) * w + x],
                    p[static_cast<int64_t>(reflect101(y + i, h)) * w + x]);
  dst[(plane0 + blockIdx.z) * h * static_cast<int64_t>(w) + static_cast<int64_t>(y) * w + x] = acc;
}

template <typename P>
void blur_launch(const P* src, int64_t planes, int h, int w, const GaussKernel& g, float* tmp, float* dst,
                 cudaStream_t stream) {
  const dim3 block(kTileX, kTileY);
  for (int64_t p0 = 0; p0 < planes; p0 += kMaxGridZ) {
    const unsigned count = static_cast<unsigned>(planes - p0 < kMaxGridZ ? planes - p0 : kMaxGridZ);
    const dim3 grid((w + kTileX - 1) / kTileX, (h + kTileY - 1) / kTileY, count);
    blur_horizontal<P><<<grid, block, 0, stream>>>(src, p0, h, w, g, tmp);
    blur_vertical<<<grid, block, 0, stream>>>(tmp, p0, h, w, g, dst);
    cuda_check_launch("gaussian_blur");
  }
}

// ---- Sobel + NMS + double threshold --------------------------------------------------------

// T: int for uint8 input, float for float32 input.
template <typename T, typename P>
__global__ void canny_classify(const P* __restrict__ src, int64_t plane0, int h, int w, T low2, T high2,
                               uint8_t* __restrict__ cls) {
  constexpr int SX = kTileX + 2 * kApron, SY = kTileY + 2 * kApron;  // source tile
  constexpr int MX = kTileX + 2, MY = kTileY + 2;                    // magnitude tile
  __shared__ P tile[SY][SX];
  __shared__ T mag[MY][MX];
  const int64_t plane = plane0 + blockIdx.z;
  const P* s = src + plane * h * static_cast<int64_t>(w);
  const int x0 = blockIdx.x * kTileX, y0 = blockIdx.y * kTileY;
  const int tid = threadIdx.y * kTileX + threadIdx.x, nthreads = kTileX * kTileY;

  // Source tile with replicated (clamped) coordinates: tile[i][j] = src[y0-2+i][x0-2+j].
  for (int k = tid; k < SX * SY; k += nthreads) {
    const int i = k / SX, j = k % SX;
    const int y = clamp(y0 - kApron + i, 0, h - 1), x = clamp(x0 - kApron + j, 0, w - 1);
    tile[i][j] = s[static_cast<int64_t>(y) * w + x];
  }
  __syncthreads();
  // Magnitudes of the pixels (y0-1+i, x0-1+j); 0 outside the plane.
  for (int k = tid; k < MX * MY; k += nthreads) {
    const int i = k / MX, j = k % MX;
    const int y = y0 - 1 + i, x = x0 - 1 + j;
    T m = T(0);
    if (y >= 0 && y < h && x >= 0 && x < w) {
      T dx, dy;
      sobel_at<T>(tile[i], tile[i + 1], tile[i + 2], j, j + 1, j + 2, dx, dy);
      m = magnitude2(dx, dy);
    }
    mag[i][j] = m;
  }
  __syncthreads();
  const int x = x0 + threadIdx.x, y = y0 + threadIdx.y;
  if (x >= w || y >= h) return;
  const int i = threadIdx.y + 1, j = threadIdx.x + 1;  // this pixel in the magnitude tile
  T dx, dy;
  sobel_at<T>(tile[i], tile[i + 1], tile[i + 2], j, j + 1, j + 2, dx, dy);
  cls[plane * h * static_cast<int64_t>(w) + static_cast<int64_t>(y) * w + x] =
      canny_class(dx, dy, mag[i][j], mag[i - 1][j - 1], mag[i - 1][j], mag[i - 1][j + 1], mag[i][j - 1], mag[i][j + 1],
                  mag[i + 1][j - 1], mag[i + 1][j], mag[i + 1][j + 1], low2, high2);
}

// ---- Hysteresis by union-find --------------------------------------------------------------

__device__ uint32_t find_root(const uint32_t* labels, uint32_t p) {
  // Volatile reads: other threads re-link roots concurrently; a stale value only delays progress.
  const volatile uint32_t* l = labels;
  uint32_t q = l[p];
  while (q != p) {
    p = q;
    q = l[p];
  }
  return p;
}

__device__ void unite(uint32_t* labels, uint32_t a, uint32_t b) {
  for (;;) {
    a = find_root(labels, a);
    b = find_root(labels, b);
    if (a == b) return;
    if (a > b) {
      const uint32_t t = a;
      a = b;
      b = t;
    }
    // Link root b under a; if b stopped being a root meanwhile, retry from what it points to.
    const uint32_t old = atomicMin(&labels[b], a);
    if (old == b) return;
    b = old;
  }
}

__global__ void label_init(uint32_t* labels, int64_t total) {
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x)
    labels[p] = static_cast<uint32_t>(p);
}

__global__ void label_merge(const uint8_t* __restrict__ cls, uint32_t* labels, int64_t total, int h, int w) {
  const int64_t hw = static_cast<int64_t>(h) * w;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (cls[p] == kNotEdge) continue;
    const int64_t r = p % hw;
    const int y = static_cast<int>(r / w), x = static_cast<int>(r % w);
    const uint32_t up = static_cast<uint32_t>(p);
    if (x > 0 && cls[p - 1] != kNotEdge) unite(labels, up, up - 1);
    if (y > 0) {
      const int64_t q = p - w;
      if (x > 0 && cls[q - 1] != kNotEdge) unite(labels, up, static_cast<uint32_t>(q - 1));
      if (cls[q] != kNotEdge) unite(labels, up, static_cast<uint32_t>(q));
      if (x < w - 1 && cls[q + 1] != kNotEdge) unite(labels, up, static_cast<uint32_t>(q + 1));
    }
  }
}

__global__ void label_flatten(const uint8_t* __restrict__ cls, uint32_t* labels, int64_t total) {
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (cls[p] != kNotEdge) labels[p] = find_root(labels, static_cast<uint32_t>(p));
}

__global__ void label_flag(const uint8_t* __restrict__ cls, uint32_t* labels, int64_t total) {
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (cls[p] == kStrong) atomicOr(&labels[labels[p] & kIndex], kFlag);
}

__global__ void label_resolve(uint8_t* cls_out, const uint32_t* __restrict__ labels, int64_t total) {
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint8_t c = cls_out[p];
    cls_out[p] = (c != kNotEdge && (labels[labels[p] & kIndex] & kFlag) != 0u) ? 1 : 0;
  }
}

template <typename T, typename P>
void classify_and_link(const P* src, int64_t planes, int h, int w, T low2, T high2, uint8_t* dst,
                       cudaStream_t stream) {
  const int64_t total = planes * h * static_cast<int64_t>(w);
  const dim3 block(kTileX, kTileY);
  for (int64_t p0 = 0; p0 < planes; p0 += kMaxGridZ) {
    const unsigned count = static_cast<unsigned>(planes - p0 < kMaxGridZ ? planes - p0 : kMaxGridZ);
    const dim3 grid((w + kTileX - 1) / kTileX, (h + kTileY - 1) / kTileY, count);
    canny_classify<T, P><<<grid, block, 0, stream>>>(src, p0, h, w, low2, high2, dst);
    cuda_check_launch("canny_classify");
  }
  DeviceScratch scratch(sizeof(uint32_t) * static_cast<size_t>(total), stream);
  uint32_t* labels = scratch.as<uint32_t>();
  const int threads = 256;
  const int64_t want = (total + threads - 1) / threads;
  const unsigned blocks = static_cast<unsigned>(want < 65535 * 16 ? want : 65535 * 16);
  label_init<<<blocks, threads, 0, stream>>>(labels, total);
  label_merge<<<blocks, threads, 0, stream>>>(dst, labels, total, h, w);
  label_flatten<<<blocks, threads, 0, stream>>>(dst, labels, total);
  label_flag<<<blocks, threads, 0, stream>>>(dst, labels, total);
  label_resolve<<<blocks, threads, 0, stream>>>(dst, labels, total);
  cuda_check_launch("canny hysteresis");
}

template <typename P>
void canny_cuda_impl(const P* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst,
                     cudaStream_t stream) {
  if (planes <= 0) return;
  if (sigma > 0.0) {
    const size_t bytes = align256(sizeof(float) * static_cast<size_t>(planes) * h * w);
    DeviceScratch scratch(2 * bytes, stream);
    float* tmp = scratch.as<float>(0);
    float* blurred = scratch.as<float>(bytes);
    blur_launch(src, planes, h, w, gaussian_kernel(sigma), tmp, blurred, stream);
    classify_and_link<float, float>(blurred, planes, h, w, threshold2_float(low), threshold2_float(high), dst, stream);
  } else if constexpr (std::is_same_v<P, uint8_t>) {
    classify_and_link<int, uint8_t>(src, planes, h, w, threshold2_int(low), threshold2_int(high), dst, stream);
  } else {
    classify_and_link<float, float>(src, planes, h, w, threshold2_float(low), threshold2_float(high), dst, stream);
  }
}

}  // namespace

void gaussian_blur_cuda(const float* src, int64_t planes, int h, int w, double sigma, float* dst, cudaStream_t stream) {
  if (planes <= 0) return;
  DeviceScratch scratch(sizeof(float) * static_cast<size_t>(planes) * h * w, stream);
  blur_launch(src, planes, h, w, gaussian_kernel(sigma), scratch.as<float>(), dst, stream);
}

void canny_cuda(const uint8_t* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst,
                cudaStream_t stream) {
  canny_cuda_impl(src, planes, h, w, low, high, sigma, dst, stream);
}

void canny_cuda(const float* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst,
                cudaStream_t stream) {
  canny_cuda_impl(src, planes, h, w, low, high, sigma, dst, stream);
}

}  // namespace isl
