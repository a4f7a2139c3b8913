"""benchmark_model flags: each delegate's flags, run counts, and the --name=value form."""

from __future__ import annotations

import re

import pytest

from farm.bench.flags import benchmark_args, delegate_args
from farm.config import Config, DelegateSpec

# Flag names benchmark_model registers (shared/corpus/benchmark_model_format.md §1.1-1.5).
KNOWN_FLAGS = {
    "graph", "num_threads", "warmup_runs", "warmup_min_secs", "num_runs", "min_secs", "max_secs",
    "report_peak_memory_footprint", "use_gpu", "gpu_precision_loss_allowed", "gpu_backend",
    "use_nnapi", "nnapi_accelerator_name", "nnapi_allow_fp16", "use_hexagon", "use_xnnpack",
    "external_delegate_path", "external_delegate_options", "enable_op_profiling",
}  # fmt: skip
FLAG = re.compile(r"^--([a-z_0-9]+)=(.+)$", re.DOTALL)


def names(args: list[str]) -> list[str]:
    return [FLAG.match(a).group(1) for a in args]  # type: ignore[union-attr]


def spec(value: object) -> DelegateSpec:
    return DelegateSpec.model_validate(value)


def test_run_counts_and_graph_always_passed():
    config = Config(warmup_runs=2, warmup_min_secs=0.25, num_runs=30, min_secs=2, max_secs=60)
    args = benchmark_args(spec("cpu"), threads=4, graph="/data/local/tmp/farm/models/x.tflite",
                          config=config)  # fmt: skip
    assert args == [
        "--graph=/data/local/tmp/farm/models/x.tflite",
        "--num_threads=4",
        "--warmup_runs=2",
        "--warmup_min_secs=0.25",
        "--num_runs=30",
        "--min_secs=2",
        "--max_secs=60",
    ]


@pytest.mark.parametrize(
    ("delegate", "expected"),
    [
        ("cpu", []),
        ({"kind": "cpu", "xnnpack": False}, ["--use_xnnpack=false"]),
        ({"kind": "cpu", "xnnpack": True}, ["--use_xnnpack=true"]),
        ("xnnpack", ["--use_xnnpack=true"]),
        ("gpu", ["--use_gpu=true"]),
        (
            {"kind": "gpu", "precision_loss_allowed": False, "backend": "opencl"},
            ["--use_gpu=true", "--gpu_precision_loss_allowed=false", "--gpu_backend=cl"],
        ),
        ({"kind": "gpu", "backend": "gl"}, ["--use_gpu=true", "--gpu_backend=gl"]),
        ("nnapi", ["--use_nnapi=true"]),
        (
            {"kind": "nnapi", "accelerator_name": "qti-dsp", "allow_fp16": True},
            ["--use_nnapi=true", "--nnapi_accelerator_name=qti-dsp", "--nnapi_allow_fp16=true"],
        ),
        ("hexagon", ["--use_hexagon=true"]),
        (
            {"kind": "external", "name": "qnn", "path": "/data/local/tmp/libQnn.so",
             "options": {"backend_type": "htp", "log_level": 2}},
            ["--external_delegate_path=/data/local/tmp/libQnn.so",
             "--external_delegate_options=backend_type:htp;log_level:2"],
        ),
    ],
)  # fmt: skip
def test_delegate_flags(delegate: object, expected: list[str]):
    assert delegate_args(spec(delegate)) == expected
    args = benchmark_args(spec(delegate), threads=1, graph="m.tflite", config=Config())
    assert args[7:] == expected  # after graph, threads and the five run-count flags


def test_every_flag_is_name_equals_value_and_known():
    # A bare `--flag` is not parsed by benchmark_model ("Unconsumed cmdline flags").
    config = Config(report_peak_memory=True)
    for delegate in ["cpu", "xnnpack", "gpu", "nnapi", "hexagon",
                     {"kind": "external", "name": "vx", "path": "/x.so", "options": {"a": "b"}},
                     {"kind": "gpu", "backend": "gl", "precision_loss_allowed": True},
                     {"kind": "nnapi", "accelerator_name": "x", "allow_fp16": False}]:  # fmt: skip
        args = benchmark_args(spec(delegate), threads=2, graph="a b.tflite", config=config)
        assert all(FLAG.match(a) for a in args), args
        assert set(names(args)) <= KNOWN_FLAGS
        assert len(set(names(args))) == len(args)  # no flag twice


def test_peak_memory_and_extra_flags():
    args = benchmark_args(spec("gpu"), threads=1, graph="m.tflite",
                          config=Config(report_peak_memory=True),
                          extra=["--enable_op_profiling=true"])  # fmt: skip
    assert "--report_peak_memory_footprint=true" in args
    assert args[-1] == "--enable_op_profiling=true"
    assert "--report_peak_memory_footprint=true" not in benchmark_args(
        spec("cpu"), threads=1, graph="m.tflite", config=Config()
    )


def test_graph_is_passed_unquoted():
    # Quoting for the device shell is the device layer's job; the value stays intact here.
    graph = "/data/local/tmp/farm/models/$(touch x) a'b.tflite"
    args = benchmark_args(spec("cpu"), threads=1, graph=graph, config=Config())
    assert args[0] == f"--graph={graph}"


def test_odd_numbers_are_written_exactly():
    config = Config(min_secs=0.1, max_secs=1e-1 + 2.2, warmup_min_secs=0)
    args = benchmark_args(spec("cpu"), threads=1, graph="m", config=config)
    values = dict(a[2:].split("=", 1) for a in args)
    assert float(values["max_secs"]) == 1e-1 + 2.2
    assert values["min_secs"] == "0.1"
    assert values["warmup_min_secs"] == "0"


def test_refuses_unusable_arguments():
    with pytest.raises(ValueError):
        benchmark_args(spec("cpu"), threads=0, graph="m", config=Config())
    with pytest.raises(ValueError):
        benchmark_args(spec("cpu"), threads=1, graph="a\nb", config=Config())


def test_tool_flags_op_profiling_and_full_delegation():
    config = Config(benchmark_flags={"use_caching": True, "max_delegated_partitions": 4},
                    op_profiling=True)  # fmt: skip
    gpu = spec({"kind": "gpu", "require_full_delegation": True,
                "benchmark_flags": {"max_delegated_partitions": 1}})  # fmt: skip
    args = benchmark_args(gpu, threads=1, graph="m.tflite", config=config)
    assert "--require_full_delegation=true" in args
    # the config's, then op profiling; the variant's own value wins where both set one
    assert args[-3:] == [
        "--use_caching=true", "--max_delegated_partitions=1", "--enable_op_profiling=true"
    ]  # fmt: skip
    assert len(set(names(args))) == len(args)


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"num_threads": 4}, "set by farm; use threads:"),
        ({"use_gpu": True}, "set by farm; use delegates:"),
        ({"Bad-Name": 1}, "not a benchmark_model flag name"),
        ({"input_layer": "a\nb"}, "newline"),
    ],
)
def test_tool_flags_farm_owns_or_cannot_pass_are_refused(flags: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Config(benchmark_flags=flags)


def test_flag_on_the_command_line():
    from farm.config import apply_overrides
    from farm.errors import ConfigError

    flags = ["enable_op_profiling=true", "input_layer_shape=1,2"]
    config = apply_overrides(Config(benchmark_flags={"use_caching": "true"}), {"flag": flags})
    assert config.benchmark_flags == {"use_caching": "true", "enable_op_profiling": "true",
                                      "input_layer_shape": "1,2"}  # fmt: skip
    with pytest.raises(ConfigError, match="--flag 'oops': expected NAME=VALUE"):
        apply_overrides(Config(), {"flag": ["oops"]})
    with pytest.raises(ConfigError, match="--flag: tool flag 'graph' is set by farm"):
        apply_overrides(Config(), {"flag": ["graph=x.tflite"]})
