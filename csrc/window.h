// Fused CT windowing + resampling: HU int16 [N,H,W] -> x [N,C,S,S] (float32 in [0,1], or uint8).
//
// Shapes and dtypes
//   hu      int16   [N, H, W], C-contiguous, Hounsfield units (any int16 value, -32768..32767).
//   windows C pairs (level, width) in HU, width > 0, 1 <= C <= kMaxWindows.
//   out     float32 or uint8 [N, C, S, S], C-contiguous; H != W is allowed, S >= 1, N may be 0.
//
// Semantics (the numpy twin isl_rt.kernels.reference.window computes the same in float64)
//   1. Per SOURCE pixel and window c:  v = clamp((HU - (level - width/2)) / width, 0, 1).
//      Windowing happens before resampling, so the clip is applied to every source pixel and
//      resampling never mixes clipped and unclipped values.
//   2. Separable resampling, each axis independently (so H -> S and W -> S may differ):
//        shrink  (S < n): area averaging with exact fractional overlaps. Output sample o covers
//                 the source interval [o*n/S, (o+1)*n/S); source pixel i covers [i, i+1); its
//                 weight is |overlap| / (n/S). The weights are computed from integers
//                 (overlap*S / n) so they are exact up to one rounding.
//        enlarge (S > n): bilinear with half-pixel centres: s = (o + 0.5)*n/S - 0.5, clamped to
//                 [0, n-1]; weights 1-f and f on floor(s) and floor(s)+1 (the edge is clamped,
//                 i.e. replicated).
//        equal   (S == n): identity.
//      out[n,c,oy,ox] = sum_kx wx[ox,kx] * ( sum_ky wy[oy,ky] * v[sy+ky, sx+kx] )
//      (vertical first: the CPU sums whole rows, contiguous and vectorised, and gathers once per
//      output pixel).
//   3. float32 output is that sum; uint8 output is floor(sum*255 + 0.5) (round half up), for
//      display. For uint8 the kernels window straight to 0..255, v255 = (HU - lo)*255 / width, and
//      resample v255 (the same value, mathematically): with integer HU that keeps the exact .5 ties
//      of common windows (e.g. 40/80: 255/80 = 3.1875) exact, so they round up as in float64.
//
// Implementation notes
//   The per-axis weights are a dense [S, taps] table plus the first source index of each row
//   (resample_taps / resample_weights below, used by the CPU kernel on the host and by the CUDA
//   kernel on the device). Both kernels accumulate in float32 in the same order (ky inner, then
//   kx), with per-operation rounding (fadd/fmul), so CPU and CUDA results are bitwise identical;
//   zero-weight padded taps add exactly 0 and may be skipped.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "common.h"

namespace isl {

constexpr int kMaxWindows = 16;

// The display windows as the kernels use them: lo = level - width/2 (both float32).
struct WindowParams {
  int count;
  float lo[kMaxWindows];
  float width[kMaxWindows];
};

// Windowed value of one source pixel on the scale 0..top: clamp((hu - lo)*top / width, 0, top),
// top = 1 for float32 output and 255 for uint8 output. One correctly rounded division (not a
// multiplication by 1/width) keeps it within half an ulp of the float64 reference.
ISL_HD float window_value(float hu, float lo, float width, float top) {
  return clamp(fdiv(fmul(fsub(hu, lo), top), width), 0.0f, top);
}

// A resampled value on the 0..255 scale to uint8, rounding half up.
ISL_HD uint8_t to_u8(float v255) { return static_cast<uint8_t>(clamp(fadd(v255, 0.5f), 0.0f, 255.0f)); }

// Source taps per output sample when n source pixels are resampled to s samples (s, n >= 1).
ISL_HD int resample_taps(int n, int s) {
  if (s == n) return 1;
  if (s > n) return n < 2 ? 1 : 2;
  if (n % s == 0) return n / s;          // each output covers exactly n/s whole pixels
  int t = (n + s - 1) / s + 1;           // an interval of length n/s touches <= ceil(n/s)+1 pixels
  return t < n ? t : n;
}

// Weights w[0..taps) of output sample o over source pixels first..first+taps-1; returns first.
// Padded taps (beyond the ones the sample touches) get weight 0. first + taps <= n always.
ISL_HD int resample_weights(int o, int n, int s, int taps, float* w) {
  for (int k = 0; k < taps; ++k) w[k] = 0.0f;
  if (s == n) {
    w[0] = 1.0f;
    return o;
  }
  if (s < n) {
    // Everything times s: the output interval is [o*n, (o+1)*n), pixel i is [i*s, (i+1)*s).
    const int64_t a = static_cast<int64_t>(o) * n, b = a + n;
    int first = static_cast<int>(a / s);
    if (first > n - taps) first = n - taps;
    for (int k = 0; k < taps; ++k) {
      const int64_t lo_px = static_cast<int64_t>(first + k) * s, hi_px = lo_px + s;
      const int64_t lo = lo_px > a ? lo_px : a, hi = hi_px < b ? hi_px : b;
      if (hi > lo) w[k] = static_cast<float>(static_cast<double>(hi - lo) / static_cast<double>(n));
    }
    return first;
  }
  // Enlarge: source coordinate ((2o+1)*n - s) / (2s), clamped to [0, n-1].
  const int64_t num = static_cast<int64_t>(2 * o + 1) * n - s, den = 2 * static_cast<int64_t>(s);
  int i0 = 0;
  double f = 0.0;
  if (num > 0) {
    i0 = static_cast<int>(num / den);
    f = static_cast<double>(num % den) / static_cast<double>(den);
  }
  if (i0 >= n - 1) {
    i0 = n - 1;
    f = 0.0;
  }
  if (taps == 1) {  // n == 1
    w[0] = 1.0f;
    return 0;
  }
  int first = i0 < n - 2 ? i0 : n - 2;  // keep first + 2 <= n
  w[i0 - first] += static_cast<float>(1.0 - f);
  if (f > 0.0) w[i0 + 1 - first] += static_cast<float>(f);
  return first;
}

// Validates windows given as `count` (level, width) pairs and converts them; returns an error
// sentence (empty when valid) so that both bindings throw the same std::invalid_argument.
inline std::string make_window_params(const double* level_width, int64_t count, WindowParams* params) {
  if (count < 1 || count > kMaxWindows)
    return "windows must hold between 1 and " + std::to_string(kMaxWindows) + " (level, width) pairs, got " +
           std::to_string(count);
  params->count = static_cast<int>(count);
  for (int c = 0; c < params->count; ++c) {
    const double level = level_width[2 * c], width = level_width[2 * c + 1];
    if (!std::isfinite(level) || !std::isfinite(width) || !(width > 0.0))
      return "window " + std::to_string(c) + " must have a finite level and a width > 0";
    params->lo[c] = static_cast<float>(level - width / 2.0);
    params->width[c] = static_cast<float>(width);
  }
  for (int c = params->count; c < kMaxWindows; ++c) params->lo[c] = params->width[c] = 0.0f;
  return std::string();
}

// CPU kernel (OpenMP over N*S output rows): hu [n,h,w] -> out [n, params.count, s, s].
// Exactly one of out_f32 / out_u8 is non-null.
void window_cpu(const int16_t* hu, int64_t n, int h, int w, const WindowParams& params, int s,
                float* out_f32, uint8_t* out_u8);

#ifdef __CUDACC__
// CUDA twin (csrc/cuda/window.cu): device pointers, asynchronous on `stream`.
void window_cuda(const int16_t* hu, int64_t n, int h, int w, const WindowParams& params, int s,
                 float* out_f32, uint8_t* out_u8, cudaStream_t stream);
#endif

}  // namespace isl
