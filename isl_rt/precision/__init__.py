"""Reduced precisions: the conversions (:mod:`.fp16` for TensorRT, :mod:`.int8` for OpenVINO)
and the one comparator that judges every one of them against FP32 (:mod:`.compare`).

BF16 needs no conversion: it is a compile-time hint of the OpenVINO CPU plugin.
"""

#: every precision a backend may run, FP32 first
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
