// The one binding file of isl_rt._cuda: the CUDA twins of the CPU kernels.
// Every kernel takes device pointers (as integers), shapes and a CUDA stream handle; the Python
// dispatch in isl_rt/kernels extracts them from __cuda_array_interface__ (CuPy, torch, numba).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include "build_config.h"
#include "common.h"

namespace py = pybind11;

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
}
