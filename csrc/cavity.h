// Cranial cavity mask: the pixels of a slice that lie inside the skull.
//
// Shapes (C-contiguous): x float32 [N, C, H, W] (the windowed slices); mask float32 [N, H, W].
// Parameters: channel in 0..C-1 (the bone window), bone = the value of that channel at and above
// which a pixel counts as bone (a HU threshold mapped through the window), margin >= 0 pixels.
//
// Per slice n, per pixel p = (y, x), with B(q) = x[n, channel, q] >= bone:
//   dl(p) = x - x' for the nearest bone pixel (y, x') with x' < x, infinite when there is none;
//   dr, du, dd the same to the right, above and below.
//   mask(p) = 1 when !B(p) and min(dl, dr, du, dd) > margin, else 0.
// So a pixel is inside when bone encloses it along its row and its column. Unlike a flood fill
// of the skull's interior this does not leak through a gap in the skull (a fracture, a foramen,
// a partial-volume break at 128 pixels): a gap only matters when it lines up with a row or
// column that has no other bone. margin > 0 also drops pixels within `margin` pixels of bone
// along a row or column, where partial volume of the inner table leaves bright pixels.
//
// CPU (cavity.cpp): a row pass (left-to-right then right-to-left scans) writes the row condition,
// a column pass ANDs the column condition; slices or rows/columns are split over OpenMP threads.
// CUDA (cuda/cavity.cu): one thread per row, then one thread per column, on the caller's stream.
// Both take the scans below, so the rule is the same code.
#pragma once

#include <cstdint>

#include "common.h"

namespace isl {

// Scans one line of `len` pixels at `stride` (elements) through a bone plane and writes into
// `ok` (same stride) whether bone lies more than `margin` pixels away on both sides of each
// pixel. With `combine` the result is ANDed into what `ok` holds (the column pass).
ISL_HD void cavity_line(const float* plane, int64_t len, int64_t stride, float bone, int64_t margin, bool combine,
                        float* ok) {
  // forward: distance to the previous bone pixel, -1 when none yet; stored as 1/0 in ok
  int64_t last = -1;
  for (int64_t i = 0; i < len; ++i) {
    const bool is_bone = plane[i * stride] >= bone;
    const bool before = last >= 0 && i - last > margin && !is_bone;
    if (combine) {
      if (!before) ok[i * stride] = 0.0f;
    } else {
      ok[i * stride] = before ? 1.0f : 0.0f;
    }
    if (is_bone) last = i;
  }
  last = -1;
  for (int64_t i = len - 1; i >= 0; --i) {
    const bool is_bone = plane[i * stride] >= bone;
    if (!(last >= 0 && last - i > margin)) ok[i * stride] = 0.0f;
    if (is_bone) last = i;
  }
}

// ---- CPU kernel (cavity.cpp, OpenMP); the GIL is released by the bindings ------------------------
void cavity_cpu(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                int64_t margin, float* mask);

}  // namespace isl

#if defined(__CUDACC__)
#include <cuda_runtime.h>

namespace isl {
// Asynchronous on `stream`; x and mask are device buffers.
cudaError_t cavity_cuda(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                        int64_t margin, float* mask, cudaStream_t stream);
}  // namespace isl
#endif
