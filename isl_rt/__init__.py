"""isl-rt: Inverse Supervised Learning runtime for disorder detection in head CT.

Models trained on healthy scans only (He, Guo et al., NEJM AI 2024): the DeDN paints each
cell of a slice from its context, the DRN scores the difference image by its distance from
the healthy centre. Importing this package imports neither torch nor TensorRT.
"""

from importlib.metadata import PackageNotFoundError, version

from isl_rt.errors import IslError

try:
    __version__ = version("isl-rt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["IslError", "__version__"]
