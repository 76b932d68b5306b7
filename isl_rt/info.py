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
    backends["openvino"] = openvino_status()
    for module, dist, extra in (("torch", "torch", "train"), ("tensorrt", "tensorrt", "trt")):
        found = importlib.util.find_spec(module) is not None
        entry: dict[str, Any] = {"available": found, "version": _package_version(dist)}
        if not found:
            entry["install"] = f"pip install 'isl-rt[{extra}]'"
        backends[module] = entry
    return backends


def openvino_status() -> dict[str, Any]:
    """OpenVINO's version, CPU and the precisions it runs natively here (imports openvino when installed)."""
    if importlib.util.find_spec("openvino") is None:
        return {"available": False, "version": None, "install": "pip install 'isl-rt[openvino]'"}
    from isl_rt.backends.openvino import cpu_info

    cpu = cpu_info()
    native = ["fp32", "int8"] + (["bf16"] if cpu.bf16 else [])
    return {"available": True, "version": _package_version("openvino"), "nncf": _package_version("nncf"),
            "device": cpu.name, "precisions": native,
            "note": "" if cpu.bf16 else "no BF16 instructions on this CPU: --precision bf16 runs FP32"}


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
