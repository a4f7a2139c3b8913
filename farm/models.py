""".tflite models: validation and inspection with LiteRT.

`validate_model` refuses anything LiteRT cannot load with one ModelError line naming the file;
`inspect_model` says what a model holds (ops in execution order, tensors, quantization).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from farm.errors import ModelError

FILE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer
_INTEGER_ACTIVATIONS = {"int8", "uint8", "int16"}


class TensorInfo(BaseModel):
    """One model input or output."""

    model_config = ConfigDict(frozen=True)

    name: str
    shape: list[int]  # -1 where the model leaves a dimension dynamic
    dtype: str  # float32, int8, uint8, ...


class ModelInfo(BaseModel):
    """What a .tflite file holds."""

    model_config = ConfigDict(frozen=True)

    path: str
    size_bytes: int
    sha256: str
    op_sequence: list[str]  # builtin (or custom) op names of the primary subgraph, in order
    node_names: list[str]  # each node's first output tensor (how profilers label nodes)
    node_macs: list[int]  # estimated multiply-accumulates (or element ops) per node
    subgraph_count: int
    signatures: list[str]  # signature keys, e.g. ["serving_default"]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    quantized: bool  # most ops compute on int8/uint8/int16 tensors

    @property
    def node_count(self) -> int:
        """Nodes (operators) in the primary subgraph."""
        return len(self.op_sequence)

    @property
    def ops(self) -> dict[str, int]:
        """Op name to number of nodes using it, most used first."""
        return dict(Counter(self.op_sequence).most_common())

    @property
    def size_mb(self) -> float:
        """Size in MB as benchmark_model counts it (bytes / 1e6)."""
        return self.size_bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, node_count and ops included."""
        return {**self.model_dump(), "node_count": self.node_count, "ops": self.ops}


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Inside the block, the process's stderr (fd 2) goes nowhere: LiteRT's runtime prints
    INFO lines there that would repeat or clutter what farm prints."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def check_file(path: str | Path) -> None:
    """Raise ModelError (one line naming the file) unless it is a file that starts as TFLite."""
    _read(Path(path), whole=False)


def _read(path: Path, *, whole: bool = True) -> bytes:
    # Devices, FIFOs and sockets are refused before opening: /dev/zero never ends, a FIFO blocks.
    # The identifier is checked before the whole file is read, so a huge stray file costs little.
    try:
        if path.is_dir():
            raise ModelError(f"{path}: is a directory, not a .tflite model")
        if path.exists() and not path.is_file():
            raise ModelError(f"{path}: not a regular file, not a .tflite model")
        with path.open("rb") as fh:
            head = fh.read(8)
            if not head:
                raise ModelError(f"{path}: not a TFLite model: the file is empty")
            if len(head) < 8 or head[4:8] != FILE_IDENTIFIER:
                raise ModelError(
                    f"{path}: not a TFLite model: file identifier {head[4:8]!r}, "
                    f"expected {FILE_IDENTIFIER!r}"
                )
            return head + fh.read() if whole else head
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a .tflite model") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model: {exc.strerror or exc}") from None


def _load(path: Path, data: bytes) -> Any:
    """A LiteRT interpreter over `data` with tensors allocated (no default delegates)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(
            model_content=data,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelError(f"{path}: LiteRT cannot load the model: {reason}") from None
    return interpreter


def validate_model(path: str | Path) -> None:
    """Raise ModelError (one line naming the file) unless LiteRT can load and allocate the model."""
    path = Path(path)
    _load(path, _read(path))


def _elements(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(d, 1)
    return n


def _macs(op: str, ins: list[TensorInfo], outs: list[TensorInfo]) -> int:
    """Rough work of one node: multiply-accumulates for conv/FC, elements touched otherwise."""
    out = _elements(outs[0].shape) if outs else 0
    weights = ins[1].shape if len(ins) > 1 else []
    if op in ("CONV_2D", "TRANSPOSE_CONV") and len(weights) == 4:
        return out * weights[1] * weights[2] * weights[3]
    if op == "DEPTHWISE_CONV_2D" and len(weights) == 4:
        return out * weights[1] * weights[2]
    if op in ("FULLY_CONNECTED", "BATCH_MATMUL") and len(weights) >= 2:
        return out * weights[-1]
    return max(out, _elements(ins[0].shape) if ins else 0)


class _Graph:
    """The primary subgraph as the flatbuffer describes it."""

    def __init__(self, data: bytes) -> None:
        from ai_edge_litert import schema_py_generated as schema

        op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
        type_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if k.isupper()}
        model = schema.Model.GetRootAs(data, 0)

        def n(length: int) -> int:
            """A vector length, refused when the buffer cannot hold it (damaged file)."""
            if not 0 <= length <= len(data) // 4:
                raise ValueError(f"vector length {length} out of range")
            return length

        codes: list[str] = []
        for i in range(n(model.OperatorCodesLength())):
            code = model.OperatorCodes(i)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                custom = code.CustomCode()
                codes.append(custom.decode("utf-8", "replace") if custom else "CUSTOM")
            else:
                codes.append(op_names.get(builtin, f"BUILTIN_{builtin}"))
        self.subgraph_count: int = n(model.SubgraphsLength())
        self.signatures = [
            (model.SignatureDefs(i).SignatureKey() or b"").decode("utf-8", "replace")
            for i in range(n(model.SignatureDefsLength()))
        ]
        self.ops: list[str] = []
        self.node_names: list[str] = []
        self.node_macs: list[int] = []
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.quantized = False
        if not self.subgraph_count:
            return
        graph = model.Subgraphs(0)

        tensor_count = n(graph.TensorsLength())

        def tensor(index: int) -> TensorInfo:
            if not 0 <= index < tensor_count:
                raise ValueError(f"tensor index {index} out of range")
            t = graph.Tensors(index)
            if n(t.ShapeSignatureLength()):
                shape = [int(x) for x in t.ShapeSignatureAsNumpy()]
            else:
                shape = [int(x) for x in t.ShapeAsNumpy()] if n(t.ShapeLength()) else []
            return TensorInfo(
                name=(t.Name() or b"").decode("utf-8", "replace"),
                shape=shape,
                dtype=type_names.get(t.Type(), f"type_{t.Type()}"),
            )

        def indices(length: int, as_numpy: Any) -> list[int]:
            return [int(x) for x in as_numpy()] if length else []

        integer_ops = 0
        for i in range(n(graph.OperatorsLength())):
            op = graph.Operators(i)
            name = codes[op.OpcodeIndex()]
            self.ops.append(name)
            outs = [tensor(x) for x in indices(n(op.OutputsLength()), op.OutputsAsNumpy) if x >= 0]
            ins = [tensor(x) for x in indices(n(op.InputsLength()), op.InputsAsNumpy) if x >= 0]
            self.node_names.append(outs[0].name if outs else "")
            self.node_macs.append(_macs(name, ins, outs))
            if ins and ins[0].dtype in _INTEGER_ACTIVATIONS:
                integer_ops += 1
        self.quantized = integer_ops * 2 > len(self.ops)
        self.inputs = [tensor(i) for i in indices(n(graph.InputsLength()), graph.InputsAsNumpy)]
        self.outputs = [tensor(i) for i in indices(n(graph.OutputsLength()), graph.OutputsAsNumpy)]


def inspect_model(path: str | Path, *, verify: bool = True) -> ModelInfo:
    """Describe a model: size, sha256, ops in order, inputs/outputs, quantization.

    With `verify` (the default) LiteRT must load it first; without, only the file identifier
    is checked and a damaged flatbuffer surfaces as a ModelError while it is read.
    """
    path = Path(path)
    data = _read(path)
    if verify:
        _load(path, data)
    try:
        graph = _Graph(data)
    except Exception as exc:  # unverified or unusual flatbuffer: still one line
        raise ModelError(f"{path}: not a valid TFLite flatbuffer: {exc}") from None
    return ModelInfo(
        path=str(path),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        op_sequence=graph.ops,
        node_names=graph.node_names,
        node_macs=graph.node_macs,
        subgraph_count=graph.subgraph_count,
        signatures=graph.signatures,
        inputs=graph.inputs,
        outputs=graph.outputs,
        quantized=graph.quantized,
    )
