"""The runner's and run service's pure helpers (no adb, no phones)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from farm.android.jobs import (
    launch_command,
    launched_pid,
    launcher_script,
    parse_df,
    recorded_exit_status,
)
from farm.android.paths import log_path
from farm.bench.cell import is_simulated, log_name, safe_name
from farm.bench.parse import parse_text
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
    name = log_name(cell)  # type: ignore[arg-type]
    assert name == "touch_x_a_b_.._c-abababababab-external_qnn-t4-r2.log"
    assert "/" not in name and " " not in name and "$" not in name
    # portable everywhere: no ':' (Windows, CI artifact stores), no leading or trailing dot
    assert safe_name("127.0.0.1:5555") == "127.0.0.1_5555"
    assert safe_name("///") == "_" and safe_name("..") == "_" and safe_name(".x.") == "x"


@pytest.mark.parametrize(
    ("output", "pid"),
    [
        ("pid:1234\n", 1234),
        ("nohup: ignoring input\npid:77 \n", 77),
        ("stopped: 12\npid:\n", None),
        ("", None),
        ("1234\n", None),
    ],
)
def test_pid_from_launch_output(output: str, pid: int | None) -> None:
    assert launched_pid(output) == pid


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
    reason = result.reason
    assert reason is not None
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


def test_exit_status_record_must_name_the_pid() -> None:
    assert recorded_exit_status("1234 139\n", 1234) == 139
    assert recorded_exit_status("  77 0 ", 77) == 0
    assert recorded_exit_status("1234 139\n", 99) is None  # an older launch's record
    assert recorded_exit_status("", 1234) is None
    assert recorded_exit_status("1234\n", 1234) is None


def test_free_space_from_df() -> None:
    df = (
        "Filesystem       1K-blocks     Used Available Use% Mounted on\n"
        "/dev/block/dm-48  21484836 21474836     10240 100% /data\n"
    )
    assert parse_df(df) == "10.0 MiB free on /data (df)"
    assert parse_df("df: /data: Permission denied\n") is None
    # Android 6's toolbox df: sizes with units, Free in the 4th column, CR LF from a PTY.
    toolbox = (
        "Filesystem               Size     Used     Free   Blksize\r\n"
        "/data/local/tmp         29.5G    20.5G     9.0G   4096\r\n"
    )
    assert parse_df(toolbox) == "9216.0 MiB free on /data/local/tmp (df)"
    assert parse_df(toolbox.replace("9.0G", "512.0K")) == "0.5 MiB free on /data/local/tmp (df)"


def test_launch_is_a_short_command_whatever_the_script_holds() -> None:
    """Old adb servers abort on a service name over 4 KiB: the launch names a script."""
    launcher, text = launcher_script()
    command = launch_command(launcher, log_path("x" * 200 + ".log"), 5.0, "BENCH")
    assert len(command) - len("BENCH") < 400 < len(text)
    assert launcher.endswith(".sh") and hashlib.sha256(text.encode()).hexdigest()[:16] in launcher


def test_failure_reason_names_the_signal_of_a_crash() -> None:
    (result,) = parse_text(
        "INFO: STARTING!\nINFO: Loaded model /data/local/tmp/m.tflite\n", exit_status=139
    )
    assert result.status == "failed"
    assert (result.reason or "").startswith("crashed (SIGSEGV)")


def test_wrong_benchmark_build_is_refused_before_any_device_is_touched(tmp_path: Path) -> None:
    from farm.bench.service import run
    from farm.config import load_config
    from farm.errors import BinaryError

    model = Path(__file__).resolve().parents[2] / "models" / "tiny_cnn_cumsum_float.tflite"
    linux_build = tmp_path / "benchmark_model"
    linux_build.write_bytes(Path(sys.executable).resolve().read_bytes()[:4096])
    config = tmp_path / "farm.yaml"
    config.write_text(
        f"models: [{model}]\nbinaries:\n  arm64-v8a: {linux_build}\n"
        # nothing listens here: reaching discovery would be a NoDeviceError, not exit 2
        "adb_servers: ['127.0.0.1:1']\n"
        f"output: {tmp_path / 'out'}\n"
    )
    with pytest.raises(BinaryError, match="benchmark_model") as info:
        run(config=load_config(config), progress=False)
    assert info.value.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_a_tool_flag_the_binary_did_not_know_is_named() -> None:
    from farm.bench.cell import ignored_flags_reason

    warnings = ["Unconsumed cmdline flags: --use_cachin=true --allow_fp16"]
    flags = {"use_cachin": "true", "enable_op_profiling": "true", "allow_fp16": "true"}
    assert ignored_flags_reason(warnings, flags) == (
        "this benchmark_model does not know --use_cachin, --allow_fp16: ignored"
    )
    assert ignored_flags_reason(["Duplicate flags: num_threads"], flags) is None
