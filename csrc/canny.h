// Gaussian blur and Canny edge detection on [N, C, H, W] planes (each plane independent).
//
// gaussian_blur: float32 [N,C,H,W] -> float32 [N,C,H,W]
//   Separable (horizontal pass, then vertical), 0 < sigma <= kMaxBlurSigma. Kernel taps
//   exp(-i^2 / (2 sigma^2)) for |i| <= radius = ceil(4 sigma) (truncated at 4 sigma), normalised
//   to sum 1 (computed in float64, stored as float32). Border: reflect-101
//   (... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ..., OpenCV's BORDER_DEFAULT), repeated as often as
//   needed when the radius exceeds the plane; a 1-pixel axis stays constant.
//
// canny: uint8 or float32 [N,C,H,W] -> uint8 [N,C,H,W] of 0/1 (1 = edge pixel)
//   Per plane, as cv2.Canny(img, low, high, apertureSize=3, L2gradient=True) does it:
//   1. sigma > 0: gaussian_blur first (uint8 input is converted to float32 first); the rest then
//      runs on float32. sigma == 0: no blur (cv2.Canny never blurs).
//   2. 3x3 Sobel dx, dy with a replicated border (BORDER_REPLICATE, as cv2.Canny):
//        dx = [-1 0 1; -2 0 2; -1 0 1],  dy = dx transposed. uint8 input: exact int32 math.
//   3. m = dx^2 + dy^2 (the squared L2 magnitude; thresholds are compared squared, so no sqrt).
//      Outside the plane m counts as 0 in step 4, so border pixels can be edges (as in cv2).
//   4. Non-maximum suppression in 4 directions, OpenCV's fixed-point test with
//      tan(22.5 deg) ~ 13573 / 2^15:  ay = |dy| * 2^15, t = |dx| * 13573
//        ay < t                       -> horizontal: keep if m >  m[left]  and m >= m[right]
//        ay > t + |dx| * 2^16          -> vertical:   keep if m >  m[up]    and m >= m[down]
//        otherwise, diagonal along the sign of dx*dy: keep if m > both diagonal neighbours
//          (same signs: up-left and down-right; opposite signs: up-right and down-left).
//      The asymmetric ">" / ">=" ties are OpenCV's: of two equal neighbours along a horizontal
//      or vertical gradient, the left / upper one is kept.
//   5. Double threshold: candidate if kept and m > low^2, strong if also m > high^2 (both strict,
//      as cv2; requires 0 <= low <= high — cv2 swaps low > high, here it is an error). cv2 compares
//      the int magnitude with cvFloor(t*t); for integer m, m > floor(t^2) <=> m > t^2, so the two
//      agree (cv2 also caps t at 32767, above any uint8 magnitude, sqrt(2)*1020).
//   6. Hysteresis: the edges are the candidates 8-connected, through candidates, to a strong
//      pixel. CPU: one pass with an explicit stack seeded with the strong pixels.
//      CUDA: union-find connected-component labelling of the candidates, then every component
//      holding a strong pixel is kept (same set; see csrc/cuda/canny.cu).
//
//   Float32 arithmetic is rounded per operation (fadd/fmul from common.h) in a fixed order on
//   both CPU and CUDA, so the two give bitwise-equal magnitudes and equal edge maps. For
//   integer-valued input (uint8, or float32 holding 0..255) every step is exact in float32, so
//   canny(float32(u8)) == canny(u8).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace isl {

constexpr int kMaxBlurRadius = 64;
constexpr double kMaxBlurSigma = kMaxBlurRadius / 4.0;  // radius = ceil(4 sigma) <= 64

// The 1-D Gaussian taps w[0..radius] (w[i] applies at offsets +i and -i). Passed to CUDA by value.
struct GaussKernel {
  int radius;
  float w[kMaxBlurRadius + 1];
};

inline int gaussian_radius(double sigma) { return static_cast<int>(std::ceil(4.0 * sigma)); }

inline GaussKernel gaussian_kernel(double sigma) {
  GaussKernel g{};
  g.radius = gaussian_radius(sigma);
  double taps[kMaxBlurRadius + 1];
  double sum = 0.0;
  for (int i = 0; i <= g.radius; ++i) {
    taps[i] = std::exp(-0.5 * (i * i) / (sigma * sigma));
    sum += i == 0 ? taps[i] : 2.0 * taps[i];
  }
  for (int i = 0; i <= g.radius; ++i) g.w[i] = static_cast<float>(taps[i] / sum);
  return g;
}

// Reflect-101 index into [0, n): -1 -> 1, n -> n-2, repeated for far offsets; n == 1 -> 0.
ISL_HD int reflect101(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// One blur output: w0*c, then += w_i*(a_i + b_i) for i = 1..radius, in that order.
ISL_HD float blur_first(float w0, float c) { return fmul(w0, c); }
ISL_HD float blur_step(float acc, float wi, float a, float b) { return fadd(acc, fmul(wi, fadd(a, b))); }

// ---- Sobel, magnitude and non-maximum suppression (int for uint8 input, float for float32) ----

// Column smoothing [1 2 1] and difference [-1 0 1] of three samples a, b, c.
ISL_HD int sobel_smooth(int a, int b, int c) { return a + 2 * b + c; }
ISL_HD float sobel_smooth(float a, float b, float c) { return fadd(fadd(a, fmul(2.0f, b)), c); }
ISL_HD int sobel_diff(int a, int c) { return c - a; }
ISL_HD float sobel_diff(float a, float c) { return fsub(c, a); }

ISL_HD int magnitude2(int dx, int dy) { return dx * dx + dy * dy; }
ISL_HD float magnitude2(float dx, float dy) { return fadd(fmul(dx, dx), fmul(dy, dy)); }

// Sobel at (y, x) from the replicated rows above/at/below and the replicated columns xm, x, xp.
template <typename T, typename P>
ISL_HD void sobel_at(const P* above, const P* row, const P* below, int xm, int x, int xp, T& dx, T& dy) {
  dx = sobel_diff(sobel_smooth(T(above[xm]), T(row[xm]), T(below[xm])),
                  sobel_smooth(T(above[xp]), T(row[xp]), T(below[xp])));
  dy = sobel_smooth(sobel_diff(T(above[xm]), T(below[xm])), sobel_diff(T(above[x]), T(below[x])),
                    sobel_diff(T(above[xp]), T(below[xp])));
}

constexpr int kTan22Q15 = 13573;  // round(tan(22.5 deg) * 2^15), OpenCV's TG22

// Direction of the gradient (dx, dy): horizontal if |dy| < tan22.5 |dx| (fixed point, as cv2),
// vertical if |dy| > tan67.5 |dx| = (tan22.5 + 2) |dx|, otherwise diagonal (both false). The float
// version is exact for integer-valued dx, dy (so it equals the int one there): ay and ax*2^16 are
// exact, ax*13573 is exact for ax < 2^24 / 13573, and ay - ax*2^16 is exact.
ISL_HD void nms_direction(int dx, int dy, bool& horizontal, bool& vertical) {
  const int ax = dx < 0 ? -dx : dx, ay = (dy < 0 ? -dy : dy) << 15;
  const int t = ax * kTan22Q15;
  horizontal = ay < t;
  vertical = ay > t + (ax << 16);
}

ISL_HD void nms_direction(float dx, float dy, bool& horizontal, bool& vertical) {
  const float ax = dx < 0.0f ? -dx : dx, ay = fmul(dy < 0.0f ? -dy : dy, 32768.0f);
  const float t = fmul(ax, static_cast<float>(kTan22Q15));
  horizontal = ay < t;
  vertical = fsub(ay, fmul(ax, 65536.0f)) > t;
}

// Pixel classes of the NMS + double-threshold stage (the CUDA kernels store them in the output).
enum CannyClass : uint8_t { kNotEdge = 0, kCandidate = 1, kStrong = 2 };

// NMS + double threshold of one pixel of squared magnitude m and gradient (dx, dy), given the
// squared magnitudes of its 8 neighbours (0 outside the plane):
//   horizontal: m >  left    and m >= right
//   vertical:   m >  up      and m >= down
//   diagonal:   m >  up-left and m >  down-right  when dx, dy have the same sign,
//               m >  up-right and m > down-left   otherwise;
// then kCandidate if also m > low2, kStrong if also m > high2. Written with selects and bitwise
// operations only, so that the CPU row loop vectorises (int32 or float32 lanes); the CUDA kernel
// calls the same function.
template <typename T, typename M>
ISL_HD uint8_t canny_class(T dx, T dy, M m, M up_left, M up, M up_right, M left, M right, M down_left, M down,
                           M down_right, M low2, M high2) {
  bool horizontal, vertical;
  nms_direction(dx, dy, horizontal, vertical);
  const bool anti = (dx < T(0)) != (dy < T(0));
  const M diag_before = anti ? up_right : up_left, diag_after = anti ? down_left : down_right;
  const M before = horizontal ? left : (vertical ? up : diag_before);
  const M after = horizontal ? right : (vertical ? down : diag_after);
  const bool keep = (m > before) & ((m > after) | ((m == after) & (horizontal | vertical)));
  return static_cast<uint8_t>((keep & (m > low2)) + (keep & (m > high2)));
}

// Squared thresholds. int: floor(t^2) (m > floor(t^2) <=> m > t^2 for integer m, as cv2).
// float: the largest float f <= t^2, so that m > f <=> m > t^2 for every float m.
inline int threshold2_int(double t) {
  const double t2 = t * t;
  return t2 >= 2147483647.0 ? 2147483647 : static_cast<int>(std::floor(t2));
}

inline float threshold2_float(double t) {
  const double t2 = t * t;
  float f = static_cast<float>(t2);
  if (static_cast<double>(f) > t2) f = std::nextafter(f, -INFINITY);
  return f;
}

// CPU kernels (OpenMP over planes; gaussian_blur_cpu over rows). planes = N*C.
void gaussian_blur_cpu(const float* src, int64_t planes, int h, int w, double sigma, float* dst);
void canny_cpu(const uint8_t* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst);
void canny_cpu(const float* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst);

#ifdef __CUDACC__
// CUDA twins (csrc/cuda/canny.cu): device pointers, asynchronous on `stream`; scratch memory is
// taken from the stream-ordered allocator (cudaMallocAsync) and released on the same stream.
void gaussian_blur_cuda(const float* src, int64_t planes, int h, int w, double sigma, float* dst, cudaStream_t stream);
void canny_cuda(const uint8_t* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst,
                cudaStream_t stream);
void canny_cuda(const float* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst,
                cudaStream_t stream);
#endif

}  // namespace isl
