"""Parser: delegation facts counted once, crashes told from failures, exit statuses folded in."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from farm.bench.parse import BenchmarkResult, classify_exit, parse_file, parse_lines, parse_text

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
TINY_CNN = ROOT / "models" / "tiny_cnn_cumsum_float.tflite"
REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\)")


def _stand_in(profile: str, *flags: str) -> tuple[str, int]:
    """The stand-in benchmark_model's output (stdout and stderr together) and shell status."""
    env = {
        **os.environ,
        "FARM_SIM_PROFILE": profile,
        "FARM_SIM_ENGINE": "model",
        "FARM_SIM_TIME_SCALE": "0",
    }
    env.pop("FARM_SIM_STATE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "farm.sim.benchmark_model", f"--graph={TINY_CNN}", *flags,
         "--num_runs=3", "--warmup_runs=1", "--min_secs=0", "--warmup_min_secs=0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    status = 128 - proc.returncode if proc.returncode < 0 else proc.returncode
    return proc.stdout, status


def test_stand_in_partial_gpu_counts_each_node_once() -> None:
    # 7-node model, CUMSUM stays on the CPU: the GPU delegate's own "6 operations will run on
    # the GPU" line and the runtime's "Replacing 6 out of 7" line say the same thing.
    text, status = _stand_in("pixel_7", "--use_gpu=true")
    assert status == 0, text
    assert "operations will run on the GPU" in text and "Replacing 6 out of 7" in text
    (r,) = parse_text(text, exit_status=status)
    assert (r.status, r.errors) == ("ok", [])
    (gpu,) = r.delegation.delegates
    assert (gpu.name, gpu.nodes_delegated, gpu.nodes_total) == ("GPU", 6, 7)
    assert (gpu.partitions, gpu.kernels, gpu.coverage) == (2, 2, "partial")
    assert "CUMSUM: Operation is not supported." in r.warnings


def test_stand_in_gpu_crash_is_crashed_by_its_signal() -> None:
    # galaxy_a54's GPU driver dies on the tiny CNN after printing its unsupported-ops list
    text, status = _stand_in("galaxy_a54", "--use_gpu=true")
    assert status == 128 + signal.SIGSEGV, text
    assert "Following operations are not supported by GPU delegate" in text
    (r,) = parse_text(text)
    assert (r.status, r.failure_kind, r.errors) == ("failed", "crashed", [])
    (r,) = parse_text(text, exit_status=status)
    assert (r.failure_kind, r.signal, r.reason) == ("crashed", "SIGSEGV", "crashed (SIGSEGV)")
    assert r.to_dict()["exit_status"] == 139 and r.to_dict()["signal"] == "SIGSEGV"


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.log")), ids=lambda p: p.name[:3])
def test_corpus_replacing_line_is_the_node_count(path: Path) -> None:
    text = path.read_text("utf-8", "replace")
    wanted: dict[str, list[int]] = {}
    for done, total, kernel in REPLACING.findall(text):
        wanted.setdefault(kernel, [0, 0])
        wanted[kernel][0] += int(done)
        wanted[kernel][1] += int(total)
    results = parse_file(path)
    for r in results:
        for d in r.delegation.delegates:
            if d.nodes_delegated is not None and d.nodes_total is not None:
                assert d.nodes_delegated <= d.nodes_total, (d, path.name)
            if d.kernel in wanted and len(results) == 1:
                assert [d.nodes_delegated, d.nodes_total] == wanted[d.kernel]


def test_corpus_simple_delegate_line_alone_gives_the_counts() -> None:
    (r,) = parse_file(CORPUS / "018_android_hexagon_failed_to_apply_benchmarking_failed.log")
    (hexagon,) = r.delegation.delegates
    assert (hexagon.nodes_delegated, hexagon.nodes_total, hexagon.partitions) == (125, 125, 1)


# A real partial-GPU log shape: the GPU delegate's list, then the runtime's Replacing line, for two
# subgraphs; a simple delegate's summary after its Replacing line.
TWO_SUBGRAPHS = """\
INFO: STARTING!
INFO: Use gpu: [1]
INFO: Created TensorFlow Lite delegate for GPU.
ERROR: Following operations are not supported by GPU delegate:
CUMSUM: Operation is not supported.
6 operations will run on the GPU, and the remaining 1 operations will run on the CPU.
VERBOSE: Replacing 6 out of 7 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 \
partitions for subgraph 0.
ERROR: Following operations are not supported by GPU delegate:
WHILE: Operation is not supported.
3 operations will run on the GPU, and the remaining 2 operations will run on the CPU.
VERBOSE: Replacing 3 out of 5 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 \
partitions for subgraph 1.
INFO: Created 3 GPU delegate kernels.
INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the \
delegate w/ 3 delegate kernels.
INFO: count=2 first=5 curr=5 min=5 max=5 avg=5 std=0
INFO: Inference timings in us: Init: 1, First inference: 5, Warmup (avg): 5, Inference (avg): 5
"""


def test_per_subgraph_lines_add_up_once() -> None:
    (r,) = parse_text(TWO_SUBGRAPHS)
    (gpu,) = r.delegation.delegates
    assert (gpu.nodes_delegated, gpu.nodes_total, gpu.partitions, gpu.kernels) == (9, 12, 3, 3)
    assert (r.status, r.errors, gpu.coverage) == ("ok", [], "partial")
    assert "WHILE: Operation is not supported." in r.warnings


def test_simple_delegate_summary_after_its_replacing_line() -> None:
    lines = [
        "STARTING!",
        "Use Hexagon: [1]",
        "INFO: Replacing 125 out of 130 node(s) with delegate (TfLiteHexagonDelegate) node,"
        " yielding 2 partitions for subgraph 0.",
        "INFO: TfLiteHexagonDelegate delegate: 125 nodes delegated out of 130 nodes with"
        " 2 partitions.",
        "count=2 first=5 curr=5 min=5 max=5 avg=5 std=0",
        "Inference timings in us: Init: 1, First inference: 5, Warmup (avg): 5, Inference (avg): 5",
    ]
    (r,) = parse_lines(lines)
    d = r.delegation.to_dict()
    assert (d["nodes_delegated"], d["nodes_total"], d["partitions"]) == (125, 130, 2)


def test_gpu_ops_line_alone_and_nothing_on_the_gpu() -> None:
    head = ["STARTING!", "Use gpu: [1]", "ERROR: Following operations are not supported by GPU"
            " delegate:", "CUMSUM: Operation is not supported."]  # fmt: skip
    summary = (
        "Inference timings in us: Init: 1, First inference: 5, Warmup (avg): 5, Inference (avg): 5"
    )
    (r,) = parse_lines([*head, "First 6 operations will run on the GPU, and the remaining 1 on"
                        " the CPU.", summary])  # fmt: skip
    assert r.delegation.to_dict()["nodes_delegated"] == 6 and r.status == "ok"
    (r,) = parse_lines([*head, "No operations will run on the GPU, and all 7 operations will run"
                        " on the CPU.", summary])  # fmt: skip
    d = r.delegation.to_dict()
    assert (d["nodes_delegated"], d["nodes_total"], d["coverage"]) == (0, 7, "none")
    assert (r.status, r.errors) == ("ok", [])


LOGCAT_GPU_CRASH = [
    "11-27 10:00:00.000  4821  4821 I tflite  : STARTING!",
    "11-27 10:00:00.000  4821  4821 I tflite  : Use gpu: [1]",
    "11-27 10:00:00.000  4821  4821 I tflite  : Created TensorFlow Lite delegate for GPU.",
    "11-27 10:00:00.001  4821  4821 E tflite  : Following operations are not supported by GPU"
    " delegate:",
    "11-27 10:00:00.001  4821  4821 E tflite  : CUMSUM: Operation is not supported.",
    "11-27 10:00:00.001  4821  4821 E tflite  : CUSTOM TFLite_Detection_PostProcess: Operation"
    " is not supported.",
    "11-27 10:00:00.001  4821  4821 E tflite  : 6 operations will run on the GPU, and the"
    " remaining 2 operations will run on the CPU.",
    "11-27 10:00:00.002  4821  4821 I tflite  : Initialized session in 1102.82ms.",
    "11-27 10:00:00.002  4821  4821 I tflite  : Running benchmark for at least 2 iterations and"
    " at least 0 seconds but terminate if exceeding 20 seconds.",
]


def test_logcat_unsupported_ops_lines_are_not_failures() -> None:
    # each line of the list carries the E/tflite level in logcat; the output then just stops
    (r,) = parse_lines(LOGCAT_GPU_CRASH)
    assert (r.status, r.failure_kind, r.errors) == ("failed", "crashed", [])
    assert len(r.warnings) == 3 and r.delegation.to_dict()["nodes_total"] == 8
    fatal = ("11-27 10:00:00.003  4821  4821 F libc    : Fatal signal 11 (SIGSEGV), code 1"
             " (SEGV_MAPERR) in tid 4821 (benchmark_model)")  # fmt: skip
    (r,) = parse_lines([*LOGCAT_GPU_CRASH, fatal])
    assert (r.failure_kind, r.signal) == ("crashed", "SIGSEGV")
    assert r.reason is not None and r.reason.startswith("crashed (SIGSEGV): Fatal signal 11")


def test_a_real_delegate_error_is_still_a_delegate_failure() -> None:
    lines = [*LOGCAT_GPU_CRASH[:7],
             "11-27 10:00:00.002  4821  4821 E tflite  : TfLiteGpuDelegate Init: no OpenCL",
             "11-27 10:00:00.002  4821  4821 I tflite  : Failed to apply GPU delegate.",
             "11-27 10:00:00.002  4821  4821 E tflite  : Benchmarking failed."]  # fmt: skip
    (r,) = parse_lines(lines)
    assert (r.failure_kind, r.errors[0]) == ("delegate_failed", "TfLiteGpuDelegate Init: no OpenCL")


CUT = "STARTING!\nLoaded model m.tflite\nRunning benchmark for at least 1 iterations\n"
DONE = CUT + (
    "count=2 first=5 curr=5 min=5 max=5 avg=5 std=0\n"
    "Inference timings in us: Init: 1, First inference: 5, Warmup (avg): 5, Inference (avg): 5\n"
)


@pytest.mark.parametrize(
    ("text", "exit_status", "status", "kind", "sig"),
    [
        (DONE, None, "ok", None, None),
        (DONE, 0, "ok", None, None),
        (DONE, 139, "failed", "crashed", "SIGSEGV"),  # died at exit, after the summary
        (DONE, 1, "failed", "invoke_failed", None),
        (CUT, None, "failed", "crashed", None),
        (CUT, 134, "failed", "crashed", "SIGABRT"),
        (CUT, 128 + 9, "failed", "crashed", "SIGKILL"),
        (CUT, 1, "failed", "tool_error", None),  # it exited on its own: not a crash
        (CUT, 255, "failed", "tool_error", None),  # not a signal number
        ("", 139, "failed", "crashed", "SIGSEGV"),  # died before printing anything
        ("", 1, "failed", "tool_error", None),
    ],
)
def test_exit_status(text: str, exit_status: int | None, status: str, kind: str | None,
                     sig: str | None) -> None:  # fmt: skip
    (r,) = parse_text(text, exit_status=exit_status)
    assert (r.status, r.failure_kind, r.signal, r.exit_status) == (status, kind, sig, exit_status)
    if sig:
        assert r.reason == f"crashed ({sig})"


def test_exit_status_goes_to_the_last_invocation_only(tmp_path: Path) -> None:
    log = tmp_path / "two.log"
    log.write_text(DONE + CUT)
    first, last = parse_file(log, exit_status=139)
    assert (first.status, first.exit_status) == ("ok", None)
    assert (last.failure_kind, last.signal) == ("crashed", "SIGSEGV")
    assert parse_text("", exit_status=0) == [] and parse_text("") == []


def test_classify_exit_is_in_place_and_pure() -> None:
    r = BenchmarkResult()
    assert classify_exit(r, None) is r and r.status == "ok" and r.exit_status is None
    assert classify_exit(r, 200).failure_kind == "invoke_failed"  # not a signal number
    r = classify_exit(BenchmarkResult(), 128 + 63)
    assert r.signal is not None and r.failure_kind == "crashed"


_TIMED = (
    "INFO: count=3 first=10 curr=10 min=10 max=10 avg=10 std=0 p5=10 median=10 p95=10",
    "INFO: Inference timings in us: Init: 5, First inference: 10, Warmup (avg): 10, "
    "Inference (avg): 10",
)


@pytest.mark.parametrize(
    "lines, provider, verdict, said",
    [
        (["INFO: Unable to load external delegate from : /data/local/tmp/libQnn.so"],
         "EXTERNAL", "not_applied", "Unable to load external delegate from"),
        (["ERROR: Failed to load libhexagon_interface.so, Error: dlopen failed",
          "INFO: Hexagon Delegate is not supported.",
          "WARN: Could not create Hexagon delegate: platform may not support delegate or "
          "required libraries are missing"], "Hexagon", "not_applied", "Hexagon Delegate"),
        (["WARN: GPU acceleration is unsupported on this platform."], "GPU", "not_applied",
         "GPU acceleration is unsupported"),
        (["nnapi error: unable to open library libneuralnetworks.so"], "NNAPI", "not_applied",
         "nnapi error"),
        (["INFO: NNAPI delegate created.",
          "INFO: Though NNAPI delegate is explicitly applied, the model graph will not be "
          "executed by the delegate."], "NNAPI", "none", "took no node"),
        (["INFO: GPU delegate created.",
          "VERBOSE: Replacing 6 out of 7 node(s) with delegate (TfLiteGpuDelegateV2) node, "
          "yielding 2 partitions for subgraph 0.",
          "INFO: Explicitly applied GPU delegate, and the model graph will be partially "
          "executed by the delegate w/ 2 delegate kernels."], "GPU", "partial", None),
        (["INFO: GPU delegate created."], "EXTERNAL", None, None),  # the log does not say
    ],
)  # fmt: skip
def test_verdict_of_a_requested_delegate(
    lines: list[str], provider: str, verdict: str | None, said: str | None
) -> None:
    (result,) = parse_lines(["INFO: STARTING!", *lines, *_TIMED])
    assert result.status == "ok"
    got, why = result.verdict(provider)
    assert got == verdict
    assert (why is None) if said is None else (said in (why or ""))
    if verdict == "not_applied":  # a delegate that was never created is not one that ran
        assert provider not in result.delegation.to_dict()["delegates"]
