// CPU (OpenMP) cranial cavity mask; the rule is documented in cavity.h.
#include "cavity.h"

namespace isl {

void cavity_cpu(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                int64_t margin, float* mask) {
  if (n == 0) return;
  const int64_t hw = h * w;
  // The row pass must finish a slice before its column pass reads it; a parallel loop per pass
  // over all rows (then all columns) of every slice keeps each pass's lines independent.
#pragma omp parallel for schedule(static)
  for (int64_t line = 0; line < n * h; ++line) {
    const int64_t ni = line / h, y = line % h;
    cavity_line(x + (ni * c + channel) * hw + y * w, w, 1, bone, margin, false, mask + ni * hw + y * w);
  }
#pragma omp parallel for schedule(static)
  for (int64_t line = 0; line < n * w; ++line) {
    const int64_t ni = line / w, xi = line % w;
    cavity_line(x + (ni * c + channel) * hw + xi, h, w, bone, margin, true, mask + ni * hw + xi);
  }
}

}  // namespace isl
