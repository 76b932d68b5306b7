"""The native kernels of isl-rt and their dispatch.

Every function here runs on ``isl_rt._native`` (C++/OpenMP) for numpy arrays, on ``isl_rt._cuda``
for GPU arrays (``__cuda_array_interface__``), and on the numpy twin of the same name in
:mod:`isl_rt.kernels.reference` when ``ISL_RT_KERNELS=reference``. Inputs are checked once,
here, before dispatch.
"""

from __future__ import annotations
