"""What the parser returns: one BenchmarkResult per `benchmark_model` invocation, and its parts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from farm.bench.parse.values import Number, is_true

FAILURE_KINDS = (
    "delegate_failed",
    "model_load_failed",
    "allocation_failed",
    "invoke_failed",
    "invalid_input",
    "aborted",
    "crashed",
    "tool_error",
)
FORMATS = ("tf2", "tf1", "tf1_contrib", "litert_compiled_model")

# Flags that ask for a delegate → the delegate's name.
REQUEST_FLAGS = {
    "use_gpu": "GPU",
    "use_nnapi": "NNAPI",
    "use_hexagon": "Hexagon",
    "use_xnnpack": "XNNPACK",
    "use_ynnpack": "YNNPACK",
    "use_coreml": "COREML",
    "use_npu": "NPU",
    "external_delegate_path": "EXTERNAL",
    "stable_delegate_settings_file": "STABLE_DELEGATE",
}


def finite(value: Number | None) -> Number | None:
    """`value`, or None for NaN and infinities (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(slots=True)
class RunStats:
    """One ``count=… first=… curr=…`` line: a phase's statistics in µs, as printed."""

    count: int
    first: Number | None = None
    curr: Number | None = None
    min: Number | None = None
    max: Number | None = None
    avg: Number | None = None
    std: Number | None = None
    p5: Number | None = None
    median: Number | None = None
    p95: Number | None = None
    all_same: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The statistics as a JSON-ready dict."""
        return {
            "count": self.count,
            "first": finite(self.first),
            "curr": finite(self.curr),
            "min": finite(self.min),
            "max": finite(self.max),
            "avg": finite(self.avg),
            "std": finite(self.std),
            "p5": finite(self.p5),
            "median": finite(self.median),
            "p95": finite(self.p95),
            "all_same": self.all_same,
        }


@dataclass(slots=True)
class Memory:
    """Memory lines in MB: footprint at init and overall, periodic peak, RSS at the end."""

    init_mb: Number | None = None
    overall_mb: Number | None = None
    peak_mb: Number | None = None
    vmrss_mb: Number | None = None
    rss_anon_mb: Number | None = None
    rss_file_shmem_mb: Number | None = None
    label: str | None = None  # "delta" (TF ≥ 2.8), "peak" (older label), "litert"


@dataclass(slots=True)
class DelegateInfo:
    """What the log says about one delegate."""

    name: str
    default: bool = False  # the runtime's implicit XNNPACK delegate, not asked for by a flag
    kernel: str | None = None  # delegate kernel name, e.g. TfLiteGpuDelegateV2, Vx Delegate
    coverage: str | None = None  # "full", "partial", "none" or None (not said)
    kernels: int | None = None
    nodes_delegated: int | None = None
    nodes_total: int | None = None
    partitions: int | None = None
    failed: bool = False  # "Failed to apply X delegate."
    not_created: bool = False  # its library did not load, or the platform lacks it


def _names(message: str, provider: str) -> bool:
    """Whether a not-created message is about `provider`."""
    lower = message.lower()
    return (provider.lower() in lower) or (provider == "EXTERNAL" and "external" in lower)


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


@dataclass(slots=True)
class Delegation:
    """All delegates of one invocation, in the order the log first names them."""

    delegates: list[DelegateInfo] = field(default_factory=list)

    def get(self, name: str) -> DelegateInfo:
        """The entry for `name`, created on first use."""
        for d in self.delegates:
            if d.name == name:
                return d
        d = DelegateInfo(name)
        self.delegates.append(d)
        return d

    @property
    def coverage(self) -> str | None:
        """``full`` if some delegate runs the whole graph, else ``partial``/``none``/None."""
        known = [d.coverage for d in self.delegates if d.coverage]
        for level in ("full", "partial", "none"):
            if level in known:
                return level
        return None

    def to_dict(self) -> dict[str, Any]:
        """The ``delegation`` object of the JSON output."""
        totals = [d.nodes_total for d in self.delegates if d.nodes_total is not None]
        return {
            "delegates": [d.name for d in self.delegates if not d.not_created],
            "nodes_delegated": _sum([d.nodes_delegated for d in self.delegates]),
            "nodes_total": max(totals) if totals else None,
            "partitions": _sum([d.partitions for d in self.delegates]),
            "kernels": _sum([d.kernels for d in self.delegates]),
            "coverage": self.coverage,
        }


@dataclass(slots=True)
class OpRow:
    """A per-node row of a profile table (run order or top by computation time)."""

    node_type: str
    first_ms: float
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int
    name: str
    start_ms: float | None = None


@dataclass(slots=True)
class OpTypeRow:
    """A row of the summary by node type."""

    node_type: str
    count: int
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int


@dataclass(slots=True)
class OpProfile:
    """One op-profiling section (initialization or regular runs) of the primary graph."""

    run_order: list[OpRow] = field(default_factory=list)
    top_by_time: list[OpRow] = field(default_factory=list)
    by_node_type: list[OpTypeRow] = field(default_factory=list)
    nodes_executed: int | None = None
    timings: RunStats | None = None


@dataclass(slots=True)
class BenchmarkResult:
    """Everything one `benchmark_model` invocation printed that farm uses."""

    status: str = "ok"
    failure_kind: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    command: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    warmup: RunStats | None = None
    inference: RunStats | None = None
    init_us: Number | None = None
    first_inference_us: Number | None = None
    warmup_avg_us: Number | None = None
    inference_avg_us: Number | None = None
    memory: Memory = field(default_factory=Memory)
    delegation: Delegation = field(default_factory=Delegation)
    profile_init: OpProfile | None = None
    profile_regular: OpProfile | None = None
    model_size_mb: Number | None = None
    format: str | None = None
    exit_status: int | None = None  # the process's exit status, when the caller knows it
    signal: str | None = None  # the signal that ended the process (SIGSEGV, …), when known

    @property
    def reason(self) -> str | None:
        """Why the run failed, one line: "crashed (SIGSEGV)", "delegate_failed: …"; None if ok."""
        if self.status == "ok":
            return None
        kind = self.failure_kind or "failed"
        if self.signal:
            kind = f"{kind} ({self.signal})"
        return f"{kind}: {self.errors[0]}" if self.errors else kind

    @property
    def threads(self) -> int | None:
        """The thread count the log states (echo or command line), None when it does not."""
        value = self.params.get("num_threads")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def graph(self) -> str | None:
        """The model path the tool was given."""
        return self.params.get("graph")

    @property
    def requested_delegates(self) -> list[str]:
        """Delegates the flags asked for (``--use_gpu=true``, ``--external_delegate_path``, …)."""
        asked = []
        for flag, value in self.params.items():
            name = REQUEST_FLAGS.get(flag)
            if name is None:
                continue
            if flag.startswith("use_") and not is_true(value):
                continue
            if value.strip() and name not in asked:
                asked.append(name)
        return asked

    def verdict(self, provider: str) -> tuple[str | None, str | None]:
        """Whether the delegate `provider` (GPU, NNAPI, Hexagon, XNNPACK, EXTERNAL) really ran:
        (full | partial | none | not_applied | None when the log does not say, and why in one
        line for the last two)."""
        d = next((d for d in self.delegation.delegates if d.name == provider), None)
        if d is None:
            return None, None
        if d.not_created:
            said = next((w for w in self.warnings if _names(w, provider)), None)
            return "not_applied", said or f"the {provider} delegate was not created"
        if d.failed:
            return "not_applied", f"Failed to apply {provider} delegate."
        if d.coverage == "none":
            return "none", f"the {provider} delegate took no node"
        return d.coverage, None

    @property
    def accelerator(self) -> str | None:
        """The NNAPI accelerator asked for, if any."""
        return self.params.get("nnapi_accelerator_name") or None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``farm parse --json``: all keys present, None when not printed."""
        inf = self.inference
        profile = self.profile_regular
        return {
            "status": self.status,
            "failure_kind": self.failure_kind,
            "errors": list(self.errors),
            "threads": self.threads,
            "init_us": finite(self.init_us),
            "first_inference_us": finite(self.first_inference_us),
            "warmup_avg_us": finite(self.warmup_avg_us),
            "inference_avg_us": finite(self.inference_avg_us),
            "inference_std_us": finite(inf.std) if inf else None,
            "inference_count": inf.count if inf else None,
            "inference_min_us": finite(inf.min) if inf else None,
            "inference_max_us": finite(inf.max) if inf else None,
            "inference_median_us": finite(inf.median) if inf else None,
            "inference_p5_us": finite(inf.p5) if inf else None,
            "inference_p95_us": finite(inf.p95) if inf else None,
            "warmup_count": self.warmup.count if self.warmup else None,
            "memory_init_mb": finite(self.memory.init_mb),
            "memory_overall_mb": finite(self.memory.overall_mb),
            "memory_peak_mb": finite(self.memory.peak_mb),
            "delegation": self.delegation.to_dict(),
            "op_profile": (
                [
                    {
                        "node_type": r.node_type,
                        "count": r.count,
                        "avg_ms": finite(r.avg_ms),
                        "percent": finite(r.percent),
                    }
                    for r in profile.by_node_type
                ]
                if profile and profile.by_node_type
                else None
            ),
            "format": self.format,
            "warnings": list(self.warnings),
            "requested_delegates": self.requested_delegates,
            "graph": self.graph,
            "accelerator": self.accelerator,
            "model_size_mb": finite(self.model_size_mb),
            "exit_status": self.exit_status,
            "signal": self.signal,
        }
