// Cranial cavity mask: the pixels of a slice that lie inside the skull.
//
// Shapes (C-contiguous): x float32 [N, C, H, W] (the windowed slices); mask float32 [N, H, W].
// Parameters: channel in 0..C-1 (the bone window), bone = the value of that channel at and above
// which a pixel counts as bone (a HU threshold mapped through the window), margin >= 0 pixels,
// sides in 1..4, largest (bool). H * W must fit in 31 bits when `largest` is set.
//
// Per slice n, per pixel p = (y, x), with B(q) = x[n, channel, q] >= bone:
//   dl(p) = x - x' for the nearest bone pixel (y, x') with x' < x, infinite when there is none;
//   dr, du, dd the same to the right, above and below.
//   e(p)  = how many of dl, dr, du, dd are finite: the directions in which bone is reached.
//   inside(p) = !B(p) and min(dl, dr, du, dd) > margin and e(p) >= sides.
// Without `largest`, mask = inside. With sides = 4 and largest = false (the defaults) a pixel is
// inside when bone encloses it along its row and its column: unlike a flood fill of the skull's
// interior this does not leak through a gap in the skull, but a gap on one side of a row (orbits,
// skull base, a thin temporal bone at 128 pixels) drops that row. sides = 3 keeps such rows, and
// then also keeps what a head holder (a bright arc outside the skull) encloses with the skull;
// `largest` removes that again:
//
// With `largest`, per slice, mask = 1 on one 4-connected component of `inside` (pixels sharing an
// edge) and 0 elsewhere. The component kept is the first by, in this order:
//   1. more fully enclosed pixels (e(p) = 4) - the brain, which the skull surrounds;
//   2. then more pixels (area) - this alone decides when no component has an enclosed pixel;
//   3. then the earlier first pixel in raster order (the smallest y * W + x of the component).
// A slice with no inside pixel stays all 0. margin > 0 drops pixels within `margin` pixels of
// bone along a row or column, where partial volume of the inner table leaves bright pixels.
//
// CPU (cavity.cpp): a row pass then a column pass of cavity_line (slices' lines split over OpenMP
// threads), then, with `largest`, a stack-based flood fill of each slice (slices over threads).
// CUDA (cuda/cavity.cu): one thread per row, then one per column, then, with `largest`, one block
// per slice propagating the smallest raster index through each component (atomicMin until a sweep
// changes nothing), counting per component and choosing by cavity_ranks_before; its scratch is
// stream-ordered (cudaMallocAsync / cudaFreeAsync on the caller's stream). Both run the line
// scans and the ranking below, so the rule is the same code.
#pragma once

#include <cstdint>

#include "common.h"

namespace isl {

// Between the passes the mask buffer holds a code per pixel: kCavityOut when the pixel is bone or
// bone lies within `margin` pixels in a direction scanned so far, else the number of scanned
// directions in which bone is reached (0..4 after both passes).
constexpr float kCavityOut = -1.0f;

// inside(p) from a pixel's code after both passes.
ISL_HD bool cavity_inside(float code, int sides) { return code >= static_cast<float>(sides); }

// e(p) = 4 from a pixel's code after both passes (codes of bone or near-bone pixels are < 0).
ISL_HD bool cavity_enclosed(float code) { return code >= 4.0f; }

// Rank of a component for `largest`: (fully enclosed pixels, area) packed so that the larger
// value comes first; both counts are below 2^31 (H * W does). Ranks of single pixels add up to
// the rank of their component.
ISL_HD uint64_t cavity_rank(uint64_t enclosed, uint64_t area) { return (enclosed << 32) | area; }

// Whether the component (rank, first) comes before (other_rank, other_first); `first` is the raster
// index of a component's first pixel.
ISL_HD bool cavity_ranks_before(uint64_t rank, int64_t first, uint64_t other_rank, int64_t other_first) {
  return rank > other_rank || (rank == other_rank && first < other_first);
}

// Scans one line of `len` pixels at `stride` (elements) through a bone plane in both directions and
// updates the codes in `code` (same stride). The row pass starts from nothing (combine = false), the
// column pass adds to the row pass's codes (combine = true). finish_sides in 1..4 then writes the
// final 0/1 mask (inside with that `sides`); 0 leaves the codes for the component step.
ISL_HD void cavity_line(const float* plane, int64_t len, int64_t stride, float bone, int64_t margin, bool combine,
                        int finish_sides, float* code) {
  int64_t last = -1;  // index of the latest bone pixel seen, -1 when none yet
  for (int64_t i = 0; i < len; ++i) {
    const bool is_bone = plane[i * stride] >= bone;
    const float before = combine ? code[i * stride] : 0.0f;
    const bool out = is_bone || before < 0.0f || (last >= 0 && i - last <= margin);
    code[i * stride] = out ? kCavityOut : before + (last >= 0 ? 1.0f : 0.0f);
    if (is_bone) last = i;
  }
  last = -1;
  for (int64_t i = len - 1; i >= 0; --i) {
    const bool is_bone = plane[i * stride] >= bone;
    float c = code[i * stride];
    if (c >= 0.0f) c = (last >= 0 && last - i <= margin) ? kCavityOut : c + (last >= 0 ? 1.0f : 0.0f);
    if (finish_sides > 0) c = cavity_inside(c, finish_sides) ? 1.0f : 0.0f;
    code[i * stride] = c;
    if (is_bone) last = i;
  }
}

// ---- CPU kernel (cavity.cpp, OpenMP); the GIL is released by the bindings ------------------------
void cavity_cpu(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                int64_t margin, int sides, bool largest, float* mask);

}  // namespace isl

#if defined(__CUDACC__)
#include <cuda_runtime.h>

namespace isl {
// Asynchronous on `stream`; x and mask are device buffers.
cudaError_t cavity_cuda(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                        int64_t margin, int sides, bool largest, float* mask, cudaStream_t stream);
}  // namespace isl
#endif
