// CPU kernel of the window family; semantics in window.h.
//
// One output row (slice n, row oy, all channels) at a time, OpenMP over the N*S output rows in
// contiguous chunks of 16 (dynamic, so a thread that gets no CPU does not hold up the call): the
// taps_y source rows it needs are windowed (cached per thread in a ring
// of taps_y slots keyed by source row, so rows shared by consecutive output rows are windowed
// once), summed vertically into one W-wide row per channel (contiguous, vectorised), and that row
// is resampled horizontally with the x taps.
#include "window.h"

#include <algorithm>
#include <vector>

namespace isl {

namespace {

struct AxisTable {
  int taps = 1;
  std::vector<int> first;   // [s]
  std::vector<float> w;     // [s, taps]
};

AxisTable axis_table(int n, int s) {
  AxisTable t;
  t.taps = resample_taps(n, s);
  t.first.resize(static_cast<size_t>(s));
  t.w.resize(static_cast<size_t>(s) * t.taps);
  for (int o = 0; o < s; ++o) t.first[o] = resample_weights(o, n, s, t.taps, &t.w[static_cast<size_t>(o) * t.taps]);
  return t;
}

struct RowWork {
  std::vector<float> ring;     // [taps_y][channels][w]: windowed source rows
  std::vector<int64_t> tag;    // [taps_y]: global source row held by each slot, -1 if none
  std::vector<float> column;   // [w]: vertical sum of one channel
  std::vector<float> acc;      // [s]: one output row of one channel
};

// acc[o] = sum_k w[o,k] * column[first[o] + k], k = 0..taps-1 in order; TAPS > 0 fixes the count
// at compile time (unrolled, and gathers with AVX2), 0 reads it from the table.
template <int TAPS>
ISL_ALWAYS_INLINE void horizontal_taps(const float* __restrict column, const AxisTable& ax, int s, float* __restrict acc) {
  const int taps = TAPS > 0 ? TAPS : ax.taps;
  const float* __restrict w = ax.w.data();
  const int* __restrict first = ax.first.data();
  for (int o = 0; o < s; ++o) {
    const float* col = column + first[o];
    const float* wo = w + static_cast<size_t>(o) * taps;
    float sum = 0.0f;
    for (int k = 0; k < taps; ++k) sum = fadd(sum, fmul(wo[k], col[k]));
    acc[o] = sum;
  }
}

ISL_CPU_CLONES void window_row(const int16_t* hu, int64_t slice, int h, int w, const WindowParams& params, int oy,
                               const AxisTable& ay, const AxisTable& ax, int s, float top, RowWork& work,
                               float* out_f32, uint8_t* out_u8) {
  const int channels = params.count;
  const size_t plane = static_cast<size_t>(s) * s;
  const float* wy = &ay.w[static_cast<size_t>(oy) * ay.taps];
  // Window the source rows of this output row (those not in the ring yet).
  for (int ky = 0; ky < ay.taps; ++ky) {
    if (wy[ky] == 0.0f) continue;  // padded tap: adds exactly 0
    const int y = ay.first[oy] + ky;
    const int slot = y % ay.taps;
    const int64_t key = slice * h + y;
    if (work.tag[slot] == key) continue;
    const int16_t* __restrict src = hu + key * static_cast<int64_t>(w);
    for (int c = 0; c < channels; ++c) {
      float* __restrict v = &work.ring[(static_cast<size_t>(slot) * channels + c) * w];
      const float lo = params.lo[c], width = params.width[c];
      for (int x = 0; x < w; ++x) v[x] = window_value(static_cast<float>(src[x]), lo, width, top);
    }
    work.tag[slot] = key;
  }
  for (int c = 0; c < channels; ++c) {
    // Vertical: column[x] = sum_ky wy * v[y][x], in ky order.
    float* __restrict column = work.column.data();
    std::fill(column, column + w, 0.0f);
    for (int ky = 0; ky < ay.taps; ++ky) {
      if (wy[ky] == 0.0f) continue;
      const int slot = (ay.first[oy] + ky) % ay.taps;
      const float* __restrict v = &work.ring[(static_cast<size_t>(slot) * channels + c) * w];
      const float wk = wy[ky];
      for (int x = 0; x < w; ++x) column[x] = fadd(column[x], fmul(wk, v[x]));
    }
    // Horizontal: out[ox] = sum_kx wx * column[first + kx], in kx order.
    float* __restrict acc = work.acc.data();
    switch (ax.taps) {
      case 1:
        if (s == w) {  // identity: 0 + 1*v == v
          std::copy(column, column + w, acc);
        } else {
          horizontal_taps<1>(column, ax, s, acc);
        }
        break;
      case 2: horizontal_taps<2>(column, ax, s, acc); break;
      case 3: horizontal_taps<3>(column, ax, s, acc); break;
      case 4: horizontal_taps<4>(column, ax, s, acc); break;
      case 5: horizontal_taps<5>(column, ax, s, acc); break;
      default: horizontal_taps<0>(column, ax, s, acc); break;
    }
    const size_t base = (static_cast<size_t>(slice) * channels + c) * plane + static_cast<size_t>(oy) * s;
    if (out_f32 != nullptr) {
      std::copy(acc, acc + s, out_f32 + base);
    } else {
      for (int o = 0; o < s; ++o) out_u8[base + o] = to_u8(acc[o]);
    }
  }
}

}  // namespace

void window_cpu(const int16_t* hu, int64_t n, int h, int w, const WindowParams& params, int s,
                float* out_f32, uint8_t* out_u8) {
  if (n <= 0) return;
  const AxisTable ay = axis_table(h, s), ax = axis_table(w, s);
  const int64_t rows = n * s;
  const float top = out_u8 != nullptr ? 255.0f : 1.0f;
#pragma omp parallel
  {
    RowWork work;
    work.ring.resize(static_cast<size_t>(ay.taps) * params.count * w);
    work.tag.assign(static_cast<size_t>(ay.taps), -1);
    work.column.resize(static_cast<size_t>(w));
    work.acc.resize(static_cast<size_t>(s));
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r)
      window_row(hu, r / s, h, w, params, static_cast<int>(r % s), ay, ax, s, top, work, out_f32, out_u8);
  }
}

}  // namespace isl
