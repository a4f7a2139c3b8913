"""The parser against 26 real benchmark_model logs and the values index.tsv lists for them."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from farm.bench.parse import BenchmarkResult, parse_file, parse_text

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
INDEX = list(csv.DictReader((CORPUS / "index.tsv").open(encoding="utf-8"), delimiter="\t"))
BY_PREFIX = {row["file"][:3]: row for row in INDEX}

# index.tsv column → BenchmarkResult.to_dict() key
COLUMNS = {
    "expected_init_us": "init_us",
    "expected_first_us": "first_inference_us",
    "expected_warmup_avg_us": "warmup_avg_us",
    "expected_inference_avg_us": "inference_avg_us",
    "expected_inference_std_us": "inference_std_us",
    "expected_count": "inference_count",
    "expected_mem_init_mb": "memory_init_mb",
    "expected_mem_overall_mb": "memory_overall_mb",
}

FAILURES = {"018": "delegate_failed", "027": "delegate_failed", "035": "delegate_failed"}

# The thread count of 029 comes from the page the log was taken from, not from the log.
THREADS_NOT_IN_LOG = {"029"}

# (delegates, coverage, kernels) read from each log's delegate lines
DELEGATION = {
    "001": (["XNNPACK"], None, None),
    "002": (["GPU"], "full", 1),
    "004": ([], None, None),
    "005": (["EXTERNAL"], "full", 1),
    "006": (["EXTERNAL"], "partial", 1),
    "008": (["NNAPI"], "full", 1),
    "009": (["EXTERNAL"], "full", 1),
    "010": ([], None, None),
    "012": (["XNNPACK"], "partial", None),
    "014": (["XNNPACK"], "partial", None),
    "015": ([], None, None),
    "017": ([], None, None),
    "018": (["Hexagon"], "none", None),
    "019": ([], None, None),
    "020": (["XNNPACK"], "partial", 1),
    "022": (["XNNPACK"], "partial", 1),
    "023": (["XNNPACK"], "partial", 22),
    "025": (["GPU", "NNAPI"], "full", 1),
    "027": (["NNAPI"], "none", None),
    "029": ([], None, None),
    "030": (["XNNPACK"], "full", None),
    "032": (["XNNPACK"], None, None),
    "034": (["XNNPACK"], None, None),
    "035": (["GPU"], None, None),
    "037": ([], None, None),
    "039": ([], None, None),
}

FORMATS = {"015": "tf1_contrib", "017": "tf1", "030": "litert_compiled_model"}


def _expected_threads(text: str) -> int | None:
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else None


def _parse(name: str) -> list[BenchmarkResult]:
    return parse_file(CORPUS / name)


def test_index_covers_every_log() -> None:
    logs = sorted(p.name for p in CORPUS.glob("*.log"))
    assert logs == sorted(row["file"] for row in INDEX)
    assert len(logs) == 26


@pytest.mark.parametrize("row", INDEX, ids=[row["file"][:3] for row in INDEX])
def test_log_parses_to_index_values(row: dict[str, str]) -> None:
    prefix = row["file"][:3]
    results = _parse(row["file"])
    assert len(results) == (8 if prefix == "037" else 1)
    got = results[0].to_dict()
    json.dumps(got, allow_nan=False)  # strict JSON
    for column, key in COLUMNS.items():
        text = row[column]
        expected = float(text) if text else None
        assert got[key] == expected, (key, got[key], text)
        if expected is not None:
            assert type(got[key]) is (int if re.fullmatch(r"-?\d+", text) else float), key
    threads = None if prefix in THREADS_NOT_IN_LOG else _expected_threads(row["threads"])
    assert got["threads"] == threads
    kind = FAILURES.get(prefix)
    assert got["status"] == ("failed" if kind else "ok")
    assert got["failure_kind"] == kind
    delegates, coverage, kernels = DELEGATION[prefix]
    assert got["delegation"]["delegates"] == delegates
    assert got["delegation"]["coverage"] == coverage
    assert got["delegation"]["kernels"] == kernels
    if got["init_us"] is not None and prefix not in FORMATS:
        assert got["format"] == "tf2"
    elif prefix in FORMATS:
        assert got["format"] == FORMATS[prefix]


def test_failures_keep_the_tool_error_lines() -> None:
    (hexagon,) = _parse(BY_PREFIX["018"]["file"])
    assert "hexagon_nn_config failed. Error: -1" in hexagon.errors
    assert "Failed to apply Hexagon delegate." in hexagon.errors
    assert hexagon.errors[-1] == "Benchmarking failed."
    assert not any("umi:/" in e for e in hexagon.errors)  # the shell prompt is not an error
    (nnapi,) = _parse(BY_PREFIX["027"]["file"])
    assert nnapi.errors[0].startswith("NN API returned error ANEURALNETWORKS_OP_FAILED")
    assert nnapi.accelerator == "qti-default"
    assert nnapi.params["nnapi_execution_preference"] == "sustained_speed"
    (gpu,) = _parse(BY_PREFIX["035"]["file"])
    # the compiler's message continues over unprefixed lines: they belong to the error
    assert len(gpu.errors) == 3
    assert gpu.errors[2].startswith("(99:0) : error : conversion")


def test_multi_run_log_lists_all_eight_runs_of_its_notes() -> None:
    row = BY_PREFIX["037"]
    runs = re.findall(r"\((\d+)[^,]*,(\d+),(\d+),([\d.e+]+),([\d.e+]+)\)", row["notes"])
    assert len(runs) == 8
    results = _parse(row["file"])
    for (threads, init, first, warmup, inference), r in zip(runs, results, strict=True):
        assert (r.threads, r.init_us, r.first_inference_us) == (int(threads), int(init), int(first))
        assert r.warmup_avg_us == float(warmup)
        assert r.inference_avg_us == float(inference)
        assert r.status == "ok"
    coverage = [r.delegation.coverage for r in results]
    assert coverage == [None, None, "full", "full", None, None, "partial", "partial"]
    assert [r.delegation.to_dict()["kernels"] for r in results[6:]] == [11, 11]
    assert results[4].graph == "/data/local/tmp/efficientnet-lite0-int8.tflite"


def test_delegation_node_counts() -> None:
    (r,) = _parse(BY_PREFIX["012"]["file"])
    d = r.delegation.to_dict()
    assert (d["nodes_delegated"], d["nodes_total"], d["partitions"]) == (792, 836, 21)
    assert r.delegation.delegates[0].default  # the runtime's own XNNPACK, no --use_xnnpack
    (r,) = _parse(BY_PREFIX["018"]["file"])
    hexagon = r.delegation.delegates[0]
    assert (hexagon.nodes_delegated, hexagon.nodes_total, hexagon.partitions) == (125, 125, 1)
    assert hexagon.failed
    (r,) = _parse(BY_PREFIX["025"]["file"])
    gpu, nnapi = r.delegation.delegates
    assert (gpu.coverage, gpu.kernel, gpu.nodes_delegated) == ("full", "TfLiteGpuDelegateV2", 49)
    assert (nnapi.coverage, nnapi.kernels) == ("none", 0)
    (r,) = _parse(BY_PREFIX["020"]["file"])
    assert not r.delegation.delegates[0].default  # asked for with --use_xnnpack=true


def test_requested_delegates_from_the_flags() -> None:
    requested = {
        row["file"][:3]: parse_file(CORPUS / row["file"])[0].requested_delegates for row in INDEX
    }
    assert requested["001"] == []  # --use_gpu=false
    assert requested["019"] == []  # --use_xnnpack=false
    assert requested["005"] == ["EXTERNAL"]
    assert requested["018"] == ["Hexagon"]
    assert requested["023"] == ["GPU", "XNNPACK"]  # GPU asked for, unsupported on the Pi
    assert requested["025"] == ["GPU", "NNAPI"]
    assert requested["030"] == []  # LiteRT's --use_cpu is not a delegate


def test_run_statistics_and_percentiles() -> None:
    (r,) = _parse(BY_PREFIX["001"]["file"])
    assert r.warmup is not None and r.inference is not None
    assert (r.warmup.count, r.warmup.first, r.warmup.p95) == (5, 106436, 106436)
    assert (r.inference.p5, r.inference.median, r.inference.p95) == (105485, 105718, 106281)
    (r,) = _parse(BY_PREFIX["014"]["file"])
    # count=1 prints only curr (and the percentiles): every statistic is that one value
    assert r.warmup is not None
    assert (r.warmup.count, r.warmup.first, r.warmup.avg, r.warmup.std) == (1, 2732148, 2732148, 0)
    assert r.inference is not None and r.inference.avg == 2719850.0
    assert r.model_size_mb == 49.9313


def test_op_profile_tables() -> None:
    (r,) = _parse(BY_PREFIX["004"]["file"])
    init, run = r.profile_init, r.profile_regular
    assert init is not None and run is not None
    assert [(o.node_type, o.times_called) for o in init.run_order] == [("AllocateTensors", 1)]
    assert len(run.run_order) == 31 and len(run.top_by_time) == 10
    first = run.run_order[0]
    assert (first.node_type, first.start_ms, first.first_ms, first.avg_ms) == (
        "CONV_2D",
        0.010,
        7.628,
        7.640,
    )
    assert first.name == "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0"
    assert run.nodes_executed == 31
    assert run.timings is not None and run.timings.avg == 162910  # the profiler's own footer
    assert r.inference is not None and r.inference.avg == 162980  # not confused with it
    by_type = r.to_dict()["op_profile"]
    assert by_type[0] == {"node_type": "CONV_2D", "count": 15, "avg_ms": 143.812, "percent": 88.285}
    assert [t["node_type"] for t in by_type][-1] == "RESHAPE"

    (r,) = _parse(BY_PREFIX["006"]["file"])
    assert r.profile_regular is not None
    # a node type wider than its column shifts the tabs
    long = r.profile_regular.by_node_type[1]
    assert (long.node_type, long.avg_ms, long.percent) == (
        "TFLite_Detection_PostProcess",
        1.504,
        0.974,
    )

    (r,) = _parse(BY_PREFIX["030"]["file"])  # LiteRT: no [start] column, 40-wide types
    assert r.profile_regular is not None
    gemm = r.profile_regular.run_order[3]
    assert (gemm.node_type, gemm.start_ms, gemm.avg_ms) == (
        "Fully Connected (NC, PF32) GEMM",
        None,
        0.382,
    )
    assert r.profile_regular.by_node_type[4].mem_kb == 452.0

    (r,) = _parse(BY_PREFIX["017"]["file"])  # tables before the summary, times called 0
    assert r.profile_regular is not None and len(r.profile_regular.run_order) == 31
    assert r.profile_regular.run_order[0].times_called == 0
    assert r.inference is None  # its only count line is the profiler footer

    (r,) = _parse(BY_PREFIX["034"]["file"])  # cut right after the section header
    assert r.profile_init is not None and r.profile_init.run_order == []
    assert r.profile_regular is None and r.to_dict()["op_profile"] is None


def test_memory_variants() -> None:
    (r,) = _parse(BY_PREFIX["039"]["file"])
    m = r.memory
    assert (m.peak_mb, m.vmrss_mb, m.rss_anon_mb, m.rss_file_shmem_mb) == (13.1797, 13, 7, 6)
    assert r.to_dict()["memory_peak_mb"] == 13.1797
    (r,) = _parse(BY_PREFIX["010"]["file"])
    assert (r.memory.init_mb, r.memory.overall_mb, r.memory.label) == (0, 0, "peak")
    (r,) = _parse(BY_PREFIX["030"]["file"])
    assert (r.memory.init_mb, r.memory.overall_mb, r.memory.label) == (8.94, 11.51, "litert")


def test_parameters_from_echo_and_command_line() -> None:
    (r,) = _parse(BY_PREFIX["022"]["file"])  # threads only on the command line
    assert r.threads == 4 and r.params["use_xnnpack"] == "1"
    assert r.command is not None and "--num_threads=4" in r.command
    (r,) = _parse(BY_PREFIX["034"]["file"])  # STARTING! glued to the command line
    assert r.threads == 4 and r.params["enable_op_profiling"] == "1"
    (r,) = _parse(BY_PREFIX["015"]["file"])
    assert (r.params["num_runs"], r.params["use_nnapi"], r.params["warmup_runs"]) == (
        "50",
        "0",
        "1",
    )
    (r,) = _parse(BY_PREFIX["008"]["file"])
    assert r.accelerator == "synap-npu"
    assert r.params["nnapi_accelerators_available"] == "synap-npu,nnapi-reference"
    (r,) = _parse(BY_PREFIX["023"]["file"])
    assert "Unconsumed cmdline flags: --allow_fp16" in r.warnings
    assert "GPU acceleration is unsupported on this platform." in r.warnings
    assert r.params["max_secs"] == "180"


def test_corpus_logs_concatenated_split_into_their_invocations() -> None:
    # 039 is a tail excerpt (memory lines only): after a run whose memory lines were filtered
    # out (037) nothing tells the two apart, so it stays out of this test.
    rows = [row for row in INDEX if not row["file"].startswith("039")]
    texts = [(CORPUS / row["file"]).read_text(encoding="utf-8") for row in rows]
    single = [parse_text(t) for t in texts]
    joined = parse_text("\n".join(texts))
    flat = [r.to_dict() for results in single for r in results]
    assert [r.to_dict() for r in joined] == flat
