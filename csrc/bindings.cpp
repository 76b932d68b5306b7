// The one binding file of isl_rt._native: every CPU kernel family is exposed here.
// Shapes, dtypes and edge behaviour are documented in each family's header.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "build_config.h"
#include "common.h"

namespace py = pybind11;


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
}
