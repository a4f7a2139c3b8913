"""benchmark_model command-line flags: the one place they are built."""

from __future__ import annotations

from collections.abc import Sequence

from farm.config import Config, DelegateSpec

_GPU_BACKENDS = {"opencl": "cl", "gl": "gl"}

# The provider name benchmark_model prints for each delegate kind (cpu asks for no delegate).
PROVIDERS = {
    "xnnpack": "XNNPACK",
    "gpu": "GPU",
    "nnapi": "NNAPI",
    "hexagon": "Hexagon",
    "external": "EXTERNAL",
}


def benchmark_args(
    delegate: DelegateSpec,
    *,
    threads: int,
    graph: str,
    config: Config,
    extra: Sequence[str] = (),
) -> list[str]:
    """The argument list (unquoted) for one benchmark_model run of `graph` on the device.

    Run counts and durations come from the config; the delegate adds its own flags.
    `extra` flags go last, so they win where the tool takes the last value.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not graph or "\n" in graph or "\0" in graph:
        raise ValueError(f"unusable graph path {graph!r}")
    args = [
        f"--graph={graph}",
        f"--num_threads={threads}",
        f"--warmup_runs={config.warmup_runs}",
        f"--warmup_min_secs={_num(config.warmup_min_secs)}",
        f"--num_runs={config.num_runs}",
        f"--min_secs={_num(config.min_secs)}",
        f"--max_secs={_num(config.max_secs)}",
    ]
    if config.report_peak_memory:
        args.append("--report_peak_memory_footprint=true")
    args.extend(delegate_args(delegate))
    args.extend(f"--{name}={value}" for name, value in tool_flags(delegate, config).items())
    args.extend(extra)
    return args


def accuracy_args(inputs: Sequence[tuple[str, Sequence[int], str]], output: str) -> list[str]:
    """The flags of an accuracy run: each input (name, shape, device file) fed from its file,
    the output tensors written to `output`.

    The tool reads each file as the tensor's raw bytes (`--input_layer_value_files`, TF 2.3 and
    later; it needs `--input_layer` and `--input_layer_shape` in the model's input order) and
    writes every output tensor's raw bytes, one after another, after the last run
    (`--output_filepath`, TF 2.10 and later). A ':' in a name is written '::'.
    """
    if not inputs or not output:
        raise ValueError("an accuracy run needs inputs and an output path")
    for name, _, _ in inputs:
        if not name or "," in name or "\n" in name:
            raise ValueError(f"input tensor name {name!r} cannot be passed to --input_layer")
    return [
        "--input_layer=" + ",".join(name for name, _, _ in inputs),
        "--input_layer_shape=" + ":".join(",".join(map(str, shape)) for _, shape, _ in inputs),
        "--input_layer_value_files="
        + ",".join(f"{name.replace(':', '::')}:{path}" for name, _, path in inputs),
        f"--output_filepath={output}",
    ]


def tool_flags(delegate: DelegateSpec, config: Config) -> dict[str, str]:
    """The extra flags a run of this delegate variant passes verbatim: the config's, op
    profiling, then the variant's own (a later one wins)."""
    flags = dict(config.benchmark_flags)
    if config.op_profiling:
        flags["enable_op_profiling"] = "true"
    flags.update(delegate.benchmark_flags)
    return flags


def delegate_args(delegate: DelegateSpec) -> list[str]:
    """The flags that select and tune one delegate (none for plain CPU)."""
    args = _selection_args(delegate)
    if delegate.require_full_delegation is not None:
        args.append(f"--require_full_delegation={_bool(delegate.require_full_delegation)}")
    return args


def _selection_args(delegate: DelegateSpec) -> list[str]:
    kind = delegate.kind
    if kind == "cpu":
        # Setting --use_xnnpack at all disables the runtime's default XNNPACK delegate,
        # so it is only passed when the config forces it one way.
        return [] if delegate.xnnpack is None else [f"--use_xnnpack={_bool(delegate.xnnpack)}"]
    if kind == "xnnpack":
        return ["--use_xnnpack=true"]
    if kind == "gpu":
        args = ["--use_gpu=true"]
        if delegate.precision_loss_allowed is not None:
            args.append(f"--gpu_precision_loss_allowed={_bool(delegate.precision_loss_allowed)}")
        if delegate.backend is not None:
            args.append(f"--gpu_backend={_GPU_BACKENDS[delegate.backend]}")
        return args
    if kind == "nnapi":
        args = ["--use_nnapi=true"]
        if delegate.accelerator_name:
            args.append(f"--nnapi_accelerator_name={delegate.accelerator_name}")
        if delegate.allow_fp16 is not None:
            args.append(f"--nnapi_allow_fp16={_bool(delegate.allow_fp16)}")
        return args
    if kind == "hexagon":
        return ["--use_hexagon=true"]
    if kind == "external":
        args = [f"--external_delegate_path={delegate.path}"]
        if delegate.options:
            joined = ";".join(f"{k}:{v}" for k, v in delegate.options.items())
            args.append(f"--external_delegate_options={joined}")
        return args
    raise ValueError(f"unknown delegate kind {kind!r}")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _num(value: float) -> str:
    """1.0 → "1", 0.5 → "0.5": what the tool echoes back, without float noise."""
    return f"{value:g}" if value == float(f"{value:g}") else repr(float(value))
