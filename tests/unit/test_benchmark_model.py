"""The benchmark_model stand-in: flags, output format, engines, delegates, failures, signals.

Runs go through a real child process (`python -m farm.sim.benchmark_model`) in a phone state
folder made here (profile.json, engine, faults.json, running/), as a virtual phone runs it.
Timed runs are kept short; no assertion depends on a timing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm.bench.parse import BenchmarkResult, parse_text
from farm.profiles import Accelerator, Failure, Gpu, Nnapi, Profile, get_profile
from farm.sim import benchmark_model as bm
from farm.sim.delegates_sim import partitions

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"
INT8 = MODELS / "mobilenet_v1_0.25_128_int8.tflite"
TINY = MODELS / "tiny_cnn_cumsum_float.tflite"
SHORT = ["--num_runs=3", "--min_secs=0", "--warmup_runs=1", "--warmup_min_secs=0"]
MOBILE_OPS = [
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "RELU", "RELU6", "RESHAPE",
    "SOFTMAX", "SUB",
]  # fmt: skip

# Regexes from the format reference (benchmark_model_format.md §2).
RE_RUNNING = re.compile(
    r"^INFO: Running benchmark for at least (\d+) iterations and at least ([\d.e+-]+) seconds"
    r" but terminate if exceeding ([\d.e+-]+) seconds\.$",
    re.M,
)
RE_COUNT = re.compile(
    r"^INFO: count=(\d+)(?: first=(\d+))? curr=(\d+)(?:\(all same\))?"
    r"(?: min=(\d+) max=(\d+) avg=([\d.e+]+) std=(\d+))? p5=(\d+) median=(\d+) p95=(\d+)\n\n",
    re.M,
)
RE_SUMMARY = re.compile(
    r"^INFO: Inference timings in us: Init: (\d+), First inference: (\d+), "
    r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)$",
    re.M,
)
RE_SIZE = re.compile(r"^INFO: The input model file size \(MB\): ([\d.e+-]+)$", re.M)
RE_INIT = re.compile(r"^INFO: Initialized session in ([\d.e+]+)ms\.$", re.M)
RE_MEMORY = re.compile(
    r"^INFO: Memory footprint delta from the start of the tool \(MB\): "
    r"init=([\d.e+-]+) overall=([\d.e+-]+)$",
    re.M,
)


def _profile(**delegates: object) -> Profile:
    """pixel_7's identity with the delegates a test needs."""
    base = get_profile("pixel_7")
    sim = base.sim.model_copy(update={"delegates": base.sim.delegates.model_copy(update=delegates)})
    return base.model_copy(update={"sim": sim})


def _gpu(ops: list[str] = MOBILE_OPS, **kw: object) -> Gpu:
    return Gpu(ops=ops, speedup=3.0, init_ms=5, **kw)


def _phone(tmp_path: Path, profile: Profile, engine: str, faults: str = "{}") -> Path:
    state = tmp_path / "state"
    (state / "running").mkdir(parents=True)
    (state / "profile.json").write_text(profile.model_dump_json())
    (state / "engine").write_text(engine)
    (state / "faults.json").write_text(faults)
    return state


def run_tool(
    tmp_path: Path,
    args: list[str],
    *,
    profile: Profile | None = None,
    engine: str = "litert",
    faults: str = "{}",
) -> subprocess.CompletedProcess[str]:
    """The stand-in as a phone runs it, stdout and stderr in one stream (`2>&1`)."""
    state = _phone(tmp_path, profile or get_profile("pixel_7"), engine, faults)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_SIM_")}
    env.update(FARM_SIM_STATE=str(state), FARM_SIM_SERIAL="emulator-5554")
    proc = subprocess.run(
        [sys.executable, "-m", "farm.sim.benchmark_model", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=120,
    )
    assert not list((state / "running").iterdir()), "running marker left behind"
    return proc


def _parsed(text: str) -> BenchmarkResult:
    """The parser's reading of the output: one run."""
    results = parse_text(text)
    assert len(results) == 1, text
    return results[0]


# --------------------------------------------------------------------------- pure logic


def test_flags_parse_like_the_official_tool() -> None:
    p = bm.parse_flags(
        ["--graph=m.tflite", "--num_threads=4", "--use_gpu=1", "--min_secs=0.25", "--use_fp16"]
    )
    assert p["graph"] == "m.tflite" and p["num_threads"] == 4 and p["use_gpu"] is True
    assert p["min_secs"] == 0.25 and p["num_runs"] == 50
    assert p.has("num_threads") and p.has("num_threads_cpu") and not p.has("num_runs")
    assert p.unconsumed == ["--use_fp16"]
    assert p.set["use_gpu"] == 3
    p = bm.parse_flags(["--allow_fp16", "--no_such_flag=1", "graph.tflite", "--use_nnapi=false"])
    assert p.unconsumed == ["--allow_fp16", "--no_such_flag=1", "graph.tflite"]
    assert p["use_nnapi"] is False and p.has("use_nnapi")
    for bad in ["--num_threads=four", "--use_gpu=yes", "--min_secs=fast", "--num_runs=1.5"]:
        with pytest.raises(bm.FlagError, match="Failed to parse flag"):
            bm.parse_flags([bad])


def test_issue_flags_are_all_accepted() -> None:
    names = (
        "graph num_threads warmup_runs warmup_min_secs num_runs min_secs max_secs run_delay "
        "use_gpu gpu_precision_loss_allowed gpu_backend use_nnapi nnapi_accelerator_name "
        "nnapi_allow_fp16 use_xnnpack use_hexagon external_delegate_path "
        "external_delegate_options enable_op_profiling report_peak_memory_footprint verbose"
    ).split()
    assert set(names) <= set(bm.FLAGS)


def test_stat_line_matches_tsl_stats_calculator() -> None:
    s = bm.Stat()
    assert s.line() == "count=0 p5=0 median=0 p95=0"
    s.add(905463)
    assert s.line() == "count=1 curr=905463 p5=905463 median=905463 p95=905463"
    s.add(905463)
    assert s.line() == "count=2 curr=905463(all same) p5=905463 median=905463 p95=905463"
    s = bm.Stat()
    for v in [106436, 106065, 105929, 106000, 105948]:
        s.add(v)
    assert s.line() == (
        "count=5 first=106436 curr=105948 min=105929 max=106436 avg=106076 std=186 "
        "p5=105929 median=106000 p95=106436"
    )
    assert bm._g(2950340.0) == "2.95034e+06" and bm._g(1.0) == "1" and bm._g(0.5) == "0.5"


def test_partitions_are_runs_of_accepted_nodes() -> None:
    assert partitions([True, True, False, True, True, True, True]) == [[0, 1], [3, 4, 5, 6]]
    assert partitions([False, False]) == []
    assert partitions([True, False, True, False, True, True], max_partitions=1) == [[4, 5]]
    assert partitions([True, False, True], max_partitions=1) == [[0]]


def test_interpreter_uses_the_requested_thread_count() -> None:
    """LiteRT's thread pool grows with --num_threads: the count really reaches the runtime."""

    def threads_after_invoke(n: int) -> int:
        interpreter = bm.make_interpreter(str(FLOAT), n, xnnpack=True)
        interpreter.invoke()
        count = len(os.listdir("/proc/self/task"))
        del interpreter
        return count

    before = len(os.listdir("/proc/self/task"))
    assert threads_after_invoke(4) >= before + 3
    assert threads_after_invoke(1) < threads_after_invoke(4)


# --------------------------------------------------------------------------- output format


def test_cpu_run_prints_the_official_format(tmp_path: Path) -> None:
    proc = run_tool(tmp_path, [f"--graph={FLOAT}", "--num_threads=2", *SHORT])
    out = proc.stdout
    assert proc.returncode == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("INFO: farm virtual device emulator-5554 (pixel_7)")
    assert "engine litert" in lines[0] and "simulated" in lines[0]
    assert lines[1] == "INFO: STARTING!"
    assert "INFO: Log parameter values verbosely: [0]" in lines
    assert "INFO: Num threads: [2]" in lines
    assert "INFO: #threads used for CPU inference: [2]" in lines
    assert f"INFO: Graph: [{FLOAT}]" in lines and "INFO: Signature to run: []" in lines
    assert "INFO: Min num runs: [3]" in lines and "INFO: Max runs duration" not in out
    assert f"INFO: Loaded model {FLOAT}" in lines
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in lines
    assert (
        "VERBOSE: Replacing 31 out of 31 node(s) with delegate (TfLiteXNNPackDelegate) node, "
        "yielding 1 partitions for subgraph 0." in lines
    )
    assert float(RE_SIZE.search(out).group(1)) == pytest.approx(FLOAT.stat().st_size / 1e6, 1e-5)
    assert RE_INIT.search(out)
    phases = RE_RUNNING.findall(out)
    assert phases == [("1", "0", "150"), ("3", "0", "150")]
    counts = RE_COUNT.findall(out)
    assert len(counts) == 2 and int(counts[0][0]) >= 1 and int(counts[1][0]) >= 3
    summary = RE_SUMMARY.search(out)
    assert summary and RE_MEMORY.search(out)
    assert out.index("Inference timings in us") > out.rindex("count=")
    parsed = _parsed(out)
    assert parsed.status == "ok" and parsed.threads == 2
    assert parsed.inference.count == int(counts[1][0])
    assert parsed.init_us == int(summary.group(1))
    assert parsed.first_inference_us == int(summary.group(2))
    assert parsed.inference_avg_us == pytest.approx(float(summary.group(4)))
    assert parsed.model_size_mb == pytest.approx(FLOAT.stat().st_size / 1e6, 1e-5)


@pytest.mark.parametrize("threads", [1, 4])
def test_thread_count_is_echoed_and_parsed(tmp_path: Path, threads: int) -> None:
    proc = run_tool(tmp_path, [f"--graph={INT8}", f"--num_threads={threads}", *SHORT])
    assert proc.returncode == 0, proc.stdout
    assert f"INFO: Num threads: [{threads}]" in proc.stdout.splitlines()
    parsed = _parsed(proc.stdout)
    assert parsed.threads == threads and parsed.inference.count >= 3


def test_unconsumed_and_xnnpack_flags(tmp_path: Path) -> None:
    proc = run_tool(tmp_path, [f"--graph={TINY}", "--allow_fp16", "--use_xnnpack=false", *SHORT])
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[2] == "WARN: Unconsumed cmdline flags: --allow_fp16"
    assert "INFO: Use xnnpack: [0]" in lines
    assert "XNNPACK" not in proc.stdout.replace("Use xnnpack", "")
    proc = run_tool(tmp_path / "b", [f"--graph={TINY}", "--use_xnnpack=true", *SHORT])
    assert "INFO: XNNPACK delegate created." in proc.stdout
    assert (
        "Explicitly applied XNNPACK delegate, and the model graph will be partially executed "
        "by the delegate w/ 2 delegate kernels." in proc.stdout
    )


def test_op_profiling_tables(tmp_path: Path) -> None:
    proc = run_tool(
        tmp_path, [f"--graph={TINY}", "--use_xnnpack=false", "--enable_op_profiling=true", *SHORT]
    )
    out = proc.stdout
    assert proc.returncode == 0, out
    assert "INFO: Profiling Info for Benchmark Initialization:" in out
    regular = out.split("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:\n")[1]
    assert regular.startswith(
        "============================== Run Order =============================="
    )
    header = (
        "\t                             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]"
        "\t  [mem KB]\t[times called]\t[Name]"
    )
    assert header in regular
    rows = re.findall(r"^\t\s*(\w+)\t\s*[\d.]+\t\s*[\d.]+\t\s*[\d.]+%\t\s*[\d.]+%\t", regular, re.M)
    assert rows[:7] == ["CONV_2D", "MAX_POOL_2D", "CUMSUM", "CONV_2D", "MEAN"] + [
        "FULLY_CONNECTED",
        "SOFTMAX",
    ]
    assert "Number of nodes executed: 7" in regular and "7 nodes observed" in regular
    timed = RE_COUNT.findall(out)[1]
    assert re.search(rf"^Timings \(microseconds\): count={timed[0]}\b", regular, re.M)
    parsed = _parsed(out)
    assert parsed.profile_regular is not None
    assert [r.node_type for r in parsed.profile_regular.run_order][:3] == [
        "CONV_2D",
        "MAX_POOL_2D",
        "CUMSUM",
    ]


def test_peak_memory_lines(tmp_path: Path) -> None:
    proc = run_tool(tmp_path, [f"--graph={TINY}", "--report_peak_memory_footprint=true", *SHORT])
    assert re.search(
        r"^INFO: Overall peak memory footprint \(MB\) via periodic monitoring: [\d.]+$",
        proc.stdout,
        re.M,
    )
    assert "INFO: Memory status at the end of exeution:" in proc.stdout
    assert re.search(r"^INFO: - VmRSS              : \d+ MB$", proc.stdout, re.M)


# --------------------------------------------------------------------------- delegates


def test_gpu_partial_delegation_of_an_op_outside_the_gpu_set(tmp_path: Path) -> None:
    proc = run_tool(
        tmp_path, [f"--graph={TINY}", "--use_gpu=true", *SHORT], profile=_profile(gpu=_gpu())
    )
    out = proc.stdout
    assert proc.returncode == 0, out
    assert "INFO: Use gpu: [1]" in out and "INFO: GPU delegate created." in out
    assert (
        "ERROR: Following operations are not supported by GPU delegate:\n"
        "CUMSUM: Operation is not supported.\n"
        "6 operations will run on the GPU, and the remaining 1 operations will run on the CPU."
        in out
    )
    assert (
        "VERBOSE: Replacing 6 out of 7 node(s) with delegate (TfLiteGpuDelegateV2) node, "
        "yielding 2 partitions for subgraph 0." in out
    )
    assert (
        "INFO: Explicitly applied GPU delegate, and the model graph will be partially executed "
        "by the delegate w/ 2 delegate kernels." in out
    )
    assert "TfLiteXNNPackDelegate" not in out  # explicit delegates drop the default one
    assert RE_SUMMARY.search(out)
    parsed = _parsed(out)
    assert parsed.delegation.get("GPU").partitions == 2
    assert parsed.delegation.coverage == "partial"


def test_gpu_full_delegation_and_max_partitions(tmp_path: Path) -> None:
    profile = _profile(gpu=_gpu())
    proc = run_tool(tmp_path, [f"--graph={FLOAT}", "--use_gpu=true", *SHORT], profile=profile)
    assert (
        "INFO: Explicitly applied GPU delegate, and the model graph will be completely "
        "executed by the delegate." in proc.stdout
    )
    assert "INFO: Created 1 GPU delegate kernels." in proc.stdout
    proc = run_tool(
        tmp_path / "b",
        [f"--graph={TINY}", "--use_gpu=true", "--max_delegated_partitions=1", *SHORT],
        profile=profile,
        engine="model",
    )
    assert "Replacing 4 out of 7 node(s)" in proc.stdout and "w/ 1 delegate kernels" in proc.stdout


def test_missing_gpu_fails_to_initialise_as_on_android(tmp_path: Path) -> None:
    """No OpenCL and OpenGL ES below 3.1: on Android the GPU delegate is still created, tries
    OpenCL, falls back to OpenGL and fails to initialise; the run fails, it never runs on CPU."""
    no_gpu = _profile(gpu=None)
    proc = run_tool(tmp_path, [f"--graph={INT8}", "--use_gpu=true", *SHORT], profile=no_gpu)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "GPU acceleration is unsupported" not in out  # what a non-Android build prints
    assert (
        "INFO: Created TensorFlow Lite delegate for GPU.\nINFO: GPU delegate created.\n"
        'INFO: Failed to load OpenCL library with dlopen: dlopen failed: library "libOpenCL-car.so"'
        " not found. Trying ICD loader.\n"
        "ERROR: Can not open OpenCL library on this device - undefined symbol: clSetPerfHintQCOM\n"
        "ERROR: Falling back to OpenGL\n"
        "ERROR: TfLiteGpuDelegate Init: OpenGL ES 3.1 or above is required to use OpenGL "
        "inference.\nINFO: Created 0 GPU delegate kernels.\n"
        "ERROR: TfLiteGpuDelegate Prepare: delegate is not initialized\n"
        "ERROR: Node number 31 (TfLiteGpuDelegateV2) failed to prepare.\n"
        "ERROR: Restored original execution plan after delegate application failure.\n"
        "ERROR: Failed to apply GPU delegate.\nERROR: Benchmarking failed.\n"
    ) in out
    assert "Inference timings" not in out
    parsed = _parsed(out)
    if parsed is not None:
        assert parsed.status == "failed" and parsed.failure_kind == "delegate_failed"
        assert parsed.errors[0].startswith("Can not open OpenCL library on this device")
        (gpu,) = parsed.delegation.delegates
        assert (gpu.name, gpu.failed, gpu.coverage) == ("GPU", True, "none")
    # A forced backend fails on its own, without falling back.
    forced = {
        backend: run_tool(
            tmp_path / backend,
            [f"--graph={INT8}", "--use_gpu=true", f"--gpu_backend={backend}", *SHORT],
            profile=no_gpu,
        ).stdout
        for backend in ("cl", "gl")
    }
    assert "Falling back to OpenGL" not in forced["cl"]
    assert (
        "ERROR: TfLiteGpuDelegate Init: Can not open OpenCL library on this device" in forced["cl"]
    )
    assert "OpenCL" not in forced["gl"].split("Initialized TensorFlow")[1]
    assert "ERROR: TfLiteGpuDelegate Init: OpenGL ES 3.1 or above is required" in forced["gl"]
    assert all(out.endswith("ERROR: Benchmarking failed.\n") for out in forced.values())


def test_emulator_profile_gpu_fails_with_the_tools_words(tmp_path: Path) -> None:
    proc = run_tool(
        tmp_path,
        [f"--graph={FLOAT}", "--use_gpu=true", *SHORT],
        profile=get_profile("emulator_x86_64"),
        engine="model",
    )
    assert proc.returncode == 1, proc.stdout
    assert "ERROR: Failed to apply GPU delegate." in proc.stdout


def test_missing_nnapi_takes_nothing_as_on_android(tmp_path: Path) -> None:
    """No NNAPI runtime: the delegate is created and takes no node, named accelerator or not."""
    for index, extra in enumerate([[], ["--nnapi_accelerator_name=qti-dsp"]]):
        proc = run_tool(
            tmp_path / str(index),
            [f"--graph={INT8}", "--use_nnapi=true", *extra, *SHORT],
            profile=_profile(nnapi=None),
            engine="model",
        )
        out = proc.stdout
        assert proc.returncode == 0, out
        assert "NNAPI acceleration is unsupported" not in out  # what a non-Android build prints
        assert "INFO: Created TensorFlow Lite delegate for NNAPI.\n" in out
        assert (
            "INFO: Though NNAPI delegate is explicitly applied, the model graph will not be "
            "executed by the delegate.\n" in out
        )
        parsed = _parsed(out)
        if parsed is not None:
            assert parsed.status == "ok"
            (nnapi,) = parsed.delegation.delegates
            assert (nnapi.name, nnapi.failed, nnapi.coverage) == ("NNAPI", False, "none")


def _nnapi(*accelerators: Accelerator) -> Nnapi:
    return Nnapi(accelerators=list(accelerators))


def test_nnapi_rejects_a_quantized_model_with_bad_data(tmp_path: Path) -> None:
    bad = "NN API returned error ANEURALNETWORKS_BAD_DATA at line 1250 while adding operation."
    acc = Accelerator(
        name="vendor-npu",
        ops=MOBILE_OPS,
        failures=[Failure(when="quantized", kind="prepare_error", message=bad)],
    )
    profile = _profile(nnapi=_nnapi(acc, Accelerator(name="nnapi-reference", ops=MOBILE_OPS)))
    proc = run_tool(tmp_path, [f"--graph={INT8}", "--use_nnapi=true", *SHORT], profile=profile)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "INFO: NNAPI accelerators available: [vendor-npu,nnapi-reference]" in out
    assert f"ERROR: {bad}\n\nERROR: Node number 31 (TfLiteNnapiDelegate) failed to prepare." in out
    assert out.rstrip().endswith(
        "ERROR: Restored original execution plan after delegate application failure.\n"
        "ERROR: Failed to apply NNAPI delegate.\nERROR: Benchmarking failed."
    )
    assert "Inference timings" not in out
    parsed = _parsed(out)
    assert parsed.status == "failed" and parsed.failure_kind == "delegate_failed"
    # The float model passes on the same accelerator; a named one is used as asked.
    proc = run_tool(
        tmp_path / "b",
        [
            f"--graph={FLOAT}",
            "--use_nnapi=true",
            "--nnapi_accelerator_name=nnapi-reference",
            *SHORT,
        ],
        profile=profile,
    )
    assert proc.returncode == 0, proc.stdout
    assert "INFO: NNAPI accelerator name: [nnapi-reference]" in proc.stdout
    assert "completely executed by the delegate" in proc.stdout


def test_unknown_nnapi_accelerator(tmp_path: Path) -> None:
    profile = _profile(nnapi=_nnapi(Accelerator(name="nnapi-reference", ops=MOBILE_OPS)))
    proc = run_tool(
        tmp_path,
        [f"--graph={FLOAT}", "--use_nnapi=true", "--nnapi_accelerator_name=qti-dsp", *SHORT],
        profile=profile,
    )
    assert proc.returncode == 1
    assert (
        "ERROR: Could not find the specified NNAPI accelerator: qti-dsp. "
        "Must be one of: {nnapi-reference}." in proc.stdout
    )
    assert "ERROR: Failed to apply NNAPI delegate." in proc.stdout
    parsed = _parsed(proc.stdout)
    if parsed is not None:
        assert parsed.status == "failed" and parsed.failure_kind == "delegate_failed"
        assert parsed.errors[0].startswith("Could not find the specified NNAPI accelerator")


def test_gpu_init_error_fails_the_run(tmp_path: Path) -> None:
    gpu = _gpu(failures=[Failure(when="float", kind="init_error", message="Out of memory")])
    proc = run_tool(
        tmp_path,
        [f"--graph={TINY}", "--use_gpu=true", *SHORT],
        profile=_profile(gpu=gpu),
        engine="model",
    )
    assert proc.returncode == 1
    assert "ERROR: TfLiteGpuDelegate Init: Out of memory" in proc.stdout
    assert "ERROR: Node number 7 (TfLiteGpuDelegateV2) failed to prepare." in proc.stdout
    assert proc.stdout.rstrip().endswith(
        "ERROR: Failed to apply GPU delegate.\nERROR: Benchmarking failed."
    )


def test_hexagon_takes_quantized_only(tmp_path: Path) -> None:
    hexagon = Accelerator(name="hexagon", ops=MOBILE_OPS, takes_float=False, speedup=6.0)
    profile = _profile(hexagon=hexagon)
    proc = run_tool(
        tmp_path, [f"--graph={INT8}", "--use_hexagon=true", *SHORT], profile=profile, engine="model"
    )
    assert (
        "INFO: TfLiteHexagonDelegate delegate: 31 nodes delegated out of 31 nodes with 1 "
        "partitions.\n\n" in proc.stdout
    )
    assert (
        "Explicitly applied Hexagon delegate, and the model graph will be completely" in proc.stdout
    )
    proc = run_tool(
        tmp_path / "b",
        [f"--graph={FLOAT}", "--use_hexagon=true", *SHORT],
        profile=profile,
        engine="model",
    )
    assert (
        "Though Hexagon delegate is explicitly applied, the model graph will not be executed"
        in proc.stdout
    )
    proc = run_tool(
        tmp_path / "c",
        [f"--graph={INT8}", "--use_hexagon=true", *SHORT],
        profile=_profile(hexagon=None),
        engine="model",
    )
    # No Hexagon libraries: the delegate is not created and the run goes on on the CPU.
    assert proc.returncode == 0, proc.stdout
    assert (
        "ERROR: Failed to load libhexagon_interface.so, Error: dlopen failed: library "
        '"libhexagon_interface.so" not found\nINFO: Hexagon Delegate is not supported.\n\n'
        "WARN: Could not create Hexagon delegate: platform may not support delegate or required "
        "libraries are missing\n"
    ) in proc.stdout
    parsed = _parsed(proc.stdout)
    if parsed is not None:
        assert parsed.status == "ok"
        assert "Hexagon" not in parsed.delegation.to_dict()["delegates"]  # not applied
        assert any("Could not create Hexagon delegate" in w for w in parsed.warnings)
        verdict, why = parsed.verdict("Hexagon")
        assert verdict == "not_applied" and why is not None and "Hexagon" in why


# ------------------------------------------------------------------- crashes, faults, signals


def test_delegate_crash_on_a_model_dies_by_its_signal(tmp_path: Path) -> None:
    gpu = _gpu(
        failures=[
            Failure(
                when="model_glob", model_glob="mobilenet_*_float.tflite", kind="crash", signal=11
            )
        ]
    )
    proc = run_tool(
        tmp_path, [f"--graph={FLOAT}", "--use_gpu=true", *SHORT], profile=_profile(gpu=gpu)
    )
    assert proc.returncode == -signal.SIGSEGV, proc.stdout
    assert "Initialized session in" in proc.stdout and "count=" not in proc.stdout
    parsed = _parsed(proc.stdout)
    assert parsed.status == "failed" and parsed.failure_kind == "crashed"
    proc = run_tool(
        tmp_path / "b", [f"--graph={INT8}", "--use_gpu=true", *SHORT], profile=_profile(gpu=gpu)
    )
    assert proc.returncode == 0


def test_benchmark_crash_fault(tmp_path: Path) -> None:
    proc = run_tool(
        tmp_path,
        [f"--graph={TINY}", *SHORT],
        engine="model",
        faults='{"benchmark_crash": {"signal": 6}}',
    )
    assert proc.returncode == -signal.SIGABRT
    assert "INFO: Running benchmark for at least 1 iterations" in proc.stdout
    assert "Inference timings" not in proc.stdout


def test_sigterm_stops_the_run_and_removes_the_marker(tmp_path: Path) -> None:
    state = _phone(tmp_path, get_profile("pixel_7"), "model")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_SIM_")}
    env.update(FARM_SIM_STATE=str(state))
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.sim.benchmark_model", f"--graph={TINY}", "--min_secs=60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    marker = state / "running" / str(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == -signal.SIGTERM
        assert not marker.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- engines and bad input


def test_model_engine_simulates_without_inference(tmp_path: Path) -> None:
    proc = run_tool(
        tmp_path, [f"--graph={FLOAT}", "--num_threads=4", "--min_secs=0.2"], engine="model"
    )
    out = proc.stdout
    assert proc.returncode == 0, out
    assert "engine model" in out.splitlines()[0] and "simulated" in out.splitlines()[0]
    counts = RE_COUNT.findall(out)
    assert len(counts) == 2 and int(counts[1][0]) >= 50
    assert counts[1][1] and counts[1][5]  # first= and avg= present: values vary
    parsed = _parsed(out)
    assert parsed.status == "ok" and parsed.inference.count == int(counts[1][0])


def test_bad_input(tmp_path: Path) -> None:
    proc = run_tool(tmp_path / "a", [*SHORT])
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[2:] == [
        "ERROR: Please specify the name of your TF Lite input file with --graph",
        "ERROR: Benchmarking failed.",
    ]
    proc = run_tool(tmp_path / "b", [f"--graph={tmp_path}/none.tflite", *SHORT])
    assert proc.returncode == 1
    assert f"ERROR: Could not open '{tmp_path}/none.tflite'." in proc.stdout
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x10\x00\x00\x00TFL3" + os.urandom(4000))
    proc = run_tool(tmp_path / "c", [f"--graph={garbage}", *SHORT], engine="model")
    assert proc.returncode == 1
    assert f"ERROR: Failed to load model {garbage}" in proc.stdout
    proc = run_tool(tmp_path / "d", [f"--graph={TINY}", "--num_runs=many"])
    assert proc.returncode == 1
    assert "ERROR: Failed to parse flag 'num_runs' against argv '--num_runs=many'" in proc.stdout
    assert "ERROR: usage: benchmark_model <flags>" in proc.stdout


def test_phase_rules_on_the_simulated_clock(tmp_path: Path) -> None:
    """§5: runs continue while (runs < N or elapsed < min_secs) and elapsed <= max_secs."""
    args = [f"--graph={TINY}", "--warmup_runs=1", "--warmup_min_secs=0"]
    capped = run_tool(
        tmp_path / "a",
        [*args, "--num_runs=1000000", "--min_secs=0", "--max_secs=0.05"],
        engine="model",
    )
    delayed = run_tool(
        tmp_path / "b",
        [*args, "--num_runs=1", "--min_secs=0.1", "--run_delay=0.04"],
        engine="model",
    )
    dry = run_tool(tmp_path / "c", [*args, "--dry_run=true"], engine="model")
    capped_count = int(RE_COUNT.findall(capped.stdout)[1][0])
    assert 1 <= capped_count < 1000000
    assert "INFO: Max runs duration (seconds): [0.05]" in capped.stdout
    assert int(RE_COUNT.findall(delayed.stdout)[1][0]) in (2, 3)
    assert "INFO: Inter-run delay (seconds): [0.04]" in delayed.stdout
    assert dry.stdout.count("INFO: count=0 p5=0 median=0 p95=0\n") == 2
    assert "First inference: 0, Warmup (avg): 0, Inference (avg): 0" in dry.stdout


def test_two_delegates_apply_in_flag_order(tmp_path: Path) -> None:
    nnapi = _nnapi(Accelerator(name="nnapi-reference", ops=["CUMSUM"]))
    profile = _profile(gpu=_gpu(), nnapi=nnapi)
    proc = run_tool(
        tmp_path,
        [f"--graph={TINY}", "--use_nnapi=true", "--use_gpu=true", *SHORT],
        profile=profile,
        engine="model",
    )
    out = proc.stdout
    assert proc.returncode == 0, out
    assert "INFO: GPU delegate created." in out and "INFO: NNAPI delegate created." not in out
    assert "INFO: Going to apply 2 delegates one after another." in out
    nnapi_at = out.index("(TfLiteNnapiDelegate) node")
    assert nnapi_at < out.index("(TfLiteGpuDelegateV2) node")  # --use_nnapi came first
    assert "Replacing 1 out of 7 node(s) with delegate (TfLiteNnapiDelegate)" in out
    assert "Replacing 6 out of 7 node(s) with delegate (TfLiteGpuDelegateV2)" in out
    assert "NNAPI delegate, and the model graph will be partially executed" in out
    proc = run_tool(
        tmp_path / "b",
        [f"--graph={TINY}", "--use_gpu=true", "--use_nnapi=true", *SHORT],
        profile=profile,
        engine="model",
    )
    assert "Replacing 1 out of 3 node(s) with delegate (TfLiteNnapiDelegate)" in proc.stdout


def test_signatures(tmp_path: Path) -> None:
    listed = run_tool(tmp_path / "a", [f"--graph={TINY}", "--list_signatures=true"], engine="model")
    assert listed.returncode == 1
    assert (
        "INFO: The Model contains 1 signature key(s).\nINFO: They are listed below: \n"
        "INFO: -> Signature Key: serving_default\n" in listed.stdout
    )
    wrong = run_tool(
        tmp_path / "b", [f"--graph={TINY}", "--signature_to_run_for=train", *SHORT], engine="model"
    )
    assert wrong.returncode == 1
    assert "ERROR:  #> Signature key: serving_default" in wrong.stdout
    right = run_tool(
        tmp_path / "c",
        [f"--graph={TINY}", "--signature_to_run_for=serving_default", *SHORT],
        engine="model",
    )
    assert right.returncode == 0 and "INFO: Signature to run: [serving_default]" in right.stdout


def test_crash_on_an_op_fires_for_a_model_named_by_its_hash(tmp_path: Path) -> None:
    gpu = _gpu(
        ops=[*MOBILE_OPS, "RELU"],
        failures=[Failure(when="has_op", op="CUMSUM", kind="crash", signal=11)],
    )
    # Models reach a phone under their content hash: the file name says nothing.
    hashed = tmp_path / "3f1c0ffee.tflite"
    hashed.write_bytes(TINY.read_bytes())
    proc = run_tool(
        tmp_path / "a", [f"--graph={hashed}", "--use_gpu=true", *SHORT], profile=_profile(gpu=gpu)
    )
    assert proc.returncode == -signal.SIGSEGV, proc.stdout
    assert "partially executed by the delegate" in proc.stdout and "count=" not in proc.stdout
    proc = run_tool(
        tmp_path / "b", [f"--graph={FLOAT}", "--use_gpu=true", *SHORT], profile=_profile(gpu=gpu)
    )
    assert proc.returncode == 0 and "count=" in proc.stdout


def _blocked_on(lock: Path) -> bool:
    """True when some process waits for a flock on `lock` (/proc/locks `->` lines)."""
    inode = lock.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[fields.index("->") + 1] == "FLOCK":
            device_inode = fields[fields.index("->") + 5]
            if device_inode.rsplit(":", 1)[-1] == str(inode):
                return True
    return False


@pytest.mark.parametrize(
    ("other_holds", "done_while_waiting"),
    [
        # Another phone times its runs: this one does not even set up meanwhile.
        ("exclusive", "INFO: Graph:"),
        # Another phone sets up: this one sets up too, but times nothing meanwhile.
        ("shared", "INFO: Initialized session in"),
    ],
)
def test_litert_engine_takes_turns_on_the_host_cpu_lock(
    tmp_path: Path, other_holds: str, done_while_waiting: str
) -> None:
    import fcntl

    state = _phone(tmp_path, get_profile("pixel_7"), "litert")
    lock = tmp_path / "cpu.lock"
    lock.touch()
    (state / "cpu_lock").write_text(str(lock))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_SIM_")}
    env.update(FARM_SIM_STATE=str(state), FARM_SIM_SERIAL="emulator-5554")
    log = tmp_path / "out.log"
    mode = fcntl.LOCK_EX if other_holds == "exclusive" else fcntl.LOCK_SH
    with open(lock) as held, open(log, "w") as sink:
        fcntl.flock(held, mode)
        proc = subprocess.Popen(
            [sys.executable, "-m", "farm.sim.benchmark_model", f"--graph={TINY}", *SHORT],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while not _blocked_on(lock) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _blocked_on(lock) and proc.poll() is None, "the tool did not wait for the lock"
            so_far = log.read_text()
            assert done_while_waiting in so_far and "INFO: Running benchmark" not in so_far
            if other_holds == "exclusive":
                assert "Initialized session" not in so_far
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
        proc.wait(timeout=120)
    out = log.read_text()
    assert proc.returncode == 0, out
    lines = out.splitlines()
    held_at = next(i for i, line in enumerate(lines) if "host CPU lock" in line)
    assert lines[held_at].startswith("INFO: farm virtual device: holding the lab's host CPU lock")
    first_phase = next(i for i, line in enumerate(lines) if line.startswith("INFO: Running bench"))
    assert held_at < first_phase
    parsed = _parsed(out)
    assert parsed.status == "ok"


def test_model_engine_and_phones_outside_a_lab_take_no_lock(tmp_path: Path) -> None:
    import fcntl

    lock = tmp_path / "cpu.lock"
    lock.touch()
    state = _phone(tmp_path / "m", get_profile("pixel_7"), "model")
    (state / "cpu_lock").write_text(str(lock))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_SIM_")}
    env.update(FARM_SIM_STATE=str(state), FARM_SIM_TIME_SCALE="0")
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.run(
            [sys.executable, "-m", "farm.sim.benchmark_model", f"--graph={TINY}", *SHORT],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert proc.returncode == 0 and "host CPU lock" not in proc.stdout
    proc = run_tool(tmp_path / "h", [f"--graph={TINY}", *SHORT])  # no cpu_lock file
    assert proc.returncode == 0 and "host CPU lock" not in proc.stdout
