"""Loading of the compiled extensions, with the reason kept when one is missing.

``isl_rt._native`` (C++/OpenMP) is always built by ``pip install``; ``isl_rt._cuda`` only when
a CUDA compiler was found at build time (``ISL_RT_CUDA=AUTO|ON|OFF``). A failed import is never
swallowed: the error text is kept and shown by ``isl-rt info`` and by :func:`native` /
:func:`cuda`, which raise :class:`ExtensionError` naming what to do.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from types import ModuleType

from isl_rt.errors import ExtensionError


@lru_cache(maxsize=None)
def _load(name: str) -> tuple[ModuleType | None, str]:
    if name == "_native":
        # Idle OpenMP workers sleep instead of spinning unless the user chose otherwise: the kernels'
        # parallel regions are milliseconds long and alternate with the inference backend's own
        # thread pool, which spinning workers would starve (benchmarks/RESULTS.md, Kernels). libgomp
        # reads this when the extension loads, so it is set just before.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return importlib.import_module(f"isl_rt.{name}"), ""
    except ImportError as err:
        return None, f"{type(err).__name__}: {err}"


def native() -> ModuleType:
    """The CPU extension ``isl_rt._native``; raises ExtensionError if it is not importable."""
    module, why = _load("_native")
    if module is None:
        raise ExtensionError(
            f"The native extension isl_rt._native could not be loaded ({why}); "
            "reinstall isl-rt with `pip install .` so that it is compiled."
        )
    return module


def cuda() -> ModuleType:
    """The CUDA extension ``isl_rt._cuda``; raises ExtensionError if it was not built."""
    module, why = _load("_cuda")
    if module is None:
        raise ExtensionError(
            f"The CUDA extension isl_rt._cuda is not available ({why}); rebuild with a CUDA "
            "toolkit on PATH and `ISL_RT_CUDA=ON pip install .` to get it or see why it fails."
        )
    return module


def status() -> dict[str, dict[str, object]]:
    """Build and load status of both extensions, for ``isl-rt info``."""
    out: dict[str, dict[str, object]] = {}
    for name in ("_native", "_cuda"):
        module, why = _load(name)
        entry: dict[str, object] = {"built": module is not None}
        if module is None:
            entry["error"] = why
        else:
            entry.update(module.build_info())
            if name == "_cuda":
                entry["devices"] = module.device_count()
        out[name] = entry
    return out
