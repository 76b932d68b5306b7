// CPU kernel of the window family; semantics in window.h.
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

// Window one source row for channel c and resample it horizontally into dst[s].
void horizontal_row(const int16_t* src, int w, float lo, float width, float top, const AxisTable& ax, int s,
                    float* values, float* dst) {
  for (int x = 0; x < w; ++x) values[x] = window_value(static_cast<float>(src[x]), lo, width, top);
  const int taps = ax.taps;
  for (int o = 0; o < s; ++o) {
    const float* wo = &ax.w[static_cast<size_t>(o) * taps];
    const float* v = values + ax.first[o];
    float acc = 0.0f;
    for (int k = 0; k < taps; ++k) acc = fadd(acc, fmul(wo[k], v[k]));
    dst[o] = acc;
  }
}

}  // namespace

void window_cpu(const int16_t* hu, int64_t n, int h, int w, const WindowParams& params, int s,
                float* out_f32, uint8_t* out_u8) {
  if (n <= 0) return;
  const int channels = params.count;
  const AxisTable ay = axis_table(h, s), ax = axis_table(w, s);
  const int64_t rows = n * s;
  const size_t plane = static_cast<size_t>(s) * s;
  const float top = out_u8 != nullptr ? 255.0f : 1.0f;

#pragma omp parallel
  {
    // Horizontally resampled source rows, cached by source row: a ring of ay.taps slots, each
    // holding all channels. Consecutive output rows share source rows (at fractional
    // boundaries when shrinking, many times when enlarging), so each is computed once per
    // thread chunk (static schedule = contiguous chunks of output rows).
    std::vector<float> values(static_cast<size_t>(w));
    std::vector<float> ring(static_cast<size_t>(ay.taps) * channels * s);
    std::vector<int64_t> tag(static_cast<size_t>(ay.taps), -1);
    std::vector<float> acc(static_cast<size_t>(channels) * s);

#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t slice = r / s;
      const int oy = static_cast<int>(r % s);
      std::fill(acc.begin(), acc.end(), 0.0f);
      const float* wy = &ay.w[static_cast<size_t>(oy) * ay.taps];
      for (int ky = 0; ky < ay.taps; ++ky) {
        if (wy[ky] == 0.0f) continue;  // padded tap: adding 0 changes nothing
        const int y = ay.first[oy] + ky;
        const int slot = y % ay.taps;
        float* cached = &ring[static_cast<size_t>(slot) * channels * s];
        const int64_t key = slice * h + y;
        if (tag[slot] != key) {
          const int16_t* src = hu + (slice * h + y) * static_cast<int64_t>(w);
          for (int c = 0; c < channels; ++c)
            horizontal_row(src, w, params.lo[c], params.width[c], top, ax, s, values.data(),
                           cached + static_cast<size_t>(c) * s);
          tag[slot] = key;
        }
        const float wk = wy[ky];
        for (size_t i = 0; i < acc.size(); ++i) acc[i] = fadd(acc[i], fmul(wk, cached[i]));
      }
      for (int c = 0; c < channels; ++c) {
        const size_t base = (static_cast<size_t>(slice) * channels + c) * plane + static_cast<size_t>(oy) * s;
        const float* a = &acc[static_cast<size_t>(c) * s];
        if (out_f32 != nullptr) {
          std::copy(a, a + s, out_f32 + base);
        } else {
          for (int o = 0; o < s; ++o) out_u8[base + o] = to_u8(a[o]);
        }
      }
    }
  }
}

}  // namespace isl
