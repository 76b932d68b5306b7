// ISL heat map and APDS (average pixel disorder score) of difference images.
//
// Shapes (C-contiguous): x_dif, x float32 [N, C, H, W]; heat float32 [N, H, W]; apds float32 [N].
// Parameters: threshold t with 0 <= t < 1, box odd >= 1 (r = box / 2), gamma >= 0 and finite.
//
// Per slice n, per pixel p:
//   mean   r(p)  = (1/C) * sum_c x_dif[n, c, p]                           (float, channel order)
//   norm   u(p)  = min((r - t) / (1 - t), 1)  if r >= t,  else 0            -> in [0, 1]
//          a FIXED normalisation (not by the slice's maximum), so heat maps and APDS are
//          comparable across slices and scans; the clamp at 1 keeps u in [0, 1] even when a
//          reconstruction overshoots and x_dif > 1.
//   box    b(p)  = u(p) + sum of u over the box x box neighbourhood of p (p included),
//          zero padding outside the image; b in [0, B] with B = 1 + box*box.
//   heat   h(p)  = (exp(gamma*b) - 1) / (exp(gamma*B) - 1)   for gamma > 0,  b / B  for gamma == 0
//          in [0, 1]; evaluated as exp(gamma*(b - B)) * expm1(-gamma*b) / expm1(-gamma*B), which is
//          the same number without overflow for any gamma*B (exp(gamma*B) alone overflows float
//          from gamma*B > 88).
//   apds[n] = sum_p h(p) / #{p : max_c x[n, c, p] > 0}   (0 when no pixel of x is > 0);
//          the sum and count are accumulated in double / int64.
//
// CPU (heatmap.cpp): the box sum comes from a summed-area table of u in double, so it costs
// O(1) per pixel for any box and has no running-sum drift. CUDA (cuda/heatmap.cu): each block
// loads a tile of u with its halo into shared memory and sums the box separably in float
// (direct summation, no drift); boxes too large for shared memory use a direct kernel.
// Both use the per-pixel functions below, so the mean, threshold, normalisation and
// enhancement are the same code.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace isl {

// u(p) from the channel mean r.
ISL_HD float heat_normalise(float r, float threshold) {
  if (!(r >= threshold)) return 0.0f;
  const float u = (r - threshold) / (1.0f - threshold);
  return u < 1.0f ? u : 1.0f;
}

// u at pixel i of one slice: channel mean of x_dif (plane stride hw) then normalisation.
ISL_HD float heat_norm_at(const float* dif, int64_t c, int64_t hw, int64_t i, float threshold) {
  float s = 0.0f;
  for (int64_t k = 0; k < c; ++k) s += dif[k * hw + i];
  return heat_normalise(s / static_cast<float>(c), threshold);
}

// h(p) from b; b is clamped to [0, bmax] first (a summed-area difference can be -1e-12).
ISL_HD float heat_enhance(float b, float gamma, float bmax) {
  b = clamp(b, 0.0f, bmax);
  if (gamma > 0.0f) {
    const float den = expm1f(-gamma * bmax);
    if (den != 0.0f) return expf(gamma * (b - bmax)) * (expm1f(-gamma * b) / den);
  }
  return b / bmax;  // gamma == 0 (or so small that gamma*bmax underflows): the linear limit
}

// Whether pixel i of one slice of x counts in the APDS denominator (max over channels > 0).
ISL_HD bool heat_foreground(const float* x, int64_t c, int64_t hw, int64_t i) {
  for (int64_t k = 0; k < c; ++k)
    if (x[k * hw + i] > 0.0f) return true;
  return false;
}

// ---- CPU kernel (heatmap.cpp, OpenMP); the GIL is released by the bindings -----------------------
void heatmap_cpu(const float* x_dif, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float threshold,
                 int64_t box, float gamma, float* heat, float* apds);

}  // namespace isl

#if defined(__CUDACC__)
#include <cuda_runtime.h>

namespace isl {
// Asynchronous on `stream`; heat [N, H, W] and apds [N] are device buffers (float).
cudaError_t heatmap_cuda(const float* x_dif, const float* x, int64_t n, int64_t c, int64_t h, int64_t w,
                         float threshold, int64_t box, float gamma, float* heat, float* apds, cudaStream_t stream);
}  // namespace isl
#endif
