"""What this installation can do: version, extensions, threads and loadable backends.

Nothing here imports torch or TensorRT; their presence is checked with ``find_spec``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from typing import Any

from isl_rt import __version__, extensions


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def backend_status() -> dict[str, dict[str, Any]]:
    """Which inference backends can load here, without importing the heavy ones."""
    backends: dict[str, dict[str, Any]] = {}
    try:
        import onnxruntime

        backends["onnxruntime"] = {
            "available": True,
            "version": onnxruntime.__version__,
            "providers": list(onnxruntime.get_available_providers()),
        }
    except ImportError as err:
        backends["onnxruntime"] = {"available": False, "error": str(err)}
    for module, dist, extra in (("torch", "torch", "train"), ("tensorrt", "tensorrt", "trt")):
        found = importlib.util.find_spec(module) is not None
        entry: dict[str, Any] = {"available": found, "version": _package_version(dist)}
        if not found:
            entry["install"] = f"pip install 'isl-rt[{extra}]'"
        backends[module] = entry
    return backends


def collect() -> dict[str, Any]:
    """Everything ``isl-rt info`` reports, as plain JSON-able data."""
    return {
        "isl_rt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "extensions": extensions.status(),
        "backends": backend_status(),
    }
