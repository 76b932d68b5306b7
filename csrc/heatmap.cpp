// CPU (OpenMP) heat map and APDS; the formula and edge behaviour are documented in heatmap.h.
//
// Per slice, three passes:
//   1. rows:  u = normalise(channel mean of x_dif), written into the slice's heat plane (which
//             serves as scratch), and the row prefix sums of u into a summed-area table (double);
//   2. cols:  the column prefix sums complete the table;
//   3. final: b = u + box sum (4 table reads), heat = enhance(b), and the APDS sums.
// Many slices (N >= 2 x threads): one slice per thread, each with its own table. Few slices:
// every pass is split over rows (columns for pass 2) of one slice at a time. Both orders do
// the same arithmetic per pixel, so the heat maps are identical; only the order of the APDS
// double sum differs.
#include "heatmap.h"

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace isl {
namespace {

struct Slice {
  const float* dif;  // [C, H, W]
  const float* x;    // [C, H, W]
  float* heat;       // [H, W]: u after pass 1, heat after pass 3
  double* sat;       // [(H+1), (W+1)]: sat[y][x] = sum of u over rows < y, cols < x
};

struct Params {
  int64_t c, h, w, r;
  float threshold, gamma, bmax;
};

void rows_pass(const Slice& s, const Params& p, int64_t y0, int64_t y1) {
  const int64_t hw = p.h * p.w;
  for (int64_t y = y0; y < y1; ++y) {
    double* row = s.sat + (y + 1) * (p.w + 1);
    row[0] = 0.0;
    double acc = 0.0;
    for (int64_t xi = 0; xi < p.w; ++xi) {
      const float u = heat_norm_at(s.dif, p.c, hw, y * p.w + xi, p.threshold);
      s.heat[y * p.w + xi] = u;
      acc += u;
      row[xi + 1] = acc;
    }
  }
}

// Adds the rows above, for table columns [x0, x1) (row 0 is zero, row 1 is already complete).
void cols_pass(const Slice& s, const Params& p, int64_t x0, int64_t x1) {
  for (int64_t y = 1; y < p.h; ++y) {
    const double* above = s.sat + y * (p.w + 1);
    double* row = s.sat + (y + 1) * (p.w + 1);
    for (int64_t xi = x0; xi < x1; ++xi) row[xi] += above[xi];
  }
}

void final_pass(const Slice& s, const Params& p, int64_t y0, int64_t y1, double& sum, int64_t& count) {
  const int64_t hw = p.h * p.w;
  const int64_t stride = p.w + 1;
  for (int64_t y = y0; y < y1; ++y) {
    const double* top = s.sat + std::max<int64_t>(y - p.r, 0) * stride;
    const double* bottom = s.sat + std::min<int64_t>(y + p.r + 1, p.h) * stride;
    for (int64_t xi = 0; xi < p.w; ++xi) {
      const int64_t xa = std::max<int64_t>(xi - p.r, 0);
      const int64_t xb = std::min<int64_t>(xi + p.r + 1, p.w);
      const double box_sum = bottom[xb] - top[xb] - bottom[xa] + top[xa];
      const int64_t i = y * p.w + xi;
      const float b = static_cast<float>(static_cast<double>(s.heat[i]) + box_sum);
      const float heat = heat_enhance(b, p.gamma, p.bmax);
      s.heat[i] = heat;
      sum += heat;
      count += heat_foreground(s.x, p.c, hw, i) ? 1 : 0;
    }
  }
}

float apds_of(double sum, int64_t count) { return count > 0 ? static_cast<float>(sum / count) : 0.0f; }

void zero_border_row(double* sat, int64_t w) { std::fill(sat, sat + w + 1, 0.0); }

}  // namespace

void heatmap_cpu(const float* x_dif, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float threshold,
                 int64_t box, float gamma, float* heat, float* apds) {
  if (n == 0) return;
  const Params p{c, h, w, box / 2, threshold, gamma, static_cast<float>(1 + box * box)};
  const int64_t table = (h + 1) * (w + 1);
  const int64_t slice_in = c * h * w;
  const int64_t slice_out = h * w;
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
#else
  const int threads = 1;
#endif

  if (n >= 2 * static_cast<int64_t>(threads)) {
    // One slice per thread at a time, each thread with its own table.
    std::vector<double> sats(static_cast<size_t>(table) * threads);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t ni = 0; ni < n; ++ni) {
#ifdef _OPENMP
      double* sat = sats.data() + static_cast<int64_t>(omp_get_thread_num()) * table;
#else
      double* sat = sats.data();
#endif
      const Slice s{x_dif + ni * slice_in, x + ni * slice_in, heat + ni * slice_out, sat};
      zero_border_row(sat, w);
      rows_pass(s, p, 0, h);
      cols_pass(s, p, 0, w + 1);
      double sum = 0.0;
      int64_t count = 0;
      final_pass(s, p, 0, h, sum, count);
      apds[ni] = apds_of(sum, count);
    }
    return;
  }

  // Few slices: split each slice's passes over the threads.
  std::vector<double> sat(static_cast<size_t>(table));
  zero_border_row(sat.data(), w);
  const int64_t col_block = 64;
  const int64_t col_blocks = (w + 1 + col_block - 1) / col_block;
  for (int64_t ni = 0; ni < n; ++ni) {
    const Slice s{x_dif + ni * slice_in, x + ni * slice_in, heat + ni * slice_out, sat.data()};
#pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < h; ++y) rows_pass(s, p, y, y + 1);
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < col_blocks; ++blk)
      cols_pass(s, p, blk * col_block, std::min<int64_t>((blk + 1) * col_block, w + 1));
    double sum = 0.0;
    int64_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum, count)
    for (int64_t y = 0; y < h; ++y) final_pass(s, p, y, y + 1, sum, count);
    apds[ni] = apds_of(sum, count);
  }
}

}  // namespace isl
