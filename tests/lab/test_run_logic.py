"""The runner's and run service's pure helpers (no adb, no phones)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from farm.bench.parse import parse_text
from farm.bench.runner import _failure_reason, _pid, is_simulated, log_name, safe_name
from farm.bench.service import expand_models
from farm.errors import ConfigError, InputError


def test_log_names_are_plain_file_names() -> None:
    cell = SimpleNamespace(
        model="$(touch x) a'b/../c",
        model_sha256="ab" * 32,
        delegate="external:qnn",
        threads=4,
        repeat=2,
    )
    name = log_name(cell)
    assert name == "touch_x_a_b_.._c-abababababab-external:qnn-t4-r2.log"
    assert "/" not in name and " " not in name and "$" not in name
    assert safe_name("127.0.0.1:5555") == "127.0.0.1:5555"
    assert safe_name("///") == "_"


@pytest.mark.parametrize(
    ("output", "pid"),
    [("1234\n", 1234), ("nohup: ignoring input\n  77 \n", 77), ("", None), ("oops\n", None)],
)
def test_pid_from_launch_output(output: str, pid: int | None) -> None:
    assert _pid(output) == pid


def test_simulated_only_when_the_log_says_so(tmp_path: Path) -> None:
    sim = tmp_path / "sim.log"
    sim.write_text(
        "INFO: farm virtual device 127.0.0.1:5555 (pixel_7): benchmark_model stand-in, "
        "engine model: no inference is run\nINFO: STARTING!\n"
    )
    real = tmp_path / "real.log"
    real.write_text("INFO: STARTING!\nINFO: simulated annealing model\n")
    assert is_simulated(sim)
    assert not is_simulated(real)
    assert not is_simulated(tmp_path / "missing.log")


def test_failure_reason_names_kind_and_first_tool_error() -> None:
    (result,) = parse_text(
        "INFO: STARTING!\n"
        "INFO: Loaded model /data/local/tmp/m.tflite\n"
        "ERROR: NN API returned error ANEURALNETWORKS_BAD_DATA at line 1250 while adding "
        "operation.\n"
        "ERROR: Failed to apply NNAPI delegate.\n"
        "ERROR: Benchmarking failed.\n"
    )
    assert result.status == "failed"
    reason = _failure_reason(result)
    assert reason.startswith(f"{result.failure_kind}: ")
    assert "ANEURALNETWORKS_BAD_DATA" in reason


def test_expand_models_globs_order_and_errors(tmp_path: Path) -> None:
    for name in ("b.tflite", "a.tflite", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = expand_models([str(tmp_path / "*.tflite"), str(tmp_path / "a.tflite")])
    assert found == [tmp_path / "a.tflite", tmp_path / "b.tflite"]
    with pytest.raises(InputError, match=r"nothing\*.tflite: no model file matches"):
        expand_models([str(tmp_path / "nothing*.tflite")])
    with pytest.raises(ConfigError, match="no models given"):
        expand_models([])
