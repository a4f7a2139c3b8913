"""farm.models on the committed sample models and on files LiteRT must refuse."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from farm.errors import ModelError
from farm.models import inspect_model, validate_model

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"
INT8 = MODELS / "mobilenet_v1_0.25_128_int8.tflite"
TINY = MODELS / "tiny_cnn_cumsum_float.tflite"


@pytest.mark.parametrize("path", [FLOAT, INT8, TINY], ids=lambda p: p.stem)
def test_sample_models_load_and_run_with_litert(path: Path) -> None:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    validate_model(path)
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if inp["dtype"] == np.int8:
        data = rng.integers(-128, 128, size=inp["shape"], dtype=np.int8)
    else:
        data = rng.uniform(-1, 1, size=inp["shape"]).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], data)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert out.shape[-1] in (10, 1000)


def test_sample_models_are_a_few_mb_in_all() -> None:
    total = sum(p.stat().st_size for p in MODELS.glob("*.tflite"))
    assert 0.5e6 < total < 5e6


def test_inspect_float_mobilenet() -> None:
    info = inspect_model(FLOAT)
    assert info.size_bytes == FLOAT.stat().st_size
    assert info.sha256 == hashlib.sha256(FLOAT.read_bytes()).hexdigest()
    assert info.node_count == 31
    assert info.ops["CONV_2D"] == 15 and info.ops["DEPTHWISE_CONV_2D"] == 13
    assert sum(info.ops.values()) == info.node_count
    assert info.op_sequence[0] == "CONV_2D" and info.op_sequence[-1] == "SOFTMAX"
    assert len(info.node_names) == info.node_count and all(info.node_names)
    assert [(t.shape, t.dtype) for t in info.inputs] == [([1, 128, 128, 3], "float32")]
    assert [(t.shape, t.dtype) for t in info.outputs] == [([1, 1000], "float32")]
    assert info.quantized is False
    assert info.subgraph_count == 1 and info.signatures == ["serving_default"]


def test_inspect_int8_mobilenet_is_quantized_with_the_same_graph() -> None:
    info = inspect_model(INT8)
    assert info.quantized is True
    assert info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    assert info.op_sequence == inspect_model(FLOAT).op_sequence


def test_inspect_tiny_cnn_has_an_op_outside_gpu_sets() -> None:
    info = inspect_model(TINY)
    assert info.op_sequence == [
        "CONV_2D",
        "MAX_POOL_2D",
        "CUMSUM",
        "CONV_2D",
        "MEAN",
        "FULLY_CONNECTED",
        "SOFTMAX",
    ]
    assert info.to_dict()["ops"]["CUMSUM"] == 1


def test_inspect_without_litert_verification_agrees() -> None:
    assert inspect_model(INT8, verify=False) == inspect_model(INT8)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    data = FLOAT.read_bytes()
    files = {
        "empty": b"",
        "text": b"this is not a model at all\n",
        "short": data[:6],
        "truncated": data[: len(data) // 2],
        "wrong_identifier": data[:4] + b"TFL2" + data[8:],
        "garbage_with_identifier": b"\x10\x00\x00\x00TFL3" + bytes(range(256)) * 20,
        "zeroed_body": data[:16] + b"\x00" * (len(data) - 16),
    }
    out = {}
    for name, content in files.items():
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(content)
        out[name] = path
    out["missing"] = tmp_path / "missing.tflite"
    out["directory"] = tmp_path
    return out


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "text",
        "short",
        "truncated",
        "wrong_identifier",
        "garbage_with_identifier",
        "zeroed_body",
        "missing",
        "directory",
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    for check in (validate_model, inspect_model):
        with pytest.raises(ModelError) as err:
            check(path)
        message = str(err.value)
        assert message.startswith(str(path)), message
        assert "\n" not in message
        assert err.value.exit_code == 2


def test_garbage_never_crashes_the_process(tmp_path: Path) -> None:
    """Every bad file is refused by a child process that exits normally (no signal)."""
    paths = [str(p) for p in _bad_files(tmp_path).values()]
    code = (
        "import sys\n"
        "from farm.errors import ModelError\n"
        "from farm.models import inspect_model\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        inspect_model(p)\n"
        "    except ModelError as e:\n"
        "        print('refused', p)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("refused") == len(paths)


def test_damaged_models_read_without_litert_never_hang_or_escape(tmp_path: Path) -> None:
    """The model engine reads flatbuffers without LiteRT: damage gives a ModelError or a result."""
    import random

    source = TINY.read_bytes()
    rng = random.Random(7)
    refused = 0
    for k in range(200):
        data = bytearray(source)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        if k % 3 == 0:
            data = data[: rng.randrange(8, len(data))]
        path = tmp_path / f"damaged{k}.tflite"
        path.write_bytes(bytes(data))
        try:
            info = inspect_model(path, verify=False)
        except ModelError as exc:
            refused += 1
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        else:
            assert len(info.op_sequence) == len(info.node_macs) == len(info.node_names)
    assert refused > 0
