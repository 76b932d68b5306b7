"""PyTorch backend: the bundle's networks rebuilt from their torch weights (``dedn.pt``,
``drn.pt``), run eagerly. The reference the ONNX and TensorRT paths are compared with, and the
GPU path where TensorRT is absent. Needs the ``train`` extra (torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from isl_rt.backends.base import Backend, TensorMeta
from isl_rt.errors import BackendError


class TorchBackend(Backend):
    """Runs one network of a bundle (``network`` is "dedn" or "drn") with PyTorch."""

    name = "torch"

    def __init__(self, path: Path, *, input_name: str, output_name: str, channels: int, size: int,
                 device: str = "cpu", threads: int = 0) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.input_name, self.output_name = input_name, output_name
        self.channels, self.size = channels, size
        self.device = device
        self.threads = threads
        self._model: Any = None
        self._torch: Any = None

    def _activate_impl(self) -> None:
        try:
            import torch
        except ImportError:
            raise BackendError("--backend torch needs PyTorch: pip install 'isl-rt[train]'.") from None
        from isl_rt.models.dedn import build_dedn
        from isl_rt.models.drn import build_drn

        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            config = saved["config"]
            if config["kind"] == "dedn":
                model = build_dedn(config["preset"], int(config["channels"]))
            elif config["kind"] == "drn":
                model = build_drn(config["preset"], int(config["channels"]), int(config["embedding_dim"]))
            else:
                raise KeyError(f"kind {config['kind']!r}")
            model.load_state_dict(saved["state_dict"])
        except (OSError, KeyError, RuntimeError, TypeError, ValueError) as err:
            raise BackendError(f"{self.path} is not torch weights of an isl-rt network ({err}); re-export the bundle.") from None
        if self.threads > 0 and self.device == "cpu":
            torch.set_num_threads(self.threads)
        self._model = model.to(self.device).eval()
        self._torch = torch

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        planes = 2 * self.channels + 1 if self.input_name == "masked" else self.channels
        return {self.input_name: TensorMeta(self.input_name, np.dtype(np.float32), (None, planes, self.size, self.size))}

    def _infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(feed[self.input_name])).to(self.device)
            y = self._model(x)
        return {self.output_name: y.cpu().numpy()}

    def _deactivate_impl(self) -> None:
        self._model = None
