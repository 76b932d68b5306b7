// CPU (OpenMP) cranial cavity mask; the rule is documented in cavity.h.
#include "cavity.h"

#include <cstddef>
#include <vector>

namespace isl {
namespace {

// With `largest`: keeps the first-ranked 4-connected component of one slice's codes (h x w) and
// writes the 0/1 mask over them. Components are flood-filled from seeds taken in raster order, so
// a component's seed is its first pixel and a later component replaces the kept one only when it
// ranks strictly higher. `label` and `stack` are the caller's scratch (reused across slices).
void keep_first_component(float* code, int64_t h, int64_t w, int sides, std::vector<int32_t>& label,
                          std::vector<int64_t>& stack) {
  const int64_t hw = h * w;
  label.assign(static_cast<std::size_t>(hw), -1);  // component number, -1 for pixels not inside
  int32_t components = 0, kept = -1;
  uint64_t kept_rank = 0;
  int64_t kept_first = 0;
  for (int64_t seed = 0; seed < hw; ++seed) {
    if (label[seed] >= 0 || !cavity_inside(code[seed], sides)) continue;
    const int32_t id = components++;
    uint64_t rank = 0;
    label[seed] = id;
    stack.assign(1, seed);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      rank += cavity_rank(cavity_enclosed(code[p]) ? 1 : 0, 1);
      const int64_t y = p / w, xi = p % w;
      const int64_t neighbours[4] = {xi > 0 ? p - 1 : -1, xi + 1 < w ? p + 1 : -1, y > 0 ? p - w : -1,
                                     y + 1 < h ? p + w : -1};
      for (const int64_t q : neighbours) {
        if (q >= 0 && label[q] < 0 && cavity_inside(code[q], sides)) {
          label[q] = id;
          stack.push_back(q);
        }
      }
    }
    if (kept < 0 || cavity_ranks_before(rank, seed, kept_rank, kept_first)) {
      kept = id;
      kept_rank = rank;
      kept_first = seed;
    }
  }
  for (int64_t p = 0; p < hw; ++p) code[p] = (kept >= 0 && label[p] == kept) ? 1.0f : 0.0f;
}

}  // namespace

void cavity_cpu(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                int64_t margin, int sides, bool largest, float* mask) {
  if (n == 0) return;
  const int64_t hw = h * w;
  // The row pass must finish a slice before its column pass reads it; a parallel loop per pass
  // over all rows (then all columns) of every slice keeps each pass's lines independent.
#pragma omp parallel for schedule(static)
  for (int64_t line = 0; line < n * h; ++line) {
    const int64_t ni = line / h, y = line % h;
    cavity_line(x + (ni * c + channel) * hw + y * w, w, 1, bone, margin, false, 0, mask + ni * hw + y * w);
  }
  const int finish_sides = largest ? 0 : sides;
#pragma omp parallel for schedule(static)
  for (int64_t line = 0; line < n * w; ++line) {
    const int64_t ni = line / w, xi = line % w;
    cavity_line(x + (ni * c + channel) * hw + xi, h, w, bone, margin, true, finish_sides, mask + ni * hw + xi);
  }
  if (!largest) return;
#pragma omp parallel
  {
    std::vector<int32_t> label;
    std::vector<int64_t> stack;
#pragma omp for schedule(dynamic)
    for (int64_t ni = 0; ni < n; ++ni) keep_first_component(mask + ni * hw, h, w, sides, label, stack);
  }
}

}  // namespace isl
