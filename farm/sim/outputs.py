"""The stand-in's fixed inputs (`--input_layer_value_files`) and outputs (`--output_filepath`).

Inputs are read as the official tool reads them: `--input_layer` names the model's inputs in
order, `--input_layer_shape` their shapes, and each `name:file` item of
`--input_layer_value_files` (a ':' in a name written '::') holds one tensor's raw bytes.
Outputs are written as it writes them: each output tensor's raw bytes, one after another.

What is written is simulated and the log says so: the litert engine starts from LiteRT's real
CPU outputs, the model engine from outputs it derives from the model and the inputs without
inference. A delegate that ran changes them by the error of its arithmetic (fp16 rounding for a
GPU allowed to lose precision or NNAPI with fp16, a trace of fp32 noise otherwise, a quantum
either way on quantized outputs); a profile failure `wrong_results` makes them garbage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from farm.models import ModelInfo, TensorInfo

FP16_NOISE = 3e-4  # relative error fp16 arithmetic adds before the final rounding
FP32_NOISE = 1e-6  # a different summation order in fp32 kernels
QUANT_NOISE_SHARE = 0.1  # share of quantized output values a delegate moves by one step


class InputFileError(Exception):
    """The value files cannot be used; the message is the tool's own error line."""


def value_files(spec: str) -> dict[str, str]:
    """`--input_layer_value_files` as name → file (the tool's `::` escape undone)."""
    files: dict[str, str] = {}
    for item in (s for s in spec.split(",") if s):
        delim, i = -1, 0
        while i < len(item) - 1:
            if item[i] == ":":
                if item[i + 1] == ":":
                    i += 1
                elif delim == -1:
                    delim = i
                else:
                    raise InputFileError(f"{item} contains more than one delimiter.")
            i += 1
        if delim == -1:
            raise InputFileError(f"{item} doesn't contain any delimiter.")
        files[item[:delim].replace("::", ":")] = item[delim + 1 :].replace("::", ":")
    return files


def fixed_inputs(params: Any, inputs: Sequence[tuple[str, str, Sequence[int]]]) -> list[Any]:
    """The model's inputs (name, dtype, shape) in order: an array from its value file, or None
    where no file is given. InputFileError with the tool's message when they cannot be used."""
    names = [n for n in str(params["input_layer"]).split(",") if n]
    shapes = [s for s in str(params["input_layer_shape"]).split(":") if s]
    if len(names) != len(shapes):
        raise InputFileError(
            f"The number of items in --input_layer_shape ({params['input_layer_shape']}, with "
            f"{len(shapes)} items) must match the number of items in --input_layer "
            f"({params['input_layer']}, with {len(names)} items)."
        )
    files = value_files(str(params["input_layer_value_files"]))
    for name in files:
        if name not in names:
            raise InputFileError(
                f"Cannot find the corresponding input_layer name({name}) in --input_layer as "
                f"{params['input_layer']}"
            )
    if names and len(names) != len(inputs):
        raise InputFileError(
            f"Inputs mismatch: Model inputs #:{len(names)} expected: {len(inputs)}"
        )
    out: list[Any] = []
    for position, (_, dtype, shape) in enumerate(inputs):
        file = files.get(names[position]) if names else None
        if file is None:
            out.append(None)
            continue
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        try:
            data = Path(file).read_bytes()
        except OSError:
            raise InputFileError(f"Failed to read the input_layer_value_file:{file}") from None
        if len(data) != expected:
            raise InputFileError(
                f"The size of {file} is {len(data)} bytes. It should be {expected} bytes."
            )
        out.append(np.frombuffer(data, dtype=dtype).reshape(shape))
    return out


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _shape(tensor: TensorInfo) -> tuple[int, ...]:
    return tuple(max(int(n), 1) for n in tensor.shape)


def derived_outputs(model: ModelInfo, inputs: Sequence[Any]) -> list[Any]:
    """Deterministic stand-ins for a model's outputs, from the model and its inputs (no
    inference): class scores after a SOFTMAX, values around zero else, integers at random."""
    seed = hashlib.sha256(model.sha256.encode())
    for data in inputs:
        seed.update(np.ascontiguousarray(data).tobytes() if data is not None else b"random")
    out = []
    for index, tensor in enumerate(model.outputs):
        rng = _rng(seed.hexdigest(), index)
        shape, dtype = _shape(tensor), np.dtype(tensor.dtype)
        if dtype.kind == "f":
            values = rng.normal(0.0, 2.0, size=shape)
            if model.op_sequence and model.op_sequence[-1] == "SOFTMAX":
                values = np.exp(values - values.max(axis=-1, keepdims=True))
                values /= values.sum(axis=-1, keepdims=True)
            out.append(values.astype(dtype))
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            out.append(rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype))
        else:
            out.append(np.zeros(shape, dtype=dtype))
    return out


def delegated_outputs(
    outputs: Sequence[Any], delegate: str, *, fp16: bool, wrong: bool, seed: str
) -> list[Any]:
    """The outputs as a delegate computes them: `outputs` with its arithmetic's error."""
    changed = []
    for index, tensor in enumerate(outputs):
        rng = _rng(seed, delegate, index)
        data = np.asarray(tensor)
        if data.dtype.kind == "f":
            if wrong:
                spread = max(float(np.std(data)), float(np.mean(np.abs(data))), 1e-3)
                data = rng.normal(0.0, spread * 4, size=data.shape)
            else:
                noise = FP16_NOISE if fp16 else FP32_NOISE
                data = data * (1.0 + rng.normal(0.0, noise, size=data.shape))
                if fp16:
                    data = data.astype(np.float16)
            changed.append(data.astype(tensor.dtype))
        elif data.dtype.kind in "iu":
            info = np.iinfo(data.dtype)
            if wrong:
                values = rng.integers(info.min, info.max, size=data.shape, endpoint=True)
            else:
                step = rng.choice(
                    [-1, 0, 1],
                    size=data.shape,
                    p=[QUANT_NOISE_SHARE / 2, 1 - QUANT_NOISE_SHARE, QUANT_NOISE_SHARE / 2],
                )
                values = np.clip(data.astype(np.int64) + step, info.min, info.max)
            changed.append(values.astype(data.dtype))
        else:
            changed.append(data)
    return changed


def write(path: str, outputs: Sequence[Any]) -> bool:
    """Write the outputs as the tool does; False when the file cannot be opened (the tool then
    writes nothing and says nothing)."""
    try:
        with open(path, "wb") as fh:
            for tensor in outputs:
                fh.write(np.ascontiguousarray(tensor).tobytes())
    except OSError:
        return False
    return True
