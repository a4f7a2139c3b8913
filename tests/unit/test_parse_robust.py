"""The parser never raises: empty, binary, cut, odd line ends, huge lines; files read streaming."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import farm.bench.parse as parse_mod
from farm.bench.parse import MAX_LINE, parse_file, parse_lines, parse_text
from farm.errors import InputError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
LOG_001 = CORPUS / "001_linux_arm64_qrb2210_cpu_xnnpack_default.log"
LOG_004 = CORPUS / "004_imx8mp_tf2.6_cpu_default_op_profiling.log"
LOG_030 = CORPUS / "030_arm_sme2_android_litert_benchmark_model_kleidiai_use_profiler.log"


def _dicts(results: list) -> list[dict]:
    out = [r.to_dict() for r in results]
    json.dumps(out, allow_nan=False)
    return out


@pytest.mark.parametrize("text", ["", "\n", "   \n\t\n", "\r\n\r\n", "\x00\x00", "=" * 80])
def test_empty_and_blank_inputs_give_no_results(text: str) -> None:
    assert parse_text(text) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(data: bytes) -> None:
    _dicts(parse_text(data.decode("utf-8", errors="replace")))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "STARTING!",
                "INFO: count=3 first=1 curr=2 min=1 max=3 avg=2 std=1",
                "count=",
                "count=x curr=",
                "count=\u00b2 curr=\u00b3 avg=\u0661.\u0665",
                "Inference timings in us: Init: , First inference: x,,",
                "Average inference timings in us: Warmup: 1e999, Init: nan",
                "Memory footprint delta from the start of the tool (MB): init=inf overall=-nan",
                "============================== Run Order ==============================",
                "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]",
                "\tCONV_2D\t1.0\t2.0\t3%\t4%\t0\t1\tname",
                "\tCONV_2D\t1.0\t2.0",
                "Explicitly applied GPU delegate, and the model graph will be partially",
                "Replacing 5 out of 0 node(s) with delegate (X) node, yielding 1 partitions.",
                "ERROR: Failed to allocate tensors!",
                "Benchmarking failed.",
                "I/tflite  ( 1): Graph: [x]",
                "INFO: [litert.h:1] ",
                "========== BENCHMARK RESULTS ==========",
                "Inference (avg): 1e5 ms (x runs)",
                "",
            ]
        )
        | st.text(max_size=60),
        max_size=60,
    )
)
def test_shuffled_fragments_never_raise(lines: list[str]) -> None:
    for result in _dicts(parse_lines(lines)):
        assert result["status"] in ("ok", "failed")


def test_non_finite_numbers_become_null_in_json() -> None:
    text = (
        "count=10 first=1 curr=2 min=1 max=3 avg=nan std=1\n"
        "Inference timings in us: Init: 5, First inference: 1, Warmup (avg): inf,"
        " Inference (avg): nan\n"
    )
    (got,) = _dicts(parse_text(text))
    assert (got["init_us"], got["warmup_avg_us"], got["inference_avg_us"]) == (5, None, None)


@pytest.mark.parametrize("log", [LOG_004, LOG_030], ids=["old-tables", "litert-tables"])
def test_cut_anywhere_in_a_table_never_raises(log: Path) -> None:
    text = log.read_text(encoding="utf-8")
    (full,) = parse_text(text)
    summary_end = text.index("\n", text.index("count=", text.index("count=") + 1))
    for cut in range(0, len(text), 41):
        results = _dicts(parse_text(text[:cut]))
        if cut > summary_end + 1 and results:
            assert results[0]["inference_count"] == full.inference.count
    # cut at every line: rows already printed are kept, none is invented
    assert full.profile_regular is not None and full.profile_regular.run_order
    lines = text.splitlines()
    for n in range(len(lines)):
        results = parse_text("\n".join(lines[:n]))
        if results and results[0].profile_regular is not None:
            rows = results[0].profile_regular.run_order
            assert rows == full.profile_regular.run_order[: len(rows)]


def test_line_ends_do_not_matter(tmp_path: Path) -> None:
    text = LOG_001.read_text(encoding="utf-8")
    expected = _dicts(parse_text(text))
    for eol in ("\r\n", "\r"):
        path = tmp_path / "log.txt"
        path.write_bytes(text.replace("\n", eol).encode())
        assert _dicts(parse_file(path)) == expected
        assert _dicts(parse_text(text.replace("\n", eol))) == expected


def test_streaming_reader_across_chunk_boundaries(tmp_path: Path, monkeypatch) -> None:
    text = (LOG_004.read_text(encoding="utf-8") + "\n") * 3
    path = tmp_path / "log.txt"
    path.write_bytes(text.replace("\n", "\r\n").encode())
    expected = _dicts(parse_text(text))
    assert len(expected) == 3
    for chunk in (1, 2, 7, 4096):
        monkeypatch.setattr(parse_mod, "_CHUNK", chunk)
        assert _dicts(parse_file(path)) == expected


def test_huge_line_is_cut_and_the_log_after_it_still_parses(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("x" * (3 * MAX_LINE + 5) + "\n")
        fh.write(LOG_001.read_text(encoding="utf-8"))
    (result,) = parse_file(path)
    assert result.init_us == 87639 and result.status == "ok"


def test_binary_file_gives_no_results(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(range(256)) * 64)
    assert parse_file(path) == []


def test_unreadable_input_raises_input_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    with pytest.raises(InputError, match="nope.log"):
        parse_file(missing)
    with pytest.raises(InputError, match="is a directory"):
        parse_file(tmp_path)


def test_unknown_lines_between_tool_lines_are_ignored() -> None:
    text = LOG_001.read_text(encoding="utf-8")
    noisy = "\n".join(
        f"{line}\nW [HandleLayoutInfer:257]Op {i}: vendor says hello\ntype 54 str SoftmaxAxis0"
        for i, line in enumerate(text.splitlines())
    )
    assert _dicts(parse_text(noisy)) == _dicts(parse_text(text))


def test_other_apps_logcat_lines_are_not_ours() -> None:
    lines = [
        "07-08 15:40:34.274  1000  1000 E ActivityManager: ANR in com.example (Killed)",
        "07-08 15:40:34.274  6794  6794 I tflite  : STARTING!",
        "07-08 15:40:34.275  6794  6794 I tflite  : count=1 curr=5",
        "07-08 15:40:34.275  1000  1000 E SurfaceFlinger: Failed to invoke something",
        "07-08 15:40:34.276  6794  6794 I tflite  : count=2 first=4 curr=6 min=4 max=6 avg=5 std=1",
        "07-08 15:40:34.276  6794  6794 I tflite  : Inference timings in us: Init: 1,"
        " First inference: 5, Warmup (avg): 5, Inference (avg): 5",
    ]
    (result,) = parse_text("\n".join(lines))
    assert (result.status, result.errors, result.inference_avg_us) == ("ok", [], 5)


SUMMARY = (
    "Inference timings in us: Init: 1, First inference: 1, Warmup (avg): 1, Inference (avg): 2"
)
FAILURE_CASES = [
    ("model_load_failed", "STARTING!|Graph: [m.tflite]|ERROR: Could not open 'm.tflite'.|"
     "Failed to mmap model m.tflite|Benchmarking failed."),
    ("allocation_failed", "INFO: STARTING!|INFO: Loaded model m.tflite|"
     "ERROR: Failed to allocate tensors!|ERROR: Benchmarking failed."),
    ("invoke_failed", "STARTING!|Loaded model m.tflite|Running benchmark for at least 1 iterations|"
     "ERROR: Node number 3 (CONV_2D) failed to invoke.|Failed to invoke!|Benchmarking failed."),
    ("invalid_input", "STARTING!|Loaded model m.tflite|"
     "FATAL: Inputs mismatch: Model inputs #:2 expected: 1"),
    ("aborted", "STARTING!|Loaded model m.tflite|FATAL: check failed somewhere"),
    ("crashed", "STARTING!|Loaded model m.tflite|Running benchmark for at least 1 iterations|"
     "Segmentation fault"),
    ("crashed", "STARTING!|Loaded model m.tflite|Initialized session in 5ms.|"
     "Running benchmark for at least 1 iterations"),
    ("delegate_failed", "STARTING!|Use gpu: [1]|Loaded model m.tflite|GPU delegate created.|"
     "ERROR: Disallowed CPU fallback detected.|Benchmarking failed."),
    ("invoke_failed", "STARTING!|Loaded model m.tflite|"
     f"count=50 first=1 curr=1 min=1 max=2 avg=2 std=1|{SUMMARY}|Benchmarking failed."),
    ("invalid_input", "STARTING!|Failed to parse flag 'num_threads' from 'x'|Benchmarking failed."),
    ("tool_error", "STARTING!|The Model contains 2 signature key(s).|Benchmarking failed."),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "text"), FAILURE_CASES)
def test_failure_kinds(kind: str, text: str) -> None:
    (result,) = parse_lines(text.split("|"))
    assert (result.status, result.failure_kind) == ("failed", kind)
    assert result.errors or kind == "crashed"  # the tool's own words are kept


def test_iter_lines_yields_each_run_before_reading_the_rest() -> None:
    from farm.bench.parse import iter_lines

    text = LOG_001.read_text(encoding="utf-8")
    consumed = 0

    def lines():
        nonlocal consumed
        for _ in range(3):
            for line in text.splitlines():
                consumed += 1
                yield line

    stream = iter_lines(lines())
    first = next(stream)
    assert first.init_us == 87639
    assert consumed < 2 * len(text.splitlines())  # the second run had just begun
    assert len(list(stream)) == 2


def test_iter_file_reports_unreadable_input_at_once(tmp_path: Path) -> None:
    from farm.bench.parse import iter_file

    with pytest.raises(InputError, match="gone.log"):
        iter_file(tmp_path / "gone.log")  # before any iteration


def hostile_lines(n: int) -> dict[str, str]:
    """Lines that would make a backtracking regex slow, each about `n` characters long."""
    return {
        "logcat-brief-spaces": "I/" + " " * n,
        "logcat-threadtime-spaces": "07-08 15:40:34.274  6794  6794 I " + " " * n,
        "stats-one-word": "count=" + "a" * n,
        "stats-huge-int": "count=" + "1" * n,
        "summary-huge-int": "Inference timings in us: Init: " + "9" * n,
        "session-huge-exponent": "Initialized session in 1e" + "9" * n + "ms.",
        "litert-huge": "Inference (avg): 1e999999999 ms (" + "9" * n + " runs)",
        "replacing-huge-int": "Replacing " + "9" * n + " out of 1 node(s) with delegate (X) node,"
        " yielding 1 partitions",
        "simple-delegate-long": " delegate: " + "x" * n + "nodes delegated out of",
        "delegate-created-long": "x" * n + " delegate created.",
        "header-brackets": "[node type]" + "[" * n,
        "glued-severities": "INFO: " * (n // 6),
    }


HOSTILE_CONTEXT = [
    "STARTING!",
    "========== BENCHMARK RESULTS ==========",
    "============================== Run Order ==============================",
    "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]",
]


def _cpu_ns(lines: list[str]) -> int:
    """CPU time this thread spends parsing `lines` (not wall time: other load does not count)."""
    start = time.thread_time_ns()
    _dicts(parse_lines(lines))
    return time.thread_time_ns() - start


def _growth(small: list[str], large: list[str], tries: int = 5) -> float:
    """CPU time of parsing `large` over that of `small`: the best of `tries` each, interleaved."""
    best_small = best_large = 1 << 62
    for _ in range(tries):
        best_small = min(best_small, _cpu_ns(small))
        best_large = min(best_large, _cpu_ns(large))
    return best_large / max(best_small, 1)


@pytest.mark.parametrize("name", list(hostile_lines(0)))
def test_hostile_long_lines_parse_in_linear_time(name: str) -> None:
    # Lines cut at MAX_LINE parse without raising...
    line = hostile_lines(MAX_LINE)[name]
    _dicts(parse_lines([line, line]))
    _dicts(parse_lines([*HOSTILE_CONTEXT, line, line]))
    # ...and 4x longer lines (all below the cut) cost about 4x the time: a regex that
    # backtracks quadratically would cost 16x (and minutes at MAX_LINE).
    n = (MAX_LINE - 256) // 4
    small, large = hostile_lines(n)[name], hostile_lines(4 * n)[name]
    growth = _growth([*HOSTILE_CONTEXT, small, small], [*HOSTILE_CONTEXT, large, large])
    assert growth < 8, f"{name}: 4x the length took {growth:.1f}x the time"


GPU_PARTIAL = """\
INFO: STARTING!
INFO: Use gpu: [1]
INFO: Loaded model m.tflite
INFO: Created TensorFlow Lite delegate for GPU.
INFO: GPU delegate created.
ERROR: Following operations are not supported by GPU delegate:
CUSTOM TFLite_Detection_PostProcess: Operation is not supported.
63 operations will run on the GPU, and the remaining 1 operations will run on the CPU.
INFO: Created 1 GPU delegate kernels.
INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the \
delegate w/ 1 delegate kernels.
INFO: count=3 first=30000 curr=20000 min=20000 max=30000 avg=23333.3 std=4714
INFO: count=50 curr=20000(all same)
INFO: Inference timings in us: Init: 900100, First inference: 30000, Warmup (avg): 23333.3, \
Inference (avg): 20000
"""


def test_gpu_partial_delegation_is_not_an_error() -> None:
    (r,) = parse_text(GPU_PARTIAL)
    assert (r.status, r.errors) == ("ok", [])
    assert r.warnings[1] == "CUSTOM TFLite_Detection_PostProcess: Operation is not supported."
    d = r.delegation.to_dict()
    assert (d["nodes_delegated"], d["nodes_total"], d["kernels"], d["coverage"]) == (
        63,
        64,
        1,
        "partial",
    )
    assert r.inference is not None and r.inference.all_same
    assert (r.inference.min, r.inference.max, r.inference.std) == (20000, 20000, 0)


LITERT_LOGCAT = [
    "[benchmark_litert_model.h:81] ",
    "========== BENCHMARK RESULTS ==========",
    "[benchmark_litert_model.h:82] Model initialization: 12.34 ms",
    "[benchmark_litert_model.h:84] Warmup (first):       5.10 ms",
    "[benchmark_litert_model.h:86] Warmup (avg):         4.20 ms (10 runs)",
    "[benchmark_litert_model.h:88] Inference (avg):      4.01 ms (50 runs)",
    "[benchmark_litert_model.h:92] Inference (min):      3.90 ms",
    "[benchmark_litert_model.h:94] Inference (max):      4.50 ms",
    "[benchmark_litert_model.h:96] Inference (std):      0.12",
    "Memory Usage:",
    "[benchmark_litert_model.h:114] Init footprint:       8.94 MB",
    "[benchmark_litert_model.h:116] Overall footprint:    11.51 MB",
    "[benchmark_litert_model.h:120] Peak memory:          20.25 MB",
    "[benchmark_litert_model.h:126] ======================================",
]


def test_litert_block_alone_is_converted_to_microseconds() -> None:
    lines = [f"11-27 10:00:00.000  100  100 I litert  : {line}" for line in LITERT_LOGCAT]
    (got,) = _dicts(parse_lines(lines))
    assert got["format"] == "litert_compiled_model" and got["status"] == "ok"
    assert (got["init_us"], got["first_inference_us"]) == (12340, 5100)
    assert (got["warmup_avg_us"], got["inference_avg_us"], got["inference_count"]) == (
        4200,
        4010,
        50,
    )
    assert (got["inference_min_us"], got["inference_max_us"], got["inference_std_us"]) == (
        3900,
        4500,
        120,
    )
    assert (got["memory_init_mb"], got["memory_overall_mb"], got["memory_peak_mb"]) == (
        8.94,
        11.51,
        20.25,
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig"])
def test_utf16_and_bom_captures(tmp_path: Path, encoding: str) -> None:
    # PowerShell's `>` writes UTF-16 with a BOM; some editors add a UTF-8 BOM
    text = LOG_001.read_text(encoding="utf-8")
    path = tmp_path / "log.txt"
    path.write_bytes(text.replace("\n", "\r\n").encode(encoding))
    assert _dicts(parse_file(path)) == _dicts(parse_text(text))


def test_glued_tool_lines_are_split() -> None:
    text = LOG_001.read_text(encoding="utf-8")
    glued = text.replace("\n\nINFO: Inference timings", "INFO: Inference timings")
    assert "p95=106281INFO: Inference timings" in glued
    assert _dicts(parse_text(glued)) == _dicts(parse_text(text))
    noise = "07-08 15:40:34.274  1000  1000 W Other   : text INFO: Inference timings in us: Init: 1"
    assert parse_text(noise) == []  # another app's line stays another app's line


def _profile_tables(node_type: str) -> list[str]:
    header = "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]"
    by_type = "\t[Node type]\t[count]\t[avg ms]\t[avg %]\t[cdf %]\t[mem KB]\t[times called]"
    return [
        "============================== Run Order ==============================",
        header,
        f"\t{node_type:>40}\t1.000\t2.000\t100.000%\t100.000%\t0.000\t1\t[{node_type}]:0",
        "============================== Summary by node type ==============================",
        by_type,
        f"\t{node_type:>40}\t1\t2.000\t100.000%\t100.000%\t0.000\t1",
        "Timings (microseconds): count=5 first=1 curr=2 min=1 max=3 avg=2 std=1",
    ]


def test_only_the_primary_graph_profile_is_kept() -> None:
    lines = [
        "Inference timings in us: Init: 1, First inference: 2, Warmup (avg): 2, Inference (avg): 2",
        "INFO: Operator-wise Profiling Info for Regular Benchmark Runs:",
        "Primary graph (name: main) profile:",
        *_profile_tables("CONV_2D"),
        "Subgraph (index: 1, name: while_body) profile:",
        *_profile_tables("ADD"),
        "Delegate internal: ",
        *_profile_tables("XNN_OP"),
    ]
    (r,) = parse_lines(lines)
    profile = r.profile_regular
    assert profile is not None
    assert [o.node_type for o in profile.run_order] == ["CONV_2D"]
    assert [o.node_type for o in profile.by_node_type] == ["CONV_2D"]
    assert profile.timings is not None and profile.timings.count == 5
