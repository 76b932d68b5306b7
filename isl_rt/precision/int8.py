"""INT8: NNCF post-training quantization of an ONNX network into an OpenVINO IR.

NNCF inserts FakeQuantize operations (8-bit activations and weights, per-channel weight scales)
whose ranges come from the activation statistics of the calibration batches; the OpenVINO CPU
plugin runs the quantized convolutions in INT8. The caller chooses the calibration data (for
isl-rt: fanned-out healthy slices only, see :func:`isl_rt.backends.openvino.healthy_calibration`).
Needs the ``openvino`` extra (openvino, nncf); both are imported by :func:`quantize_to_ir`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from isl_rt.errors import BackendError

#: NNCF's preset: symmetric weights and activations ("performance") runs fastest on the CPU plugin
PRESET = "performance"


@dataclass(frozen=True)
class QuantizeReport:
    """What :func:`quantize_to_ir` did."""

    nncf_version: str
    samples: int
    images: int
    preset: str
    seconds: float
    fake_quantize_ops: int


def require_nncf() -> object:
    """The ``nncf`` module, or a BackendError saying how to install it."""
    try:
        import nncf
    except ImportError:
        raise BackendError("INT8 quantization needs NNCF: pip install 'isl-rt[openvino]'.") from None
    return nncf


def quantize_to_ir(onnx_path: Path, batches: Sequence[np.ndarray], out_xml: Path) -> QuantizeReport:
    """Quantize the ONNX network ``onnx_path`` to INT8, calibrated on ``batches`` (each one input
    batch of the network, float32), and save it as ``out_xml`` (+ ``.bin``, weights uncompressed).

    NNCF's progress output is swallowed: library code never prints.
    """
    if not batches:
        raise BackendError("INT8 quantization needs at least one calibration batch.")
    try:
        import openvino as ov
    except ImportError:
        raise BackendError("OpenVINO is not installed here: pip install 'isl-rt[openvino]'.") from None
    nncf = require_nncf()
    started = time.perf_counter()
    model = ov.Core().read_model(str(onnx_path))
    logging.getLogger("nncf").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(  # type: ignore[attr-defined]
            model,
            nncf.Dataset(list(batches)),  # type: ignore[attr-defined]
            preset=nncf.QuantizationPreset.PERFORMANCE,  # type: ignore[attr-defined]
            subset_size=len(batches),
        )
    fake = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    if fake == 0:
        raise BackendError(f"NNCF inserted no quantization into {onnx_path}; the INT8 network would run FP32.")
    Path(out_xml).parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return QuantizeReport(nncf_version=str(nncf.__version__), samples=len(batches),  # type: ignore[attr-defined]
                          images=int(sum(b.shape[0] for b in batches)), preset=PRESET,
                          seconds=round(time.perf_counter() - started, 1), fake_quantize_ops=int(fake))
