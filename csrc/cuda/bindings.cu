// The one binding file of isl_rt._cuda: the CUDA twins of the CPU kernels.
// Every kernel takes device pointers (as integers), shapes and a CUDA stream handle; the Python
// dispatch in isl_rt/kernels extracts them from __cuda_array_interface__ (CuPy, torch, numba).
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "build_config.h"
#include "canny.h"
#include "common.h"
#include "fanout.h"
#include "cavity.h"
#include "heatmap.h"
#include "window.h"

namespace py = pybind11;

// Device pointers and the stream arrive as integers from isl_rt/kernels, which has checked
// dtypes, shapes and contiguity of the device arrays behind them; the checks here only guard the
// launch configuration and throw std::invalid_argument (ValueError).
static void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

template <typename T>
static T* dptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

template <typename T>
static T* device_ptr(std::uintptr_t p, const char* name) {
  require(p != 0, std::string(name) + " is a null device pointer");
  return reinterpret_cast<T*>(p);
}

static cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

static void check_launch(cudaError_t err, const char* kernel) {
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA error in ") + kernel + ": " + cudaGetErrorString(err));
  }
}

static void check_dims(int64_t n, int64_t c, int64_t h, int64_t w) {
  require(n >= 0 && c >= 1 && h >= 1 && w >= 1, "shapes must be N >= 0 and C, H, W >= 1");
}

// ---- fanout.h ----------------------------------------------------------------------------------
static void fanout_py(std::uintptr_t x, std::uintptr_t edges, std::uintptr_t group_map, int64_t n, int64_t c, int64_t h,
                      int64_t w, int64_t groups, std::uintptr_t out, bool out_half, std::uintptr_t stream) {
  check_dims(n, c, h, w);
  require(groups >= 1, "groups must be >= 1");
  py::gil_scoped_release release;
  check_launch(isl::fanout_cuda(dptr<const float>(x), dptr<const uint8_t>(edges), dptr<const int32_t>(group_map), n, c,
                                h, w, groups, dptr<void>(out), out_half, as_stream(stream)),
               "fanout");
}

static void compose_diff_py(std::uintptr_t x, std::uintptr_t xhat, bool xhat_half, std::uintptr_t group_map, int64_t n,
                            int64_t c, int64_t h, int64_t w, int64_t groups, std::uintptr_t x_dd, std::uintptr_t x_dif,
                            std::uintptr_t stream) {
  check_dims(n, c, h, w);
  require(groups >= 1, "groups must be >= 1");
  py::gil_scoped_release release;
  check_launch(isl::compose_diff_cuda(dptr<const float>(x), dptr<const void>(xhat), xhat_half,
                                      dptr<const int32_t>(group_map), n, c, h, w, groups, dptr<float>(x_dd),
                                      dptr<float>(x_dif), as_stream(stream)),
               "compose_diff");
}

// ---- heatmap.h ---------------------------------------------------------------------------------
static void heatmap_py(std::uintptr_t x_dif, std::uintptr_t x, int64_t n, int64_t c, int64_t h, int64_t w,
                       float threshold, int64_t box, float gamma, std::uintptr_t heat, std::uintptr_t apds,
                       std::uintptr_t stream) {
  check_dims(n, c, h, w);
  require(threshold >= 0.0f && threshold < 1.0f, "threshold must be in [0, 1)");
  require(box >= 1 && box % 2 == 1, "box must be odd and >= 1");
  require(gamma >= 0.0f && std::isfinite(gamma), "gamma must be finite and >= 0");
  py::gil_scoped_release release;
  check_launch(isl::heatmap_cuda(dptr<const float>(x_dif), dptr<const float>(x), n, c, h, w, threshold, box, gamma,
                                 dptr<float>(heat), dptr<float>(apds), as_stream(stream)),
               "heatmap");
}

// ---- cavity.h ----------------------------------------------------------------------------------
static void cavity_py(std::uintptr_t x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t channel, float bone,
                      int64_t margin, int sides, bool largest, std::uintptr_t mask, std::uintptr_t stream) {
  check_dims(n, c, h, w);
  require(channel >= 0 && channel < c, "channel must be in 0..C-1");
  require(margin >= 0, "margin must be >= 0");
  require(sides >= 1 && sides <= 4, "sides must be in 1..4");
  require(!largest || h * w <= INT32_MAX, "H * W must fit in 31 bits for largest");
  py::gil_scoped_release release;
  check_launch(isl::cavity_cuda(dptr<const float>(x), n, c, h, w, channel, bone, margin, sides, largest,
                                dptr<float>(mask), as_stream(stream)),
               "cavity");
}

// ---- window.h, canny.h ------------------------------------------------------------------------
static void require_plane_dims(int64_t n, int64_t c, int64_t h, int64_t w) {
  require(n >= 0 && c >= 1 && h >= 1 && w >= 1, "shape must be [N >= 0, C >= 1, H >= 1, W >= 1]");
  require(h <= INT32_MAX && w <= INT32_MAX, "H and W must fit in 32 bits");
}

static void window_binding(std::uintptr_t hu, int64_t n, int64_t h, int64_t w,
                           const py::array_t<double, py::array::c_style>& windows, int size, std::uintptr_t out,
                           bool out_uint8, std::uintptr_t stream) {
  require(n >= 0 && h >= 1 && w >= 1 && h <= INT32_MAX && w <= INT32_MAX, "hu must be [N >= 0, H >= 1, W >= 1]");
  require(size >= 1, "size must be >= 1");
  require(windows.ndim() == 2 && windows.shape(1) == 2, "windows must be float64 [C, 2]");
  isl::WindowParams params{};
  const std::string err = isl::make_window_params(windows.data(), windows.shape(0), &params);
  require(err.empty(), err);
  if (n == 0) return;
  const int16_t* src = device_ptr<const int16_t>(hu, "hu");
  py::gil_scoped_release release;
  if (out_uint8) {
    isl::window_cuda(src, n, static_cast<int>(h), static_cast<int>(w), params, size, nullptr,
                     device_ptr<uint8_t>(out, "out"), as_stream(stream));
  } else {
    isl::window_cuda(src, n, static_cast<int>(h), static_cast<int>(w), params, size, device_ptr<float>(out, "out"),
                     nullptr, as_stream(stream));
  }
}

static void gaussian_blur_binding(std::uintptr_t img, int64_t n, int64_t c, int64_t h, int64_t w, double sigma,
                                  std::uintptr_t out, std::uintptr_t stream) {
  require_plane_dims(n, c, h, w);
  require(std::isfinite(sigma) && sigma > 0.0 && sigma <= isl::kMaxBlurSigma,
          "sigma must be in (0, " + std::to_string(isl::kMaxBlurSigma) + "]");
  if (n == 0) return;
  const float* src = device_ptr<const float>(img, "img");
  float* dst = device_ptr<float>(out, "out");
  py::gil_scoped_release release;
  isl::gaussian_blur_cuda(src, n * c, static_cast<int>(h), static_cast<int>(w), sigma, dst, as_stream(stream));
}

static void canny_binding(std::uintptr_t img, bool img_uint8, int64_t n, int64_t c, int64_t h, int64_t w, double low,
                          double high, double sigma, std::uintptr_t out, std::uintptr_t stream) {
  require_plane_dims(n, c, h, w);
  require(std::isfinite(low) && std::isfinite(high) && low >= 0.0 && low <= high,
          "thresholds must satisfy 0 <= low <= high");
  require(std::isfinite(sigma) && sigma >= 0.0 && sigma <= isl::kMaxBlurSigma,
          "sigma must be in [0, " + std::to_string(isl::kMaxBlurSigma) + "]");
  // Union-find labels are batch pixel indices with the top bit as a flag.
  require(n * c * h * w < (int64_t{1} << 31), "a CUDA canny batch must hold fewer than 2^31 pixels; split it");
  if (n == 0) return;
  uint8_t* dst = device_ptr<uint8_t>(out, "out");
  const int hh = static_cast<int>(h), ww = static_cast<int>(w);
  py::gil_scoped_release release;
  if (img_uint8) {
    isl::canny_cuda(device_ptr<const uint8_t>(img, "img"), n * c, hh, ww, low, high, sigma, dst, as_stream(stream));
  } else {
    isl::canny_cuda(device_ptr<const float>(img, "img"), n * c, hh, ww, low, high, sigma, dst, as_stream(stream));
  }
}

static py::dict build_info() {
  py::dict info;
  info["cuda_compiler"] = ISL_RT_CUDA_COMPILER;
  info["cuda_architectures"] = ISL_RT_CUDA_ARCHS;
  info["cudart_version"] = CUDART_VERSION;
  return info;
}

// Number of usable CUDA devices; 0 when there is no driver or no device (never raises).
static int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    return 0;
  }
  return n;
}

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "isl-rt CUDA kernels";
  m.def("build_info", &build_info, "How this extension was built: CUDA compiler and target architectures.");
  m.def("device_count", &device_count, "Number of usable CUDA devices (0 without a driver or device).");
  m.def("window", &window_binding, py::arg("hu"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("windows"),
        py::arg("size"), py::arg("out"), py::arg("out_uint8"), py::arg("stream"),
        "window(hu int16* [n,h,w], n, h, w, windows float64 [C,2] (host), size, out float32*|uint8* [n,C,S,S], "
        "out_uint8, stream): asynchronous on stream (see csrc/window.h).");
  m.def("gaussian_blur", &gaussian_blur_binding, py::arg("img"), py::arg("n"), py::arg("c"), py::arg("h"),
        py::arg("w"), py::arg("sigma"), py::arg("out"), py::arg("stream"),
        "gaussian_blur(img float32* [n,c,h,w], n, c, h, w, sigma, out float32*, stream) (see csrc/canny.h).");
  m.def("canny", &canny_binding, py::arg("img"), py::arg("img_uint8"), py::arg("n"), py::arg("c"), py::arg("h"),
        py::arg("w"), py::arg("low"), py::arg("high"), py::arg("sigma"), py::arg("out"), py::arg("stream"),
        "canny(img uint8*|float32* [n,c,h,w], img_uint8, n, c, h, w, low, high, sigma, out uint8* [n,c,h,w], "
        "stream): 0/1 edges (see csrc/canny.h).");

  // fanout.h: pointers are device addresses; every launch is asynchronous on `stream`.
  m.def("fanout", &fanout_py, py::arg("x"), py::arg("edges"), py::arg("group_map"), py::arg("n"), py::arg("c"),
        py::arg("h"), py::arg("w"), py::arg("groups"), py::arg("out"), py::arg("out_half"), py::arg("stream"),
        "Mask fan-out into out [N*G, 2C+1, H, W] (float32, or float16 when out_half).");
  m.def("compose_diff", &compose_diff_py, py::arg("x"), py::arg("xhat"), py::arg("xhat_half"), py::arg("group_map"),
        py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"), py::arg("groups"), py::arg("x_dd"), py::arg("x_dif"),
        py::arg("stream"), "x_dd and x_dif = |x - x_dd| (xhat float32, or float16 when xhat_half).");
  // heatmap.h
  m.def("heatmap", &heatmap_py, py::arg("x_dif"), py::arg("x"), py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"),
        py::arg("threshold"), py::arg("box"), py::arg("gamma"), py::arg("heat"), py::arg("apds"), py::arg("stream"),
        "Heat maps into heat [N, H, W] and APDS into apds [N].");
  m.def("cavity", &cavity_py, py::arg("x"), py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"),
        py::arg("channel"), py::arg("bone"), py::arg("margin"), py::arg("sides"), py::arg("largest"), py::arg("mask"),
        py::arg("stream"), "Cranial cavity mask (0/1 float) into mask [N, H, W].");
}
