// Mask fan-out and composition: the two ends of one ISL inpainting round.
//
// Shapes and units (all C-contiguous, NCHW; H = W = S in the pipeline, any H, W >= 1 here):
//   x          float32 [N, C, H, W]    windowed slices in [0, 1] (any finite values work)
//   edges      uint8   [N, C, H, W]    edge maps; 0 is "no edge", ANY non-zero byte is an edge (-> 1.0)
//   group_map  int32   [H, W]          group id of every pixel, 0..G-1 (Partition.group_map(S))
//   fanout out          [N*G, 2C+1, H, W]  float32 (CPU and CUDA) or float16 (CUDA only)
//   xhat       float32 [N*G, C, H, W]  DeDN reconstructions (float16 also accepted on CUDA)
//   x_dd, x_dif float32 [N, C, H, W]
//
// Where the pixels of a cell are: the group map is built in Python (isl_rt/kernels/partition.py)
// from cell_bounds(S, K): cell i spans pixels [(i*S)//K, ((i+1)*S)//K) on each axis, so the
// S mod K remainder pixels are spread evenly and every cell is floor(S/K) or ceil(S/K) pixels
// wide. These kernels never see K: they only read group_map, so any partition works.
//
// fanout:        out[n*G+g] = ( x[n,c] * m_g  for c < C,   1 - m_g,   edges[n,c] != 0 for c < C )
//                with m_g(y,x) = 0 where group_map(y,x) == g and 1 elsewhere (1 = kept pixel).
// compose_diff:  x_dd[n,c,y,x]  = xhat[n*G + group_map(y,x), c, y, x]
//                x_dif[n,c,y,x] = |x[n,c,y,x] - x_dd[n,c,y,x]|           (one pass over pixels)
//
// Group ids are checked inside the kernels' own pass, never by a separate scan of the map:
//  - CPU: every id read is counted if outside 0..G-1, and the largest id is kept; both come
//    back in GroupCheck and the Python dispatch raises unless out_of_range == 0 and
//    max_id == G-1. An out-of-range id is never used as an index (x_dd gets NaN there).
//  - CUDA: nothing is read back (that would synchronise the stream). An out-of-range id is
//    never used as an index either: fanout treats the pixel as kept in every pass, compose_diff
//    writes NaN to x_dd and x_dif there, so a bad map is visible downstream, not a memory error.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace isl {

// ---- per-pixel math shared by fanout.cpp and cuda/fanout.cu --------------------------------------

// True when `gid` is a usable group id for `groups` groups.
ISL_HD bool group_id_valid(int32_t gid, int64_t groups) {
  return gid >= 0 && static_cast<int64_t>(gid) < groups;
}

// m_g at a pixel of group `gid`: 0 on the erased cells of group g, 1 on kept pixels.
ISL_HD float fanout_keep(int32_t gid, int32_t g) { return gid == g ? 0.0f : 1.0f; }

// Channel c < C of the fan-out: the image with group g erased.
ISL_HD float fanout_masked(float x, float keep) { return x * keep; }

// Channel C of the fan-out: the hole mask, 1 on erased pixels.
ISL_HD float fanout_hole(float keep) { return 1.0f - keep; }

// Channels C+1 .. 2C of the fan-out: the edge map as 0/1.
ISL_HD float fanout_edge(uint8_t e) { return e != 0 ? 1.0f : 0.0f; }

// The difference image at one pixel.
ISL_HD float compose_dif(float x, float dd) { return fabsf(x - dd); }

// ---- CPU kernels (fanout.cpp, OpenMP); the GIL is released by the bindings -----------------------

struct GroupCheck {
  int64_t out_of_range;  // pixels of group_map whose id is outside 0..groups-1
  int32_t max_id;        // the largest id in group_map (INT32_MIN for an empty map)
};

// Scan group_map alone; used only when a kernel has no pixel pass to fold the check into (N == 0).
GroupCheck check_group_map(const int32_t* group_map, int64_t hw, int64_t groups);

// out must hold n*groups*(2c+1)*h*w floats; every element is written exactly once.
GroupCheck fanout_cpu(const float* x, const uint8_t* edges, const int32_t* group_map, int64_t n, int64_t c,
                      int64_t h, int64_t w, int64_t groups, float* out);

// xhat holds n*groups*c*h*w floats; x_dd and x_dif n*c*h*w each.
GroupCheck compose_diff_cpu(const float* x, const float* xhat, const int32_t* group_map, int64_t n, int64_t c,
                            int64_t h, int64_t w, int64_t groups, float* x_dd, float* x_dif);

}  // namespace isl

// ---- CUDA launchers (cuda/fanout.cu); asynchronous on `stream`, return the launch status ---------
#if defined(__CUDACC__)
#include <cuda_runtime.h>

namespace isl {

// out_half: write __half instead of float (e.g. straight into a TensorRT FP16 input binding).
cudaError_t fanout_cuda(const float* x, const uint8_t* edges, const int32_t* group_map, int64_t n, int64_t c,
                        int64_t h, int64_t w, int64_t groups, void* out, bool out_half, cudaStream_t stream);

// xhat_half: xhat is __half (an FP16 engine's output binding); x_dd and x_dif are always float.
cudaError_t compose_diff_cuda(const float* x, const void* xhat, bool xhat_half, const int32_t* group_map,
                              int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups, float* x_dd,
                              float* x_dif, cudaStream_t stream);

}  // namespace isl
#endif
