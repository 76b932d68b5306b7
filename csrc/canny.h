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
//   4. Non-maximum suppression in 4 sectors, OpenCV's fixed-point test with
//      tan(22.5 deg) ~ 13573 / 2^15:  ay = |dy| * 2^15, t = |dx| * 13573
//        ay < t                       -> horizontal: keep if m >  m[left]  and m >= m[right]
//        ay > t + |dx| * 2^16          -> vertical:   keep if m >  m[up]    and m >= m[down]
//        otherwise, diagonal along the sign of dx*dy: keep if m > both diagonal neighbours
//          (same signs: up-left and down-right; opposite signs: up-right and down-left).
//      The asymmetric ">" / ">=" ties are OpenCV's: of two equal neighbours along a horizontal
//      or vertical gradient, the left / upper one is kept.
//   5. Double threshold: candidate if kept and m > low^2, strong if also m > high^2 (both strict,
//      as cv2; requires 0 <= low <= high).
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

enum NmsSector : int { kHorizontal = 0, kVertical = 1, kDiagonal = 2, kAntiDiagonal = 3 };

constexpr int kTan22Q15 = 13573;  // round(tan(22.5 deg) * 2^15), OpenCV's TG22

ISL_HD int nms_sector(int dx, int dy) {
  const int ax = dx < 0 ? -dx : dx, ay = (dy < 0 ? -dy : dy) << 15;
  const int t = ax * kTan22Q15;
  if (ay < t) return kHorizontal;
  if (ay > t + (ax << 16)) return kVertical;
  return (dx ^ dy) < 0 ? kAntiDiagonal : kDiagonal;
}

// The same test in float32; exact (so equal to the int one) for integer-valued dx, dy.
ISL_HD int nms_sector(float dx, float dy) {
  const float ax = dx < 0.0f ? -dx : dx, ay = fmul(dy < 0.0f ? -dy : dy, 32768.0f);
  const float t = fmul(ax, static_cast<float>(kTan22Q15));
  if (ay < t) return kHorizontal;
  if (fsub(ay, fmul(ax, 65536.0f)) > t) return kVertical;  // ay > t + ax*2^16, without rounding t + ...
  return ((dx < 0.0f) != (dy < 0.0f)) ? kAntiDiagonal : kDiagonal;
}

// Is m (at column j of `cur`) a local maximum along its sector? prev/next are the rows above and
// below; columns -1 and W of the three rows must hold 0 (and rows outside the plane are all 0).
template <typename M>
ISL_HD bool nms_keep(int sector, M m, const M* prev, const M* cur, const M* next, int j) {
  switch (sector) {
    case kHorizontal: return m > cur[j - 1] && m >= cur[j + 1];
    case kVertical: return m > prev[j] && m >= next[j];
    case kDiagonal: return m > prev[j - 1] && m > next[j + 1];
    default: return m > prev[j + 1] && m > next[j - 1];
  }
}

// Pixel classes of the NMS + double-threshold stage (the CUDA kernels store them in the output).
enum CannyClass : uint8_t { kNotEdge = 0, kCandidate = 1, kStrong = 2 };

template <typename T, typename M>
ISL_HD uint8_t canny_class(T dx, T dy, M m, const M* prev, const M* cur, const M* next, int j, M low2, M high2) {
  if (!(m > low2)) return kNotEdge;
  if (!nms_keep(nms_sector(dx, dy), m, prev, cur, next, j)) return kNotEdge;
  return m > high2 ? kStrong : kCandidate;
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
