"""Inference backends and the choice between them.

Every backend subclasses :class:`isl_rt.backends.base.Backend`. Importing this package imports
no backend library: each is imported when a backend is activated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from isl_rt.backends.base import Backend
from isl_rt.errors import BackendError

if TYPE_CHECKING:
    from isl_rt.bundle import Bundle

#: what ``--backend`` accepts
BACKEND_NAMES: tuple[str, ...] = ("auto", "tensorrt", "onnxruntime", "onnxruntime-cuda", "openvino", "torch", "torch-cuda")


@dataclass
class BackendPair:
    """The DeDN and DRN runners of one bundle, and a sentence saying what runs them."""

    dedn: Backend
    drn: Backend
    name: str
    description: str
    #: what the DeDN runs: fp32, fp16 (TensorRT), bf16 or int8 (OpenVINO)
    precision: str = "fp32"

    def __enter__(self) -> "BackendPair":
        self.dedn.activate()
        try:
            self.drn.activate()
        except BaseException:
            self.dedn.deactivate()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.drn.deactivate()
        self.dedn.deactivate()


def open_backends(bundle: "Bundle", name: str = "auto", *, threads: int = 0, precision: str = "",
                  torch_fp16: bool = False, cuda_graph_batch: int = 0) -> BackendPair:
    """Runners for the bundle's DeDN and DRN (not yet active; use the pair as a context manager).

    ``auto`` picks the fastest backend available here: TensorRT when it is installed, a GPU is
    visible and ``isl-rt build-engine`` has cached engines for this bundle on it; else ONNX
    Runtime with its CUDA execution provider when the installed onnxruntime has one; else
    OpenVINO on the CPU when installed, at the fastest precision that passed the accuracy check
    here (``isl-rt check-precision``; FP32 when none did); else ONNX Runtime on the CPU.
    ``tensorrt`` needs those engines and says what is missing.
    ``precision`` is OpenVINO's (fp32, bf16, int8; empty = the checked one, as ``auto``);
    other backends take only "" or their own precision.
    ``torch_fp16`` and ``cuda_graph_batch`` are the torch-cuda options (FP16 autocast, a CUDA graph
    for DeDN batches of that size; see :class:`isl_rt.backends.torch.TorchBackend`).
    """
    from isl_rt.backends.onnxruntime import OnnxRuntimeBackend, available_providers

    if name not in BACKEND_NAMES:
        raise BackendError(f"--backend {name!r} is not one of {', '.join(BACKEND_NAMES)}.")
    if precision and name not in ("openvino", "auto") and precision != "fp32":
        raise BackendError(f"--precision {precision} is for --backend openvino (fp32, bf16, int8); "
                           f"--backend {name} runs its own precision (TensorRT: the engine's, from isl-rt build-engine).")
    if name in ("torch", "torch-cuda"):
        return _torch_pair(bundle, name, threads, torch_fp16, cuda_graph_batch)
    if name == "tensorrt" or (name == "auto" and not precision and _tensorrt_usable()):
        from isl_rt.backends.tensorrt import engine_for, open_tensorrt_pair

        try:
            return open_tensorrt_pair(bundle, engine_for(bundle))
        except BackendError:
            if name == "tensorrt":
                raise
    providers = available_providers()
    if name == "auto":
        if "CUDAExecutionProvider" in providers and not precision:
            name = "onnxruntime-cuda"
        elif openvino_installed():
            name = "openvino"
        elif precision:
            raise BackendError(f"--precision {precision} needs OpenVINO; pip install 'isl-rt[openvino]'.")
        else:
            name = "onnxruntime"
    if name == "openvino":
        from isl_rt.backends.openvino import checked_precision, open_openvino_pair

        reason = ""
        if not precision:
            precision, why = checked_precision(bundle)
            reason = f"chosen: {why}" if precision != "fp32" else "fp32: no reduced precision passed isl-rt check-precision here"
        return open_openvino_pair(bundle, precision, threads=threads, reason=reason)
    if name == "onnxruntime-cuda":
        if "CUDAExecutionProvider" not in providers:
            raise BackendError(
                "--backend onnxruntime-cuda needs onnxruntime with the CUDA execution provider "
                f"(pip install onnxruntime-gpu); this one has {providers}."
            )
        chosen = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        description = "ONNX Runtime, CUDA execution provider"
        if "TensorrtExecutionProvider" in providers:  # onnxruntime-gpu built with TensorRT: it goes first
            chosen.insert(0, "TensorrtExecutionProvider")
            description = "ONNX Runtime, TensorRT and CUDA execution providers"
    else:
        chosen = ["CPUExecutionProvider"]
        description = f"ONNX Runtime, CPU ({threads or 'all'} threads)"
    return BackendPair(
        dedn=OnnxRuntimeBackend(bundle.dedn_path, providers=chosen, threads=threads),
        drn=OnnxRuntimeBackend(bundle.drn_path, providers=chosen, threads=threads),
        name=name,
        description=description,
    )


def openvino_installed() -> bool:
    """OpenVINO can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def _torch_pair(bundle: "Bundle", name: str, threads: int, fp16: bool = False, cuda_graph_batch: int = 0) -> BackendPair:
    from isl_rt.backends.torch import TorchBackend

    files = bundle.manifest.files
    runners = []
    for network in ("dedn", "drn"):
        path = bundle.torch_path(network)
        if path is None:
            raise BackendError(
                f"{bundle.root} carries no torch weights ({network}.pt); use an ONNX backend or re-export the bundle."
            )
        spec = files[network]
        runners.append(TorchBackend(path, input_name=spec.input, output_name=spec.output, channels=bundle.manifest.channels,
                                    size=bundle.manifest.size, device="cuda" if name == "torch-cuda" else "cpu", threads=threads,
                                    fp16=fp16, cuda_graph_batch=cuda_graph_batch if network == "dedn" else 0))
    device = "CUDA" if name == "torch-cuda" else f"CPU ({threads or 'all'} threads)"
    options = "".join([", FP16 autocast" if fp16 else "", f", CUDA graph at batch {cuda_graph_batch}" if cuda_graph_batch else ""])
    return BackendPair(dedn=runners[0], drn=runners[1], name=name, description=f"PyTorch eager, {device}{options}")


def _tensorrt_usable() -> bool:
    """TensorRT is installed and a CUDA GPU is visible (checked without importing TensorRT)."""
    import importlib.util

    from isl_rt.backends.gpu import detect_gpu

    return importlib.util.find_spec("tensorrt") is not None and detect_gpu() is not None
