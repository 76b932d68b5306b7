// CPU kernels of the canny family (gaussian_blur, canny); semantics in canny.h.
//
// Canny runs one plane per thread with row buffers: the Sobel of row i is computed separably
// (vertical [1 2 1] / [-1 0 1] of the three source rows, then horizontal), the squared magnitude
// goes into a ring of three zero-padded rows, and row i-1 is classified by NMS + double threshold
// into a (H+2)x(W+2) map while row i is being produced. Strong pixels are pushed on a stack as
// they are found; the hysteresis then pops pixels and pushes their 8-neighbours still marked
// candidate: one pass, every pixel pushed at most once.
#include "canny.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace isl {

namespace {

// ---- Gaussian blur -------------------------------------------------------------------------

// A strip of output rows [y0, y1) of one plane is blurred from a buffer holding the horizontal
// pass of the source rows y0-r .. y1+r-1 (reflect-101 mapped), so that every unit of work is
// independent and needs no plane-sized temporary. Halo rows are recomputed by neighbouring strips.
struct BlurBuffer {
  std::vector<float> pad;   // [w + 2r]: one reflect-101 padded source row
  std::vector<float> rows;  // [(strip + 2r) * w]: horizontally blurred rows
  void reserve(int w, int radius, int strip) {
    pad.resize(static_cast<size_t>(w) + 2 * radius);
    rows.resize(static_cast<size_t>(strip + 2 * radius) * w);
  }
};

// Horizontal pass of one source row (uint8 is converted to float32 while padding).
template <typename P>
ISL_ALWAYS_INLINE void blur_row_horizontal(const P* __restrict src, int w, const GaussKernel& g, float* __restrict pad,
                                           float* __restrict dst) {
  const int r = g.radius;
  float* c = pad + r;
  for (int x = 0; x < w; ++x) c[x] = static_cast<float>(src[x]);
  for (int x = 1; x <= r; ++x) {
    c[-x] = static_cast<float>(src[reflect101(-x, w)]);
    c[w - 1 + x] = static_cast<float>(src[reflect101(w - 1 + x, w)]);
  }
  for (int x = 0; x < w; ++x) dst[x] = blur_first(g.w[0], c[x]);
  for (int i = 1; i <= r; ++i) {
    const float wi = g.w[i];
    for (int x = 0; x < w; ++x) dst[x] = blur_step(dst[x], wi, c[x - i], c[x + i]);
  }
}

template <typename P>
ISL_ALWAYS_INLINE void blur_strip(const P* plane, int h, int w, int y0, int y1, const GaussKernel& g, BlurBuffer& buf,
                                  float* dst_plane) {
  const int r = g.radius;
  for (int yy = y0 - r; yy < y1 + r; ++yy)
    blur_row_horizontal(plane + static_cast<int64_t>(reflect101(yy, h)) * w, w, g, buf.pad.data(),
                        buf.rows.data() + static_cast<int64_t>(yy - y0 + r) * w);
  for (int y = y0; y < y1; ++y) {
    const float* __restrict c = buf.rows.data() + static_cast<int64_t>(y - y0 + r) * w;
    float* __restrict out = dst_plane + static_cast<int64_t>(y) * w;
    for (int x = 0; x < w; ++x) out[x] = blur_first(g.w[0], c[x]);
    for (int i = 1; i <= r; ++i) {
      const float* __restrict a = c - static_cast<int64_t>(i) * w;
      const float* __restrict b = c + static_cast<int64_t>(i) * w;
      const float wi = g.w[i];
      for (int x = 0; x < w; ++x) out[x] = blur_step(out[x], wi, a[x], b[x]);
    }
  }
}

ISL_CPU_CLONES void blur_strip_f32(const float* plane, int h, int w, int y0, int y1, const GaussKernel& g, BlurBuffer& buf,
                                   float* dst_plane) {
  blur_strip(plane, h, w, y0, y1, g, buf, dst_plane);
}

ISL_CPU_CLONES void blur_strip_u8(const uint8_t* plane, int h, int w, int y0, int y1, const GaussKernel& g,
                                  BlurBuffer& buf, float* dst_plane) {
  blur_strip(plane, h, w, y0, y1, g, buf, dst_plane);
}

inline void blur_plane(const float* plane, int h, int w, const GaussKernel& g, BlurBuffer& buf, float* dst) {
  blur_strip_f32(plane, h, w, 0, h, g, buf, dst);
}

inline void blur_plane(const uint8_t* plane, int h, int w, const GaussKernel& g, BlurBuffer& buf, float* dst) {
  blur_strip_u8(plane, h, w, 0, h, g, buf, dst);
}

// ---- Canny -----------------------------------------------------------------------------------

// Row buffers of one plane. G: Sobel values, M: squared magnitudes (int32 for uint8 input, float32
// otherwise; int32 rather than int16 Sobel values keep the NMS loop vectorisable with GCC 12).
template <typename G, typename M>
struct CannyWork {
  int h = 0, w = 0;
  std::vector<G> vsmooth, vdiff;      // [w+2], replicated ends
  std::vector<G> dx, dy;              // [2][w]: rows y-1 and y
  std::vector<M> mag;                 // [4][w+2]: a ring of 3 rows with zero ends, then a zero row
  std::vector<uint8_t> map;           // [(h+2)*(w+2)], border kNotEdge
  std::vector<int32_t> stack;

  CannyWork(int h_, int w_) : h(h_), w(w_) {
    vsmooth.resize(w + 2);
    vdiff.resize(w + 2);
    dx.resize(2 * static_cast<size_t>(w));
    dy.resize(2 * static_cast<size_t>(w));
    mag.assign(4 * static_cast<size_t>(w + 2), M(0));
    map.resize(static_cast<size_t>(h + 2) * (w + 2));
    stack.reserve(static_cast<size_t>(h) * w / 8 + 64);
  }
};

// The arithmetic type of the shared per-pixel functions for a storage type.
template <typename G>
using Arith = std::conditional_t<std::is_same_v<G, float>, float, int>;

// Sobel + squared magnitude of row y into dx/dy slot (y & 1) and mag slot (y % 3).
template <typename G, typename M, typename P>
ISL_ALWAYS_INLINE void gradient_row(const P* __restrict src, CannyWork<G, M>& wk, int y) {
  using A = Arith<G>;
  const int h = wk.h, w = wk.w;
  const P* __restrict above = src + static_cast<int64_t>(y > 0 ? y - 1 : 0) * w;
  const P* __restrict row = src + static_cast<int64_t>(y) * w;
  const P* __restrict below = src + static_cast<int64_t>(y < h - 1 ? y + 1 : h - 1) * w;
  G* __restrict vs = wk.vsmooth.data() + 1;
  G* __restrict vd = wk.vdiff.data() + 1;
  for (int x = 0; x < w; ++x) {
    vs[x] = static_cast<G>(sobel_smooth(A(above[x]), A(row[x]), A(below[x])));
    vd[x] = static_cast<G>(sobel_diff(A(above[x]), A(below[x])));
  }
  vs[-1] = vs[0];
  vs[w] = vs[w - 1];
  vd[-1] = vd[0];
  vd[w] = vd[w - 1];
  G* __restrict gx = wk.dx.data() + static_cast<size_t>(y & 1) * w;
  G* __restrict gy = wk.dy.data() + static_cast<size_t>(y & 1) * w;
  M* __restrict m = wk.mag.data() + static_cast<size_t>(y % 3) * (w + 2) + 1;
  for (int x = 0; x < w; ++x) {
    gx[x] = static_cast<G>(sobel_diff(A(vs[x - 1]), A(vs[x + 1])));
    gy[x] = static_cast<G>(sobel_smooth(A(vd[x - 1]), A(vd[x]), A(vd[x + 1])));
  }
  for (int x = 0; x < w; ++x) m[x] = static_cast<M>(magnitude2(A(gx[x]), A(gy[x])));
  m[-1] = m[w] = M(0);
}

// NMS + double threshold of row y (needs the magnitudes of rows y-1, y, y+1): one branch-free,
// vectorised pass classifying the row, then a scan for strong pixels (blocks of 32 tested at once)
// that seeds the hysteresis stack.
template <typename G, typename M>
ISL_ALWAYS_INLINE void classify_row(CannyWork<G, M>& wk, int y, M low2, M high2) {
  using A = Arith<G>;
  const int h = wk.h, w = wk.w;
  const size_t mstride = static_cast<size_t>(w + 2);
  // Rows outside the plane have zero magnitude: slot 3 is a row of zeros.
  const M* __restrict cur = wk.mag.data() + static_cast<size_t>(y % 3) * mstride + 1;
  const M* __restrict prev = wk.mag.data() + static_cast<size_t>(y > 0 ? (y + 2) % 3 : 3) * mstride + 1;
  const M* __restrict next = wk.mag.data() + static_cast<size_t>(y < h - 1 ? (y + 1) % 3 : 3) * mstride + 1;
  const G* __restrict gx = wk.dx.data() + static_cast<size_t>(y & 1) * w;
  const G* __restrict gy = wk.dy.data() + static_cast<size_t>(y & 1) * w;
  uint8_t* __restrict mrow = wk.map.data() + static_cast<size_t>(y + 1) * mstride + 1;
  for (int x = 0; x < w; ++x)
    mrow[x] = canny_class(A(gx[x]), A(gy[x]), cur[x], prev[x - 1], prev[x], prev[x + 1], cur[x - 1], cur[x + 1],
                          next[x - 1], next[x], next[x + 1], low2, high2);
  const int32_t base = static_cast<int32_t>((y + 1) * mstride + 1);
  constexpr int kBlock = 32;
  for (int x0 = 0; x0 < w; x0 += kBlock) {
    const int x1 = x0 + kBlock < w ? x0 + kBlock : w;
    int any = 0;
    for (int x = x0; x < x1; ++x) any |= mrow[x] == kStrong;
    if (!any) continue;
    for (int x = x0; x < x1; ++x)
      if (mrow[x] == kStrong) wk.stack.push_back(base + x);
  }
}

// Hysteresis from the strong pixels on the stack, then the 0/1 output.
template <typename G, typename M>
ISL_ALWAYS_INLINE void hysteresis(CannyWork<G, M>& wk, uint8_t* dst) {
  const int h = wk.h, w = wk.w;
  const int32_t step = w + 2;
  uint8_t* map = wk.map.data();
  const int32_t offsets[8] = {-step - 1, -step, -step + 1, -1, 1, step - 1, step, step + 1};
  std::vector<int32_t>& stack = wk.stack;
  while (!stack.empty()) {
    const int32_t p = stack.back();
    stack.pop_back();
    for (int k = 0; k < 8; ++k) {
      const int32_t q = p + offsets[k];
      if (map[q] == kCandidate) {
        map[q] = kStrong;
        stack.push_back(q);
      }
    }
  }
  for (int y = 0; y < h; ++y) {
    const uint8_t* __restrict mrow = map + static_cast<size_t>(y + 1) * step + 1;
    uint8_t* __restrict out = dst + static_cast<int64_t>(y) * w;
    for (int x = 0; x < w; ++x) out[x] = static_cast<uint8_t>(mrow[x] >> 1);  // kStrong (2) -> 1, else 0
  }
}

template <typename G, typename M, typename P>
ISL_ALWAYS_INLINE void canny_plane(const P* src, CannyWork<G, M>& wk, M low2, M high2, uint8_t* dst) {
  const int h = wk.h, w = wk.w;
  const size_t step = static_cast<size_t>(w + 2);
  // Border of the map: never a candidate, so the 8-neighbour search needs no bounds checks.
  std::memset(wk.map.data(), kNotEdge, step);
  std::memset(wk.map.data() + (h + 1) * step, kNotEdge, step);
  for (int y = 0; y < h; ++y) wk.map[(y + 1) * step] = wk.map[(y + 1) * step + w + 1] = kNotEdge;
  wk.stack.clear();
  for (int y = 0; y < h; ++y) {
    gradient_row(src, wk, y);
    if (y > 0) classify_row(wk, y - 1, low2, high2);
  }
  classify_row(wk, h - 1, low2, high2);
  hysteresis(wk, dst);
}

using WorkU8 = CannyWork<int32_t, int32_t>;
using WorkF32 = CannyWork<float, float>;

// The plane kernels, compiled for AVX2 and for the baseline ISA with a run-time choice
// (ISL_CPU_CLONES, common.h). Integer results do not depend on the ISA; float results neither,
// since every operation is rounded on its own (-ffp-contract=off) and no FMA is used.
ISL_CPU_CLONES void canny_plane_u8(const uint8_t* src, WorkU8& wk, int32_t low2, int32_t high2, uint8_t* dst) {
  canny_plane(src, wk, low2, high2, dst);
}

ISL_CPU_CLONES void canny_plane_f32(const float* src, WorkF32& wk, float low2, float high2, uint8_t* dst) {
  canny_plane(src, wk, low2, high2, dst);
}

template <typename P>
void canny_impl(const P* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst) {
  if (planes <= 0) return;
  const int64_t plane = static_cast<int64_t>(h) * w;
  const bool blur = sigma > 0.0;
  const GaussKernel g = blur ? gaussian_kernel(sigma) : GaussKernel{};
  const int il = threshold2_int(low), ih = threshold2_int(high);
  const float fl = threshold2_float(low), fh = threshold2_float(high);

#pragma omp parallel
  {
    // Integer path only for uint8 input without blur; everything else runs on float32.
    constexpr bool u8 = std::is_same_v<P, uint8_t>;
    const bool int_path = u8 && !blur;
    WorkU8 iwork(int_path ? h : 1, int_path ? w : 1);
    WorkF32 fwork(int_path ? 1 : h, int_path ? 1 : w);
    std::vector<float> fplane;
    BlurBuffer buf;
    if (blur) {
      fplane.resize(static_cast<size_t>(plane));
      buf.reserve(w, g.radius, h);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < planes; ++p) {
      const P* s = src + p * plane;
      uint8_t* d = dst + p * plane;
      if (!blur) {
        if constexpr (u8) {
          canny_plane_u8(s, iwork, il, ih, d);
        } else {
          canny_plane_f32(s, fwork, fl, fh, d);
        }
        continue;
      }
      blur_plane(s, h, w, g, buf, fplane.data());
      canny_plane_f32(fplane.data(), fwork, fl, fh, d);
    }
  }
}

}  // namespace

void gaussian_blur_cpu(const float* src, int64_t planes, int h, int w, double sigma, float* dst) {
  if (planes <= 0) return;
  const GaussKernel g = gaussian_kernel(sigma);
  const int64_t plane = static_cast<int64_t>(h) * w;
  // Units of work: strips of rows, at least 64 rows (halo overhead 2r/64) unless the plane is
  // smaller, and enough of them to keep every thread busy.
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const int64_t wanted = (4 * threads + planes - 1) / planes;
  const int strip = std::max(std::min(h, 64), static_cast<int>((h + wanted - 1) / wanted));
  const int per_plane = (h + strip - 1) / strip;
  const int64_t units = planes * per_plane;
#pragma omp parallel
  {
    BlurBuffer buf;
    buf.reserve(w, g.radius, strip);
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t p = u / per_plane;
      const int y0 = static_cast<int>(u % per_plane) * strip, y1 = std::min(h, y0 + strip);
      blur_strip_f32(src + p * plane, h, w, y0, y1, g, buf, dst + p * plane);
    }
  }
}

void canny_cpu(const uint8_t* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst) {
  canny_impl(src, planes, h, w, low, high, sigma, dst);
}

void canny_cpu(const float* src, int64_t planes, int h, int w, double low, double high, double sigma, uint8_t* dst) {
  canny_impl(src, planes, h, w, low, high, sigma, dst);
}

}  // namespace isl
