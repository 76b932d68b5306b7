"""The one shape every inference backend has (after Polygraphy's runners).

A backend is a context manager: ``activate()`` builds the session or engine, ``infer(feed)``
runs it, ``deactivate()`` frees it. Subclasses implement only the ``*_impl`` hooks; this base
class checks state and the input metadata, and records inference time.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from isl_rt.errors import BackendError


#: images per DeDN call (whole slices of G mask groups each, at least one slice) and difference
#: images per DRN call in :class:`isl_rt.pipeline.Scorer`; TensorRT engines are tuned for them
DEDN_BATCH = 16
DRN_BATCH = 32


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype and shape of a model input; ``None`` in ``shape`` is a dynamic axis.

    ``batch`` bounds the first axis (min, max) where the runner has a fixed range (a TensorRT
    profile); ``host_dtypes`` are further dtypes a host (numpy) array may have, converted by the
    runner (float32 for a float16 engine input). A GPU array (``__cuda_array_interface__``)
    must have ``dtype`` itself.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    batch: tuple[int, int] | None = None
    host_dtypes: tuple[np.dtype, ...] = ()

    def check(self, array: Any, model: str) -> None:
        """Raise BackendError when ``array`` does not fit this input."""
        iface = getattr(array, "__cuda_array_interface__", None)
        if iface is not None:
            dtype, allowed = np.dtype(iface["typestr"]), (self.dtype,)
        else:
            dtype, allowed = np.dtype(getattr(array, "dtype", None)), (self.dtype, *self.host_dtypes)
        shape = tuple(array.shape)
        if dtype not in allowed:
            names = " or ".join(np.dtype(d).name for d in allowed)
            raise BackendError(f"{model}: input {self.name!r} must be {names}, got {dtype.name}.")
        if len(shape) != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, shape)
        ):
            raise BackendError(f"{model}: input {self.name!r} must have shape {self.shape} (None = any), got {shape}.")
        if self.batch is not None and not self.batch[0] <= shape[0] <= self.batch[1]:
            raise BackendError(f"{model} takes batches of {self.batch[0]}..{self.batch[1]}, got {shape[0]}; "
                               "rebuild it for a larger batch (`isl-rt build-engine --max-batch`).")


class Backend(abc.ABC):
    """Base of every runner: onnxruntime, openvino, torch, tensorrt."""

    #: short name used by ``--backend`` and in reports
    name: str = "base"

    def __init__(self, model: str) -> None:
        self.model = model
        self.is_active = False
        self.last_inference_time = 0.0
        self.total_inference_time = 0.0
        self.inference_count = 0

    # ---- hooks a backend implements -------------------------------------------------------
    @abc.abstractmethod
    def _activate_impl(self) -> None:
        """Build the session / engine / module."""

    @abc.abstractmethod
    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        """Inputs of the active model."""

    @abc.abstractmethod
    def _infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        """Run the model on ``feed`` (already checked) and return its outputs by name."""

    @abc.abstractmethod
    def _deactivate_impl(self) -> None:
        """Free the session / engine / module."""

    # ---- public API --------------------------------------------------------------------
    def activate(self) -> None:
        if self.is_active:
            raise BackendError(f"{self.name} backend for {self.model} is already active.")
        self._activate_impl()
        self.is_active = True

    def input_metadata(self) -> dict[str, TensorMeta]:
        self._require_active()
        return self._input_metadata_impl()

    def infer(self, feed: dict[str, Any], *, check: bool = True) -> dict[str, Any]:
        """Run the model; ``check=False`` skips the input checks on a hot path already checked."""
        self._require_active()
        if check:
            meta = self._input_metadata_impl()
            missing = set(meta) - set(feed)
            extra = set(feed) - set(meta)
            if missing or extra:
                raise BackendError(
                    f"{self.model}: inputs must be {sorted(meta)}, got {sorted(feed)}."
                )
            for name, array in feed.items():
                meta[name].check(array, self.model)
        start = time.perf_counter()
        outputs = self._infer_impl(feed)
        self.last_inference_time = time.perf_counter() - start
        self.total_inference_time += self.last_inference_time
        self.inference_count += 1
        return outputs

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate_impl()
            self.is_active = False

    def _require_active(self) -> None:
        if not self.is_active:
            raise BackendError(f"{self.name} backend for {self.model} is not active; use it in a `with` block.")

    def __enter__(self) -> "Backend":
        self.activate()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deactivate()
