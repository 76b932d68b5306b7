// The one binding file of isl_rt._native: every CPU kernel family is exposed here.
// Shapes, dtypes and edge behaviour are documented in each family's header.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cmath>
#include <stdexcept>
#include <string>

#include "build_config.h"
#include "common.h"
#include "fanout.h"
#include "heatmap.h"

namespace py = pybind11;

// Arrays arrive checked, C-contiguous and of the right dtype from isl_rt/kernels (noconvert below
// refuses anything else instead of copying it). The checks here only guard memory safety for
// direct callers of isl_rt._native.
template <typename T>
using carray = py::array_t<T, py::array::c_style>;

static void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

static bool has_shape(const py::array& a, std::initializer_list<int64_t> shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  py::ssize_t d = 0;
  for (int64_t s : shape)
    if (a.shape(d++) != s) return false;
  return true;
}

static py::tuple group_check(const isl::GroupCheck& r) { return py::make_tuple(r.out_of_range, r.max_id); }

// ---- fanout.h ----------------------------------------------------------------------------------
static py::tuple fanout_py(const carray<float>& x, const carray<uint8_t>& edges, const carray<int32_t>& group_map,
                           int64_t groups, carray<float>& out) {
  require(x.ndim() == 4, "x must be [N, C, H, W]");
  const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  require(groups >= 1, "groups must be >= 1");
  require(has_shape(edges, {n, c, h, w}), "edges must have the shape of x");
  require(has_shape(group_map, {h, w}), "group_map must be [H, W]");
  require(has_shape(out, {n * groups, 2 * c + 1, h, w}), "out must be [N*G, 2C+1, H, W]");
  const float* px = x.data();
  const uint8_t* pe = edges.data();
  const int32_t* pg = group_map.data();
  float* po = out.mutable_data();
  isl::GroupCheck r;
  {
    py::gil_scoped_release release;
    r = isl::fanout_cpu(px, pe, pg, n, c, h, w, groups, po);
  }
  return group_check(r);
}

static py::tuple compose_diff_py(const carray<float>& x, const carray<float>& xhat, const carray<int32_t>& group_map,
                                 int64_t groups, carray<float>& out_dd, carray<float>& out_dif) {
  require(x.ndim() == 4, "x must be [N, C, H, W]");
  const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  require(groups >= 1, "groups must be >= 1");
  require(has_shape(xhat, {n * groups, c, h, w}), "xhat must be [N*G, C, H, W]");
  require(has_shape(group_map, {h, w}), "group_map must be [H, W]");
  require(has_shape(out_dd, {n, c, h, w}) && has_shape(out_dif, {n, c, h, w}), "out_dd and out_dif must be [N, C, H, W]");
  const float* px = x.data();
  const float* pxh = xhat.data();
  const int32_t* pg = group_map.data();
  float* pdd = out_dd.mutable_data();
  float* pdif = out_dif.mutable_data();
  isl::GroupCheck r;
  {
    py::gil_scoped_release release;
    r = isl::compose_diff_cpu(px, pxh, pg, n, c, h, w, groups, pdd, pdif);
  }
  return group_check(r);
}

// ---- heatmap.h ---------------------------------------------------------------------------------
static void heatmap_py(const carray<float>& x_dif, const carray<float>& x, float threshold, int64_t box, float gamma,
                       carray<float>& out, carray<float>& out_apds) {
  require(x_dif.ndim() == 4, "x_dif must be [N, C, H, W]");
  const int64_t n = x_dif.shape(0), c = x_dif.shape(1), h = x_dif.shape(2), w = x_dif.shape(3);
  require(c >= 1 && h >= 1 && w >= 1, "x_dif must have C, H, W >= 1");
  require(has_shape(x, {n, c, h, w}), "x must have the shape of x_dif");
  require(threshold >= 0.0f && threshold < 1.0f, "threshold must be in [0, 1)");
  require(box >= 1 && box % 2 == 1, "box must be odd and >= 1");
  require(gamma >= 0.0f && std::isfinite(gamma), "gamma must be finite and >= 0");
  require(has_shape(out, {n, h, w}) && has_shape(out_apds, {n}), "out must be [N, H, W] and out_apds [N]");
  const float* pd = x_dif.data();
  const float* px = x.data();
  float* ph = out.mutable_data();
  float* pa = out_apds.mutable_data();
  py::gil_scoped_release release;
  isl::heatmap_cpu(pd, px, n, c, h, w, threshold, box, gamma, ph, pa);
}


static py::dict build_info() {
  py::dict info;
  info["compiler_flags"] = ISL_RT_BUILD_FLAGS;
#ifdef _OPENMP
  info["openmp"] = true;
  info["openmp_version"] = _OPENMP;
  info["openmp_max_threads"] = omp_get_max_threads();
#else
  info["openmp"] = false;
  info["openmp_version"] = 0;
  info["openmp_max_threads"] = 1;
#endif
  return info;
}

static void set_num_threads(int n) {
#ifdef _OPENMP
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

PYBIND11_MODULE(_native, m) {
  m.doc() = "isl-rt native CPU kernels (C++17, OpenMP)";
  m.def("build_info", &build_info, "How this extension was built: compiler flags, OpenMP and its thread count.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"), "Set the OpenMP thread count used by the kernels (n > 0).");

  // fanout.h
  m.def("fanout", &fanout_py, py::arg("x").noconvert(), py::arg("edges").noconvert(),
        py::arg("group_map").noconvert(), py::arg("groups"), py::arg("out").noconvert(),
        "Mask fan-out into out [N*G, 2C+1, H, W]; returns (ids out of range, largest id) of group_map.");
  m.def("compose_diff", &compose_diff_py, py::arg("x").noconvert(), py::arg("xhat").noconvert(),
        py::arg("group_map").noconvert(), py::arg("groups"), py::arg("out_dd").noconvert(),
        py::arg("out_dif").noconvert(),
        "x_dd and x_dif = |x - x_dd| into out_dd, out_dif; returns (ids out of range, largest id) of group_map.");
  // heatmap.h
  m.def("heatmap", &heatmap_py, py::arg("x_dif").noconvert(), py::arg("x").noconvert(), py::arg("threshold"),
        py::arg("box"), py::arg("gamma"), py::arg("out").noconvert(), py::arg("out_apds").noconvert(),
        "Heat maps into out [N, H, W] and APDS into out_apds [N].");
}
