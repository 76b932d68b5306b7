"""PyTorch backend: the bundle's networks rebuilt from their torch weights (``dedn.pt``,
``drn.pt``), run eagerly. The reference the ONNX and TensorRT paths are compared with, and the
GPU path where TensorRT is absent. Needs the ``train`` extra (torch).

On CUDA two options speed it up: ``fp16=True`` runs the network under FP16 autocast (the
normalisations stay FP32, as torch's autocast policy does), and ``cuda_graph_batch=B`` captures
one CUDA graph for batches of exactly B images (the pipeline's steady-state batch) and replays
it; any other batch size runs eagerly. Outputs are float32 either way. Both need ``device="cuda"``.
"""

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
                 device: str = "cpu", threads: int = 0, fp16: bool = False, cuda_graph_batch: int = 0) -> None:
        if (fp16 or cuda_graph_batch) and not device.startswith("cuda"):
            raise BackendError("FP16 autocast and CUDA graphs need the torch-cuda backend (device='cuda'), not the CPU.")
        if cuda_graph_batch < 0:
            raise BackendError(f"cuda_graph_batch must be 0 (off) or a batch size, got {cuda_graph_batch}.")
        super().__init__(str(path))
        self.path = Path(path)
        self.input_name, self.output_name = input_name, output_name
        self.channels, self.size = channels, size
        self.device = device
        self.threads = threads
        self.fp16 = fp16
        self.cuda_graph_batch = cuda_graph_batch
        self._model: Any = None
        self._torch: Any = None
        self._graph: Any = None
        self._static_in: Any = None
        self._static_out: Any = None

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
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("--backend torch-cuda needs a CUDA build of PyTorch and a visible GPU; this torch sees none.")
        self._model = model.to(self.device).eval()
        self._torch = torch
        if self.cuda_graph_batch:
            self._capture(self.cuda_graph_batch)

    def _forward(self, x: Any) -> Any:
        torch = self._torch
        if self.fp16:
            with torch.autocast("cuda", dtype=torch.float16):
                return self._model(x).float()
        return self._model(x)

    def _capture(self, batch: int) -> None:
        """Record one CUDA graph of the forward pass for ``batch`` images (warm-up on a side stream first)."""
        torch = self._torch
        meta = self._input_metadata_impl()[self.input_name]
        self._static_in = torch.zeros((batch, *meta.shape[1:]), dtype=torch.float32, device=self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):
                self._forward(self._static_in)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self._graph):
            self._static_out = self._forward(self._static_in)

    def _input_metadata_impl(self) -> dict[str, TensorMeta]:
        planes = 2 * self.channels + 1 if self.input_name == "masked" else self.channels
        return {self.input_name: TensorMeta(self.input_name, np.dtype(np.float32), (None, planes, self.size, self.size))}

    def _infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        torch = self._torch
        host = torch.from_numpy(np.ascontiguousarray(feed[self.input_name]))
        with torch.inference_mode():
            if self._graph is not None and host.shape[0] == self._static_in.shape[0]:
                self._static_in.copy_(host)
                self._graph.replay()
                y = self._static_out
            else:
                y = self._forward(host.to(self.device))
        return {self.output_name: y.cpu().numpy()}

    def _deactivate_impl(self) -> None:
        self._model = self._graph = self._static_in = self._static_out = None
