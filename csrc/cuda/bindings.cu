// The one binding file of isl_rt._cuda: the CUDA twins of the CPU kernels.
// Every kernel takes device pointers (as integers), shapes and a CUDA stream handle; the Python
// dispatch in isl_rt/kernels extracts them from __cuda_array_interface__ (CuPy, torch, numba).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "build_config.h"
#include "common.h"
#include "fanout.h"
#include "heatmap.h"

namespace py = pybind11;

// Device pointers and the stream arrive as integers from isl_rt/kernels, which has checked
// dtypes, shapes and contiguity; the checks here only guard the launch configuration.
template <typename T>
static T* dptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

static cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

static void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

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
}
