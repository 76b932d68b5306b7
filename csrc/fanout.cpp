// CPU (OpenMP) fan-out and composition; contract and edge behaviour in fanout.h.
#include "fanout.h"

#include <algorithm>
#include <climits>
#include <limits>

namespace isl {

GroupCheck check_group_map(const int32_t* group_map, int64_t hw, int64_t groups) {
  int64_t bad = 0;
  int32_t max_id = INT32_MIN;
  for (int64_t i = 0; i < hw; ++i) {
    const int32_t gid = group_map[i];
    bad += group_id_valid(gid, groups) ? 0 : 1;
    max_id = std::max(max_id, gid);
  }
  return {bad, max_id};
}

// Memory-bound: the work is split over output planes (one (n, g, channel) plane = h*w floats),
// so each thread writes its planes once, front to back; static scheduling of the flattened
// (n*g, plane) space hands each thread one contiguous stretch of `out`.
GroupCheck fanout_cpu(const float* x, const uint8_t* edges, const int32_t* group_map, int64_t n, int64_t c,
                      int64_t h, int64_t w, int64_t groups, float* out) {
  const int64_t hw = h * w;
  const int64_t planes = 2 * c + 1;
  const int64_t items = n * groups;
  if (items == 0) return check_group_map(group_map, hw, groups);

  int64_t bad = 0;
  int32_t max_id = INT32_MIN;
#pragma omp parallel for collapse(2) schedule(static) reduction(+ : bad) reduction(max : max_id)
  for (int64_t item = 0; item < items; ++item) {
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t ni = item / groups;
      const int32_t g = static_cast<int32_t>(item % groups);
      float* __restrict o = out + (item * planes + p) * hw;
      const int32_t* __restrict gm = group_map;
      if (p < c) {
        const float* __restrict xs = x + (ni * c + p) * hw;
        for (int64_t i = 0; i < hw; ++i) o[i] = fanout_masked(xs[i], fanout_keep(gm[i], g));
      } else if (p == c) {
        // The hole plane reads every id once per (n, g): the group-id check rides along.
        int64_t plane_bad = 0;
        int32_t plane_max = INT32_MIN;
        for (int64_t i = 0; i < hw; ++i) {
          const int32_t gid = gm[i];
          plane_bad += group_id_valid(gid, groups) ? 0 : 1;
          plane_max = std::max(plane_max, gid);
          o[i] = fanout_hole(fanout_keep(gid, g));
        }
        bad += plane_bad;
        max_id = std::max(max_id, plane_max);
      } else {
        const uint8_t* __restrict es = edges + (ni * c + (p - c - 1)) * hw;
        for (int64_t i = 0; i < hw; ++i) o[i] = fanout_edge(es[i]);
      }
    }
  }
  // Every (n, g) scanned the whole map; report the count of one scan.
  return {bad / items, max_id};
}

GroupCheck compose_diff_cpu(const float* x, const float* xhat, const int32_t* group_map, int64_t n, int64_t c,
                            int64_t h, int64_t w, int64_t groups, float* x_dd, float* x_dif) {
  const int64_t hw = h * w;
  const int64_t planes = n * c;
  if (planes == 0) return check_group_map(group_map, hw, groups);
  const float nan = std::numeric_limits<float>::quiet_NaN();

  int64_t bad = 0;
  int32_t max_id = INT32_MIN;
#pragma omp parallel for schedule(static) reduction(+ : bad) reduction(max : max_id)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t ni = plane / c;
    const int64_t ci = plane % c;
    const float* __restrict xs = x + plane * hw;
    // Plane (ni*G + g, ci) of xhat starts at group0 + g * group_stride.
    const float* __restrict group0 = xhat + (ni * groups * c + ci) * hw;
    const int64_t group_stride = c * hw;
    const int32_t* __restrict gm = group_map;
    float* __restrict dd = x_dd + plane * hw;
    float* __restrict dif = x_dif + plane * hw;
    int64_t plane_bad = 0;
    int32_t plane_max = INT32_MIN;
    for (int64_t i = 0; i < hw; ++i) {
      const int32_t gid = gm[i];
      const bool ok = group_id_valid(gid, groups);
      plane_bad += ok ? 0 : 1;
      plane_max = std::max(plane_max, gid);
      const float v = ok ? group0[gid * group_stride + i] : nan;
      dd[i] = v;
      dif[i] = compose_dif(xs[i], v);
    }
    bad += plane_bad;
    max_id = std::max(max_id, plane_max);
  }
  return {bad / planes, max_id};
}

}  // namespace isl
