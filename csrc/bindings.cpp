// The one binding file of isl_rt._native: every CPU kernel family is exposed here.
// Shapes, dtypes and edge behaviour are documented in each family's header.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "build_config.h"
#include "canny.h"
#include "common.h"
#include "window.h"

namespace py = pybind11;

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

// The bindings check what the kernels rely on and throw std::invalid_argument (ValueError); the
// user-facing sentences come from isl_rt.kernels, which checks first.
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
}
