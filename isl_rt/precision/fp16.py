"""FP16 ONNX: the FP32 graph of a bundle network converted for TensorRT's strongly typed builds
(TensorRT 11 takes tensor types from the ONNX graph), with the numerically sensitive ops kept in
FP32 between Cast nodes. Needs the ``onnx`` package (imported by :func:`to_fp16_onnx`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from isl_rt.errors import BackendError

#: version of :func:`to_fp16_onnx`'s output; part of the TensorRT engine key because engines depend on it
CONVERTER_VERSION = 1

#: ops computed in FP32 inside an FP16 graph (Cast nodes around them): normalisations (a mean and a
#: variance over up to S*S values), reductions over whole images, and the exp/log/pow family whose
#: results leave float16's range (6.5e4) or lose its 11-bit mantissa.
DEFAULT_KEEP_FP32_OPS: tuple[str, ...] = (
    "InstanceNormalization", "GroupNormalization", "LayerNormalization", "BatchNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "ReduceProd",
    "GlobalAveragePool", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt", "Reciprocal",
)
#: (op, input index) whose type is fixed by the ONNX spec to float32 whatever the data type
_FLOAT32_ONLY_INPUTS: frozenset[tuple[str, int]] = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})
_FP16_MAX = float(np.finfo(np.float16).max)
_FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)


@dataclass
class Fp16Report:
    """What :func:`to_fp16_onnx` changed."""

    initializers: int = 0
    kept_fp32_nodes: dict[str, int] = field(default_factory=dict)
    casts_inserted: int = 0
    clipped_values: int = 0
    flushed_values: int = 0
    io_fp16: bool = True


def to_fp16_onnx(model_path: Path, out_path: Path, *, keep_fp32_ops: Iterable[str] = DEFAULT_KEEP_FP32_OPS,
                 fp16_io: bool = True) -> Fp16Report:
    """Write an FP16 copy of the FP32 ONNX graph ``model_path`` to ``out_path``.

    Float32 initializers, Constant values, Cast targets and tensor types become float16. Nodes
    whose op is in ``keep_fp32_ops`` run in float32: their float inputs are cast up (an
    initializer read only by such nodes stays float32) and their outputs cast back down. With
    ``fp16_io`` the graph's float inputs and outputs become float16; without it they stay float32
    with a Cast after each input and before each output. Initializer values beyond float16's range
    are clipped to ±65504 and nonzero values below its smallest subnormal become 0 (both counted
    in the report). Uses the ``onnx`` package only; the result passes ``onnx.checker`` and strict
    shape inference.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise BackendError("The FP16 conversion needs the onnx package: pip install 'isl-rt[train]'.") from None
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    keep = frozenset(keep_fp32_ops)
    report = Fp16Report(io_fp16=fp16_io)
    model = onnx.load(str(model_path))
    graph = model.graph
    try:
        typed = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as err:  # onnx raises its own error types
        raise BackendError(f"{model_path} fails ONNX shape inference ({err}); re-export the bundle.") from None
    elem: dict[str, int] = {}
    for vi in list(typed.graph.value_info) + list(typed.graph.input) + list(typed.graph.output):
        elem[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        elem[init.name] = init.data_type
    if any(n.op_type in ("Loop", "If", "Scan") for n in graph.node):
        raise BackendError(f"{model_path} has control-flow subgraphs, which the FP16 conversion does not handle.")

    def is_float(name: str) -> bool:
        return elem.get(name) == FLOAT

    # Who reads each tensor, to keep FP32 the initializers only FP32 nodes (or FP32-only inputs) read.
    readers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, i))

    def reads_fp32(node: Any, index: int) -> bool:
        return node.op_type in keep or (node.op_type, index) in _FLOAT32_ONLY_INPUTS

    constants = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    fp32_consts = {name for name in constants if readers.get(name) and all(reads_fp32(n, i) for n, i in readers[name])}

    def to_half(array: np.ndarray) -> np.ndarray:
        finite = np.isfinite(array)
        report.clipped_values += int(np.count_nonzero(finite & (np.abs(array) > _FP16_MAX)))
        report.flushed_values += int(np.count_nonzero((array != 0) & (np.abs(array) < _FP16_TINY)))
        return np.clip(array, -_FP16_MAX, _FP16_MAX).astype(np.float16)

    for i, init in enumerate(graph.initializer):
        if init.data_type == FLOAT and init.name not in fp32_consts:
            half = numpy_helper.from_array(to_half(numpy_helper.to_array(init)), init.name)
            graph.initializer[i].CopyFrom(half)
            report.initializers += 1

    new_nodes: list[Any] = []
    counter = [0]

    def cast(src: str, to: int, hint: str) -> str:
        counter[0] += 1
        dst = f"{hint}__fp{'32' if to == FLOAT else '16'}_{counter[0]}"
        new_nodes.append(helper.make_node("Cast", [src], [dst], to=to, name=f"isl_fp16_cast_{counter[0]}"))
        report.casts_inserted += 1
        return dst

    # Graph inputs: float16 in the graph signature, or float32 with a Cast to float16.
    renamed: dict[str, str] = {}
    for vi in graph.input:
        if vi.type.tensor_type.elem_type != FLOAT:
            continue
        if fp16_io:
            vi.type.tensor_type.elem_type = HALF
        else:
            renamed[vi.name] = cast(vi.name, HALF, vi.name)

    outputs = {vi.name for vi in graph.output if vi.type.tensor_type.elem_type == FLOAT}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        if node.op_type in keep or any((node.op_type, i) in _FLOAT32_ONLY_INPUTS for i in range(len(node.input))):
            whole = node.op_type in keep
            if whole:
                report.kept_fp32_nodes[node.op_type] = report.kept_fp32_nodes.get(node.op_type, 0) + 1
            for i, name in enumerate(node.input):
                needs_fp32 = whole or (node.op_type, i) in _FLOAT32_ONLY_INPUTS
                if name and needs_fp32 and is_float(name) and name not in fp32_consts:
                    node.input[i] = cast(name, FLOAT, name)
            new_nodes.append(node)
            if whole:
                for o, name in enumerate(node.output):
                    if name and is_float(name):
                        inner = f"{name}__fp32out"
                        node.output[o] = inner
                        counter[0] += 1
                        new_nodes.append(helper.make_node("Cast", [inner], [name], to=HALF, name=f"isl_fp16_cast_{counter[0]}"))
                        report.casts_inserted += 1
            continue
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
                if node.op_type == "Constant" and node.output[0] in fp32_consts:
                    continue
                attr.t.CopyFrom(numpy_helper.from_array(to_half(numpy_helper.to_array(attr.t)), attr.t.name))
        new_nodes.append(node)

    # Graph outputs: float16 in the signature, or a Cast back to float32 under the output's name.
    for vi in graph.output:
        if vi.name not in outputs:
            continue
        if fp16_io:
            vi.type.tensor_type.elem_type = HALF
            continue
        inner = f"{vi.name}__fp16out"
        for node in new_nodes:
            for o, name in enumerate(node.output):
                if name == vi.name:
                    node.output[o] = inner
            for i, name in enumerate(node.input):
                if name == vi.name:
                    node.input[i] = inner
        counter[0] += 1
        new_nodes.append(helper.make_node("Cast", [inner], [vi.name], to=FLOAT, name=f"isl_fp16_cast_{counter[0]}"))
        report.casts_inserted += 1

    del graph.node[:]
    graph.node.extend(_topological(new_nodes, {vi.name for vi in graph.input} | {i.name for i in graph.initializer}))
    del graph.value_info[:]
    try:
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as err:  # the checker and shape inference raise their own error types
        raise BackendError(f"The FP16 copy of {model_path} is not a valid ONNX graph ({err}).") from None
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return report


def _topological(nodes: list[Any], available: set[str]) -> list[Any]:
    """``nodes`` in an order where every node comes after the producers of its inputs."""
    ready = set(available) | {""}
    pending = list(nodes)
    ordered: list[Any] = []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({n for node in rest for n in node.input if n not in ready})[:3]
            raise BackendError(f"The FP16 graph has inputs no node produces ({', '.join(missing)}).")
        pending = rest
    return ordered

