// The one binding file of isl_rt._native: every CPU kernel family is exposed here.
// Shapes, dtypes and edge behaviour are documented in each family's header.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "build_config.h"
#include "canny.h"
#include "cavity.h"
#include "common.h"
#include "fanout.h"
#include "heatmap.h"
#include "window.h"

namespace py = pybind11;

// Arrays arrive checked, C-contiguous and of the right dtype from isl_rt/kernels (noconvert below
// refuses anything else instead of copying it). The checks here only guard memory safety for
// direct callers of isl_rt._native and throw std::invalid_argument (ValueError); the user-facing
// sentences come from isl_rt.kernels, which checks first.
template <typename T>
using carray = py::array_t<T, py::array::c_style>;

static void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

static std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + ")";
}

static void require_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  py::ssize_t i = 0;
  for (py::ssize_t d : shape) ok = ok && a.shape(i++) == d;
  std::string want = "(";
  i = 0;
  for (py::ssize_t d : shape) want += (i++ ? ", " : "") + std::to_string(d);
  require(ok, std::string(name) + " must have shape " + want + "), got " + shape_str(a));
}

// ---- window ----------------------------------------------------------------------------------

template <typename Out>
static void window_binding(const carray<int16_t>& hu, const carray<double>& windows, int size, carray<Out>& out) {
  require(hu.ndim() == 3, "hu must be int16 [N, H, W], got shape " + shape_str(hu));
  require(hu.shape(1) >= 1 && hu.shape(2) >= 1, "hu slices must be at least 1x1");
  require(size >= 1, "size must be >= 1");
  require(windows.ndim() == 2 && windows.shape(1) == 2, "windows must be float64 [C, 2]");
  isl::WindowParams params{};
  const std::string err = isl::make_window_params(windows.data(), windows.shape(0), &params);
  require(err.empty(), err);
  require_shape(out, "out", {hu.shape(0), windows.shape(0), size, size});
  const int64_t n = hu.shape(0);
  const int h = static_cast<int>(hu.shape(1)), w = static_cast<int>(hu.shape(2));
  const int16_t* src = hu.data();
  Out* dst = out.mutable_data();
  py::gil_scoped_release release;
  if constexpr (std::is_same_v<Out, float>) {
    isl::window_cpu(src, n, h, w, params, size, dst, nullptr);
  } else {
    isl::window_cpu(src, n, h, w, params, size, nullptr, dst);
  }
}

// ---- gaussian_blur / canny -------------------------------------------------------------------

static void require_planes(const py::array& img, const py::array& out, const char* what) {
  require(img.ndim() == 4, std::string(what) + " input must be [N, C, H, W], got shape " + shape_str(img));
  require(img.shape(2) >= 1 && img.shape(3) >= 1, std::string(what) + " planes must be at least 1x1");
  require_shape(out, "out", {img.shape(0), img.shape(1), img.shape(2), img.shape(3)});
}

static void gaussian_blur_binding(const carray<float>& img, double sigma, carray<float>& out) {
  require_planes(img, out, "gaussian_blur");
  require(std::isfinite(sigma) && sigma > 0.0 && sigma <= isl::kMaxBlurSigma,
          "sigma must be in (0, " + std::to_string(isl::kMaxBlurSigma) + "]");
  const int64_t planes = img.shape(0) * img.shape(1);
  const int h = static_cast<int>(img.shape(2)), w = static_cast<int>(img.shape(3));
  const float* src = img.data();
  float* dst = out.mutable_data();
  py::gil_scoped_release release;
  isl::gaussian_blur_cpu(src, planes, h, w, sigma, dst);
}

template <typename In>
static void canny_binding(const carray<In>& img, double low, double high, double sigma, carray<uint8_t>& out) {
  require_planes(img, out, "canny");
  require(std::isfinite(low) && std::isfinite(high) && low >= 0.0 && low <= high,
          "thresholds must satisfy 0 <= low <= high");
  require(std::isfinite(sigma) && sigma >= 0.0 && sigma <= isl::kMaxBlurSigma,
          "sigma must be in [0, " + std::to_string(isl::kMaxBlurSigma) + "]");
  const int64_t planes = img.shape(0) * img.shape(1);
  const int h = static_cast<int>(img.shape(2)), w = static_cast<int>(img.shape(3));
  const In* src = img.data();
  uint8_t* dst = out.mutable_data();
  py::gil_scoped_release release;
  isl::canny_cpu(src, planes, h, w, low, high, sigma, dst);
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

// ---- cavity.h ----------------------------------------------------------------------------------
static void cavity_py(const carray<float>& x, int64_t channel, float bone, int64_t margin, int sides, bool largest,
                      carray<float>& out) {
  require(x.ndim() == 4, "x must be [N, C, H, W]");
  const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  require(c >= 1 && h >= 1 && w >= 1, "x must have C, H, W >= 1");
  require(channel >= 0 && channel < c, "channel must be in 0..C-1");
  require(margin >= 0, "margin must be >= 0");
  require(sides >= 1 && sides <= 4, "sides must be in 1..4");
  require(!largest || h * w <= INT32_MAX, "H * W must fit in 31 bits for largest");
  require(has_shape(out, {n, h, w}), "out must be [N, H, W]");
  const float* px = x.data();
  float* pm = out.mutable_data();
  py::gil_scoped_release release;
  isl::cavity_cpu(px, n, c, h, w, channel, bone, margin, sides, largest, pm);
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

  const char* window_doc =
      "window(hu int16 [N,H,W], windows float64 [C,2], size, out float32|uint8 [N,C,S,S]): fused CT windowing "
      "+ resampling into out (see csrc/window.h).";
  m.def("window", &window_binding<float>, py::arg("hu").noconvert(), py::arg("windows").noconvert(), py::arg("size"),
        py::arg("out").noconvert(), window_doc);
  m.def("window", &window_binding<uint8_t>, py::arg("hu").noconvert(), py::arg("windows").noconvert(),
        py::arg("size"), py::arg("out").noconvert(), window_doc);
  m.def("gaussian_blur", &gaussian_blur_binding, py::arg("img").noconvert(), py::arg("sigma"),
        py::arg("out").noconvert(),
        "gaussian_blur(img float32 [N,C,H,W], sigma, out float32 [N,C,H,W]): separable, radius ceil(4 sigma), "
        "reflect-101 border (see csrc/canny.h).");
  const char* canny_doc =
      "canny(img uint8|float32 [N,C,H,W], low, high, sigma, out uint8 [N,C,H,W]): 0/1 edges as "
      "cv2.Canny(L2gradient=True), optional blur first (see csrc/canny.h).";
  m.def("canny", &canny_binding<uint8_t>, py::arg("img").noconvert(), py::arg("low"), py::arg("high"),
        py::arg("sigma"), py::arg("out").noconvert(), canny_doc);
  m.def("canny", &canny_binding<float>, py::arg("img").noconvert(), py::arg("low"), py::arg("high"),
        py::arg("sigma"), py::arg("out").noconvert(), canny_doc);

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
  // cavity.h
  m.def("cavity", &cavity_py, py::arg("x").noconvert(), py::arg("channel"), py::arg("bone"), py::arg("margin"),
        py::arg("sides"), py::arg("largest"), py::arg("out").noconvert(), "Cranial cavity mask (0/1 float32) into out [N, H, W] (see csrc/cavity.h).");
}
