"""The typed result model: what results.jsonl holds, as frozen values with versioned JSON.

Every reader and writer of a run folder (runner, journal, --resume, report, soak) passes these
types; JSON dicts exist only inside `to_json()` / `from_json()`.

Schema version history (bump SCHEMA_VERSION, say what changed here, and teach `from_json` to
upgrade the older form; loaders refuse newer versions):
  1 (farm 0.1): header {type, schema_version, run_id, plan, config, host, tool_versions,
    started_at}; cell {type, key, serial, server, device{model, soc, sdk, abi, profile}, model,
    model_sha256, binary_sha256, delegate, threads, repeat, status, reason, metrics (the
    parser's whole `to_dict()`, delegation included), delegation (a copy of
    metrics.delegation), command, log, started_at, duration_s, simulated, and where the runner
    knew them exit_status, retries, rerun}; summary {type, counts, bytes_pushed, finished_at,
    interrupted, missing}; resumed {type, at, done}. A later cell line for a key replaces an
    earlier one.
  2: cell `delegation` is stored once, at the top level (no longer inside `metrics`);
    `metrics` loses the parser's `status`, `exit_status` and `delegation`; `exit_status` and
    `retries` are always present; v1 `rerun` is folded into `retries`; `resumed` says the
    `schema_version` of the lines after it (a v1 run resumed by this farm goes on in v2).
    Header and summary unchanged apart from the version.
  3: cell `delegate` is the delegate variant's label (`gpu`, `gpu-fp16`, `nnapi:google-edgetpu`,
    `external:qnn`; user-given or derived from the options) and `delegate_kind` its kind; `verdict`
    says whether the requested delegate really ran (`full`, `partial`, `none`, `not_applied`;
    null when no delegate was asked for or the log does not say); `tool_flags` the extra
    benchmark_model flags passed verbatim; `binary` where the binary came from ({abi, source,
    sha256, translated}). Older lines get `delegate_kind` from the label and null for the rest.
    Cell `thermal` {before, after: snapshot {at, hottest{name, temp_c},
    thermal_status, battery{level, temp_c, status, plugged}, clusters[{cpus, cur_khz, max_khz,
    cap_khz}], zones_source, zones[{name, temp_c}]} or null, limit_c, waited_s, gate ("cool",
    "timeout" or null), samples, max_status, capped} (farm/results/provenance.py), and the
    verdicts `hot` and `throttled` (booleans; false when a line has none). The header's config
    gains cooldown, run_delay_s, order, seed (the seed the run's shuffle used), min_battery,
    battery_wait_s, stay_awake, cpu_affinity, governor, thermal_sample_s, and the header
    `inventories` (each device's own inventory, by serial). Older lines read with thermal null
    and both verdicts false. Cell `accuracy`, the check of
    the cell's outputs on fixed inputs ({status: ok/inaccurate/unsupported/failed, reference:
    device-cpu/host-litert, reason, fallback, simulated, tolerance, inputs, output,
    reference_output, command, log, tensors: [{name, dtype, shape, max_abs, mean_abs, rel,
    quanta, cosine, top1, top5, nonfinite, quantized}]}); an inaccurate cell is marked "inaccurate".
    Header `labels`: {name: value} given with `farm run --label NAME=VALUE` or `labels:` in
    farm.yaml (a commit, a build number); absent in older headers, read as {}.
"""

from __future__ import annotations

import math
import platform
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farm.android.info import DeviceInfo
from farm.android.inventory import Inventory
from farm.errors import GATE_FAILED
from farm.results.provenance import Thermal

if TYPE_CHECKING:
    from farm.results.compare import Comparison

SCHEMA_VERSION = 3

_TOOLS = ("farm", "adbutils", "ai-edge-litert", "pandas", "pydantic", "rich", "typer")


class SchemaError(ValueError):
    """A results line that is not what its schema version says it is."""


class Status(str, Enum):
    """A cell's outcome. The first three are results the tool gave; the rest mean the run of
    that cell is incomplete (a later `--resume` runs it again)."""

    OK = "ok"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"
    TIMEOUT = "timeout"
    DEVICE_LOST = "device_lost"
    ERROR = "error"

    @property
    def complete(self) -> bool:
        """True when the tool gave a result (nothing to run again)."""
        return self in _COMPLETE

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:  # equal to its value, so it also finds "ok" in sets and dicts
        return str.__hash__(self)


_COMPLETE = frozenset({Status.OK, Status.FAILED, Status.UNSUPPORTED})
STATUSES: tuple[Status, ...] = tuple(Status)


class Verdict(str, Enum):
    """Whether the delegate a cell asked for really ran, as the tool's output says."""

    FULL = "full"  # the delegate runs the whole graph
    PARTIAL = "partial"  # some nodes on the delegate, the rest on the CPU
    NONE = "none"  # created and applied, but took no node: the graph ran on the CPU
    NOT_APPLIED = "not_applied"  # could not be loaded, created or applied

    @property
    def fallback(self) -> bool:
        """True when the graph ran on the CPU instead of the requested delegate."""
        return self in (Verdict.NONE, Verdict.NOT_APPLIED)

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:
        return str.__hash__(self)


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def host_info() -> dict[str, str]:
    """The machine that ran farm."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def tool_versions() -> dict[str, str | None]:
    """Versions of farm and the libraries that shape its results (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def json_safe(value: Any) -> Any:
    """The value with NaN/Infinity replaced by None, tuples by lists, Paths by strings."""
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return str(value)


# ---------------------------------------------------------------------------- field readers


def _obj(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise SchemaError(f"{what}: expected an object, got {type(data).__name__}")
    return data


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None or value == "" else str(value)


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _int(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = _opt_int(data, key)
    return default if value is None else value


def _opt_num(data: Mapping[str, Any], key: str) -> float | int | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _strs(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if v is not None)
    return ()


# ---------------------------------------------------------------------------- cell parts


@dataclass(frozen=True)
class DeviceSummary:
    """The compact device facts stored in every cell line."""

    model: str = ""
    soc: str = ""
    sdk: int | None = None
    abi: str = ""
    profile: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `device` object of a cell line."""
        return {
            "model": self.model,
            "soc": self.soc,
            "sdk": self.sdk,
            "abi": self.abi,
            "profile": self.profile,
        }

    @classmethod
    def of(cls, info: DeviceInfo) -> DeviceSummary:
        """The summary of what discovery knows about a device."""
        return cls(model=info.model, soc=info.soc, sdk=info.sdk, abi=info.abi, profile=info.profile)

    @classmethod
    def from_json(cls, data: Any) -> DeviceSummary:
        """Read the `device` object (missing keys are empty)."""
        if data is None:
            return cls()
        d = _obj(data, "device")
        return cls(
            model=_str(d, "model"),
            soc=_str(d, "soc"),
            sdk=_opt_int(d, "sdk"),
            abi=_str(d, "abi"),
            profile=_opt_str(d, "profile"),
        )


@dataclass(frozen=True)
class Delegation:
    """What the tool's log says the delegates took: names, nodes, partitions, coverage."""

    delegates: tuple[str, ...] = ()
    nodes_delegated: int | None = None
    nodes_total: int | None = None
    partitions: int | None = None
    kernels: int | None = None
    coverage: str | None = None  # "full", "partial", "none", or None when the log is silent

    def to_json(self) -> dict[str, Any]:
        """The `delegation` object of a cell line (the parser's shape)."""
        return {
            "delegates": list(self.delegates),
            "nodes_delegated": self.nodes_delegated,
            "nodes_total": self.nodes_total,
            "partitions": self.partitions,
            "kernels": self.kernels,
            "coverage": self.coverage,
        }

    @classmethod
    def from_json(cls, data: Any) -> Delegation | None:
        """Read a `delegation` object; None stays None."""
        if data is None:
            return None
        d = _obj(data, "delegation")
        return cls(
            delegates=_strs(d, "delegates"),
            nodes_delegated=_opt_int(d, "nodes_delegated"),
            nodes_total=_opt_int(d, "nodes_total"),
            partitions=_opt_int(d, "partitions"),
            kernels=_opt_int(d, "kernels"),
            coverage=_opt_str(d, "coverage"),
        )


@dataclass(frozen=True)
class OpTypeStat:
    """One row of the op profile summarised by node type."""

    node_type: str
    count: int | None
    avg_ms: float | int | None
    percent: float | int | None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "node_type": self.node_type,
            "count": self.count,
            "avg_ms": self.avg_ms,
            "percent": self.percent,
        }

    @classmethod
    def from_json(cls, data: Any) -> OpTypeStat:
        """Read one op-profile row."""
        d = _obj(data, "op_profile row")
        return cls(
            node_type=_str(d, "node_type"),
            count=_opt_int(d, "count"),
            avg_ms=_opt_num(d, "avg_ms"),
            percent=_opt_num(d, "percent"),
        )


# Numeric metrics as the parser names them (µs for times, MB for memory).
_NUMBERS = (
    "init_us",
    "first_inference_us",
    "warmup_avg_us",
    "inference_avg_us",
    "inference_std_us",
    "inference_min_us",
    "inference_max_us",
    "inference_median_us",
    "inference_p5_us",
    "inference_p95_us",
    "memory_init_mb",
    "memory_overall_mb",
    "memory_peak_mb",
    "model_size_mb",
)


@dataclass(frozen=True)
class Metrics:
    """What one benchmark_model invocation printed: timings in µs, memory in MB, messages."""

    threads: int | None = None
    init_us: float | int | None = None
    first_inference_us: float | int | None = None
    warmup_avg_us: float | int | None = None
    warmup_count: int | None = None
    inference_avg_us: float | int | None = None
    inference_std_us: float | int | None = None
    inference_count: int | None = None
    inference_min_us: float | int | None = None
    inference_max_us: float | int | None = None
    inference_median_us: float | int | None = None
    inference_p5_us: float | int | None = None
    inference_p95_us: float | int | None = None
    memory_init_mb: float | int | None = None
    memory_overall_mb: float | int | None = None
    memory_peak_mb: float | int | None = None
    model_size_mb: float | int | None = None
    op_profile: tuple[OpTypeStat, ...] | None = None
    format: str | None = None
    failure_kind: str | None = None
    signal: str | None = None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    requested_delegates: tuple[str, ...] = ()
    graph: str | None = None
    accelerator: str | None = None

    @property
    def memory_mb(self) -> float | int | None:
        """The peak memory the tool reported, else the overall footprint."""
        return self.memory_peak_mb or self.memory_overall_mb

    def to_json(self) -> dict[str, Any]:
        """The `metrics` object of a cell line."""
        out: dict[str, Any] = {
            "threads": self.threads,
            "warmup_count": self.warmup_count,
            "inference_count": self.inference_count,
        }
        for name in _NUMBERS:
            out[name] = getattr(self, name)
        out.update(
            op_profile=(
                [r.to_json() for r in self.op_profile] if self.op_profile is not None else None
            ),
            format=self.format,
            failure_kind=self.failure_kind,
            signal=self.signal,
            errors=list(self.errors),
            warnings=list(self.warnings),
            requested_delegates=list(self.requested_delegates),
            graph=self.graph,
            accelerator=self.accelerator,
        )
        return out

    @classmethod
    def from_json(cls, data: Any) -> Metrics | None:
        """Read a `metrics` object (the parser's `to_dict()` is one); None stays None."""
        if data is None:
            return None
        d = _obj(data, "metrics")
        rows = d.get("op_profile")
        numbers = {name: _opt_num(d, name) for name in _NUMBERS}
        return cls(
            threads=_opt_int(d, "threads"),
            warmup_count=_opt_int(d, "warmup_count"),
            inference_count=_opt_int(d, "inference_count"),
            op_profile=(
                tuple(OpTypeStat.from_json(r) for r in rows) if isinstance(rows, list) else None
            ),
            format=_opt_str(d, "format"),
            failure_kind=_opt_str(d, "failure_kind"),
            signal=_opt_str(d, "signal"),
            errors=_strs(d, "errors"),
            warnings=_strs(d, "warnings"),
            requested_delegates=_strs(d, "requested_delegates"),
            graph=_opt_str(d, "graph"),
            accelerator=_opt_str(d, "accelerator"),
            **numbers,
        )


@dataclass(frozen=True)
class BinaryInfo:
    """Which benchmark_model build a cell ran: its ABI, where farm found it, its sha256."""

    abi: str = ""
    source: str = ""  # config, device, cache
    sha256: str | None = None
    translated: bool = False  # an ABI the device runs only under translation

    def to_json(self) -> dict[str, Any]:
        """The `binary` object of a cell line."""
        return {
            "abi": self.abi,
            "source": self.source,
            "sha256": self.sha256,
            "translated": self.translated,
        }

    @classmethod
    def from_json(cls, data: Any) -> BinaryInfo | None:
        """Read a `binary` object; None stays None."""
        if data is None:
            return None
        d = _obj(data, "binary")
        return cls(
            abi=_str(d, "abi"),
            source=_str(d, "source"),
            sha256=_opt_str(d, "sha256"),
            translated=bool(d.get("translated")),
        )


# Marks that say the number is not the requested configuration's: never best, never a speed-up.
DISQUALIFYING_MARKS = frozenset({"fallback", "inaccurate"})


def disqualified(marks: Iterable[str]) -> bool:
    """True when any of these marks keeps a number from standing for its configuration."""
    return any(m.strip() in DISQUALIFYING_MARKS for m in marks)


class AccuracyStatus(str, Enum):
    """What the accuracy check of a cell found."""

    OK = "ok"  # within the tolerance of its reference
    INACCURATE = "inaccurate"  # over the tolerance: the numbers are in the reason
    UNSUPPORTED = "unsupported"  # the binary cannot feed inputs or write outputs
    FAILED = "failed"  # the accuracy run gave no outputs to compare

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:
        return str.__hash__(self)


@dataclass(frozen=True)
class TensorAccuracy:
    """One output tensor against the reference: errors in dequantized units."""

    name: str
    dtype: str = ""
    shape: tuple[int, ...] = ()
    max_abs: float | None = None
    mean_abs: float | None = None
    rel: float | None = None  # max_abs / the larger of max |reference| and max |output|
    quanta: float | None = None  # max_abs in steps of the output's scale (quantized outputs)
    cosine: float | None = None
    top1: float | None = None  # share of rows whose top-1 class agrees (classifier-shaped)
    top5: float | None = None  # share of the reference's top-5 classes in the output's top 5
    nonfinite: int = 0  # NaN/Inf where the reference is finite (or differs)
    quantized: bool = False  # compared after dequantizing with the tensor's scale/zero point

    def to_json(self) -> dict[str, Any]:
        """One `tensors` entry of a cell's `accuracy`."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "max_abs": self.max_abs,
            "mean_abs": self.mean_abs,
            "rel": self.rel,
            "quanta": self.quanta,
            "cosine": self.cosine,
            "top1": self.top1,
            "top5": self.top5,
            "nonfinite": self.nonfinite,
            "quantized": self.quantized,
        }

    @classmethod
    def from_json(cls, data: Any) -> TensorAccuracy:
        """Read one `tensors` entry."""
        d = _obj(data, "accuracy tensor")
        shape = d.get("shape")
        return cls(
            name=_str(d, "name"),
            dtype=_str(d, "dtype"),
            shape=tuple(int(n) for n in shape if isinstance(n, int))
            if isinstance(shape, list)
            else (),
            max_abs=_opt_float(d, "max_abs"),
            mean_abs=_opt_float(d, "mean_abs"),
            rel=_opt_float(d, "rel"),
            quanta=_opt_float(d, "quanta"),
            cosine=_opt_float(d, "cosine"),
            top1=_opt_float(d, "top1"),
            top5=_opt_float(d, "top5"),
            nonfinite=_int(d, "nonfinite"),
            quantized=bool(d.get("quantized")),
        )


@dataclass(frozen=True)
class Accuracy:
    """A cell's outputs on fixed inputs compared with a reference (the same device's CPU, or
    LiteRT on the host for the CPU itself); files are relative to the run folder."""

    status: AccuracyStatus
    reference: str = ""  # device-cpu | host-litert
    reason: str | None = None
    fallback: bool = False  # the delegate fell back: what was compared is the CPU's output
    simulated: bool = False  # outputs from a virtual phone's stand-in
    tolerance: Mapping[str, float] = field(default_factory=dict)
    tensors: tuple[TensorAccuracy, ...] = ()
    inputs: tuple[str, ...] = ()
    output: str | None = None
    reference_output: str | None = None
    command: str | None = None
    log: str | None = None

    @property
    def max_abs(self) -> float | None:
        """The largest absolute error over the output tensors."""
        return _worst([t.max_abs for t in self.tensors], max)

    @property
    def rel(self) -> float | None:
        """The largest relative error over the output tensors."""
        return _worst([t.rel for t in self.tensors], max)

    @property
    def cosine(self) -> float | None:
        """The lowest cosine similarity over the output tensors."""
        return _worst([t.cosine for t in self.tensors], min)

    @property
    def top1(self) -> float | None:
        """The lowest top-1 agreement over the classifier-shaped output tensors."""
        return _worst([t.top1 for t in self.tensors], min)

    def to_json(self) -> dict[str, Any]:
        """The `accuracy` object of a cell line."""
        return {
            "status": self.status.value,
            "reference": self.reference,
            "reason": self.reason,
            "fallback": self.fallback,
            "simulated": self.simulated,
            "tolerance": dict(self.tolerance),
            "tensors": [t.to_json() for t in self.tensors],
            "inputs": list(self.inputs),
            "output": self.output,
            "reference_output": self.reference_output,
            "command": self.command,
            "log": self.log,
        }

    @classmethod
    def from_json(cls, data: Any) -> Accuracy | None:
        """Read an `accuracy` object; None stays None."""
        if data is None:
            return None
        d = _obj(data, "accuracy")
        try:
            status = AccuracyStatus(d.get("status"))
        except ValueError:
            known = ", ".join(s.value for s in AccuracyStatus)
            raise SchemaError(
                f"cell: unknown accuracy status {d.get('status')!r} (known: {known})"
            ) from None
        tolerance = d.get("tolerance")
        tensors = d.get("tensors")
        return cls(
            status=status,
            reference=_str(d, "reference"),
            reason=_opt_str(d, "reason"),
            fallback=bool(d.get("fallback")),
            simulated=bool(d.get("simulated")),
            tolerance=(
                {str(k): float(v) for k, v in tolerance.items() if _is_number(v)}
                if isinstance(tolerance, Mapping)
                else {}
            ),
            tensors=tuple(TensorAccuracy.from_json(t) for t in tensors)
            if isinstance(tensors, list)
            else (),
            inputs=_strs(d, "inputs"),
            output=_opt_str(d, "output"),
            reference_output=_opt_str(d, "reference_output"),
            command=_opt_str(d, "command"),
            log=_opt_str(d, "log"),
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _opt_float(data: Mapping[str, Any], key: str) -> float | None:
    value = _opt_num(data, key)
    return None if value is None else float(value)


def _worst(values: list[float | None], pick: Any) -> float | None:
    known = [v for v in values if v is not None]
    return float(pick(known)) if known else None


def kind_of_label(label: str) -> str:
    """The delegate kind a schema-1/2 label names (`external:qnn` → external)."""
    return label.partition(":")[0]


def _verdict(value: Any) -> Verdict | None:
    if value is None:
        return None
    try:
        return Verdict(value)
    except ValueError:
        known = ", ".join(v.value for v in Verdict)
        raise SchemaError(f"cell: unknown verdict {value!r} (known: {known})") from None


def _status(value: Any, what: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise SchemaError(f"{what}: unknown cell status {value!r} (known: {known})") from None


def _retries(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v > 0}


@dataclass(frozen=True)
class CellResult:
    """One finished cell: what ran, where, with which binary and model, and what came out."""

    key: str
    serial: str
    server: str
    device: DeviceSummary
    model: str
    model_sha256: str
    delegate: str
    threads: int
    repeat: int
    status: Status
    reason: str | None = None
    binary_sha256: str | None = None
    metrics: Metrics | None = None
    delegation: Delegation | None = None
    command: str | None = None
    log: str | None = None  # relative to the run folder
    started_at: str | None = None
    duration_s: float | None = None
    simulated: bool = False
    exit_status: int | None = None
    retries: Mapping[str, int] = field(default_factory=dict)
    delegate_kind: str = ""
    verdict: Verdict | None = None
    tool_flags: Mapping[str, str] = field(default_factory=dict)
    binary: BinaryInfo | None = None
    thermal: Thermal | None = None  # temperatures, battery, frequencies; the cool-down wait
    hot: bool = False  # the cell started above the cool-down limit
    throttled: bool = False  # thermal status rose, or a cluster was capped, while it ran
    accuracy: Accuracy | None = None  # outputs on fixed inputs against the reference

    @property
    def complete(self) -> bool:
        """True when the tool gave a result (ok, failed, unsupported)."""
        return self.status.complete

    @property
    def fallback(self) -> bool:
        """True when the cell has a number but the requested delegate did not run it."""
        return self.status is Status.OK and self.verdict is not None and self.verdict.fallback

    @property
    def inaccurate(self) -> bool:
        """True when the cell's outputs were over the tolerance of their reference."""
        return self.accuracy is not None and self.accuracy.status is AccuracyStatus.INACCURATE

    @property
    def marks(self) -> tuple[str, ...]:
        """What a reader must know before trusting this cell's number: "fallback",
        "inaccurate", "hot", "throttled". Those in DISQUALIFYING_MARKS keep it from being a
        "best" configuration or a speed-up against the CPU."""
        flags = {
            "fallback": self.fallback,
            "inaccurate": self.status is Status.OK and self.inaccurate,
            "hot": self.hot,
            "throttled": self.throttled,
        }
        return tuple(name for name, on in flags.items() if on)

    @property
    def comparable(self) -> bool:
        """True when the cell's latency may stand for its configuration: ok, and no
        disqualifying mark (a hot or throttled cell still counts, marked)."""
        return self.status is Status.OK and not disqualified(self.marks)

    def to_json(self) -> dict[str, Any]:
        """The cell line of results.jsonl (current schema)."""
        return {
            "type": "cell",
            "key": self.key,
            "serial": self.serial,
            "server": self.server,
            "device": self.device.to_json(),
            "model": self.model,
            "model_sha256": self.model_sha256,
            "binary_sha256": self.binary_sha256,
            "delegate": self.delegate,
            "threads": self.threads,
            "repeat": self.repeat,
            "status": self.status.value,
            "reason": self.reason,
            "metrics": self.metrics.to_json() if self.metrics is not None else None,
            "delegation": self.delegation.to_json() if self.delegation is not None else None,
            "command": self.command,
            "log": self.log,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "simulated": self.simulated,
            "exit_status": self.exit_status,
            "retries": dict(self.retries),
            "delegate_kind": self.delegate_kind,
            "verdict": self.verdict.value if self.verdict is not None else None,
            "tool_flags": dict(self.tool_flags),
            "binary": self.binary.to_json() if self.binary is not None else None,
            "thermal": self.thermal.to_json() if self.thermal is not None else None,
            "hot": self.hot,
            "throttled": self.throttled,
            "accuracy": self.accuracy.to_json() if self.accuracy is not None else None,
        }

    @classmethod
    def from_json(cls, data: Any, version: int = SCHEMA_VERSION) -> CellResult:
        """Read a cell line written with schema `version` (older versions are upgraded)."""
        d = _obj(data, "cell")
        metrics = d.get("metrics")
        delegation = d.get("delegation")
        retries = _retries(d.get("retries"))
        if version < 2:
            if delegation is None and isinstance(metrics, Mapping):
                delegation = metrics.get("delegation")
            rerun = _opt_int(d, "rerun")
            if rerun:
                retries["rerun"] = retries.get("rerun", 0) + rerun
        exit_status = _opt_int(d, "exit_status")
        if exit_status is None and isinstance(metrics, Mapping):
            exit_status = _opt_int(metrics, "exit_status")
        threads = _opt_int(d, "threads")
        repeat = _opt_int(d, "repeat")
        if threads is None or repeat is None:
            raise SchemaError("cell: threads and repeat must be integers")
        duration = d.get("duration_s")
        delegate = _str(d, "delegate")
        flags = d.get("tool_flags")
        return cls(
            key=_str(d, "key"),
            serial=_str(d, "serial"),
            server=_str(d, "server"),
            device=DeviceSummary.from_json(d.get("device")),
            model=_str(d, "model"),
            model_sha256=_str(d, "model_sha256"),
            delegate=delegate,
            threads=threads,
            repeat=repeat,
            status=_status(d.get("status"), "cell"),
            reason=_opt_str(d, "reason"),
            binary_sha256=_opt_str(d, "binary_sha256"),
            metrics=Metrics.from_json(metrics),
            delegation=Delegation.from_json(delegation),
            command=_opt_str(d, "command"),
            log=_opt_str(d, "log"),
            started_at=_opt_str(d, "started_at"),
            duration_s=float(duration) if isinstance(duration, (int, float)) else None,
            simulated=bool(d.get("simulated")),
            exit_status=exit_status,
            retries=retries,
            delegate_kind=_str(d, "delegate_kind") or kind_of_label(delegate),
            verdict=_verdict(d.get("verdict")) if version >= 3 else None,
            tool_flags=(
                {str(k): str(v) for k, v in flags.items()} if isinstance(flags, Mapping) else {}
            ),
            binary=BinaryInfo.from_json(d.get("binary")),
            thermal=Thermal.from_json(d.get("thermal")),
            hot=bool(d.get("hot")),
            throttled=bool(d.get("throttled")),
            accuracy=Accuracy.from_json(d.get("accuracy")),
        )


# ---------------------------------------------------------------------------- the plan record


@dataclass(frozen=True)
class PlannedCell:
    """A cell as the run header lists it; `reason` says why it was set aside, if it was."""

    key: str
    serial: str
    server: str
    model: str
    model_sha256: str
    delegate: str
    threads: int
    repeat: int
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The cell entry of the header's plan."""
        out: dict[str, Any] = {
            "key": self.key,
            "serial": self.serial,
            "server": self.server,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "delegate": self.delegate,
            "threads": self.threads,
            "repeat": self.repeat,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, data: Any) -> PlannedCell:
        """Read one planned cell."""
        d = _obj(data, "planned cell")
        return cls(
            key=_str(d, "key"),
            serial=_str(d, "serial"),
            server=_str(d, "server"),
            model=_str(d, "model"),
            model_sha256=_str(d, "model_sha256"),
            delegate=_str(d, "delegate"),
            threads=_int(d, "threads", 1),
            repeat=_int(d, "repeat", 0),
            reason=_opt_str(d, "reason"),
        )


@dataclass(frozen=True)
class PlanRecord:
    """The whole plan as the header keeps it: inputs, runnable cells and cells set aside."""

    devices: tuple[Mapping[str, Any], ...] = ()  # DeviceInfo.to_dict() of every device
    models: tuple[Mapping[str, str], ...] = ()  # {name, path, sha256}
    delegates: tuple[Mapping[str, Any], ...] = ()  # the delegate options with their label
    threads: tuple[int, ...] = ()
    repeats: int = 1
    cells: tuple[PlannedCell, ...] = ()
    unsupported: tuple[PlannedCell, ...] = ()
    unavailable: tuple[PlannedCell, ...] = ()

    def all_cells(self) -> tuple[PlannedCell, ...]:
        """Every planned cell: runnable, unsupported and unavailable."""
        return self.cells + self.unsupported + self.unavailable

    @property
    def serials(self) -> list[str]:
        """Every device serial of the plan, online at planning time or not, in plan order."""
        seen: dict[str, None] = {}
        for d in self.devices:
            if d.get("serial"):
                seen.setdefault(str(d["serial"]), None)
        for c in self.all_cells():
            seen.setdefault(c.serial, None)
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        """The `plan` object of the header."""
        return {
            "devices": [dict(d) for d in self.devices],
            "models": [dict(m) for m in self.models],
            "delegates": [dict(d) for d in self.delegates],
            "threads": list(self.threads),
            "repeats": self.repeats,
            "cells": [c.to_json() for c in self.cells],
            "unsupported": [c.to_json() for c in self.unsupported],
            "unavailable": [c.to_json() for c in self.unavailable],
        }

    @classmethod
    def from_json(cls, data: Any) -> PlanRecord:
        """Read the header's plan."""
        d = _obj(data if data is not None else {}, "plan")

        def objects(key: str) -> tuple[Mapping[str, Any], ...]:
            value = d.get(key)
            return (
                tuple(v for v in value if isinstance(v, Mapping)) if isinstance(value, list) else ()
            )

        def cells(key: str) -> tuple[PlannedCell, ...]:
            return tuple(PlannedCell.from_json(c) for c in objects(key))

        threads = d.get("threads")
        return cls(
            devices=objects("devices"),
            models=tuple({str(k): str(v) for k, v in m.items()} for m in objects("models")),
            delegates=objects("delegates"),
            threads=tuple(int(t) for t in threads if isinstance(t, int))
            if isinstance(threads, list)
            else (),
            repeats=_int(d, "repeats", 1),
            cells=cells("cells"),
            unsupported=cells("unsupported"),
            unavailable=cells("unavailable"),
        )


# ---------------------------------------------------------------------------- header, summary


@dataclass(frozen=True)
class RunHeader:
    """The first line of results.jsonl: the whole plan, the config and where it ran."""

    run_id: str
    plan: PlanRecord
    config: Mapping[str, Any] | None = None  # the resolved farm.yaml (Config JSON)
    host: Mapping[str, str] = field(default_factory=host_info)
    tool_versions: Mapping[str, str | None] = field(default_factory=tool_versions)
    started_at: str = field(default_factory=now_iso)
    schema_version: int = SCHEMA_VERSION  # the version the line was written with
    # Each online device's own inventory when the run began, by serial (absent before).
    inventories: Mapping[str, Inventory] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # e.g. {"commit": "abc123"}

    def to_json(self) -> dict[str, Any]:
        """The header line (always written with the current schema)."""
        return {
            "type": "header",
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "plan": self.plan.to_json(),
            "config": dict(self.config) if self.config is not None else None,
            "host": dict(self.host),
            "tool_versions": dict(self.tool_versions),
            "started_at": self.started_at,
            "inventories": {k: v.to_json() for k, v in self.inventories.items()},
            "labels": dict(self.labels),
        }

    @classmethod
    def from_json(cls, data: Any) -> RunHeader:
        """Read a header line of any known schema version."""
        d = _obj(data, "header")
        version = d.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaError(f"header has no valid schema_version ({version!r})")
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"written with results schema {version}, newer than this farm reads "
                f"(up to {SCHEMA_VERSION}); upgrade farm to read it"
            )
        config = d.get("config")
        host = d.get("host")
        tools = d.get("tool_versions")
        labels = d.get("labels")
        return cls(
            run_id=_str(d, "run_id"),
            plan=PlanRecord.from_json(d.get("plan")),
            config=config if isinstance(config, Mapping) else None,
            host={str(k): str(v) for k, v in host.items()} if isinstance(host, Mapping) else {},
            tool_versions=(
                {str(k): None if v is None else str(v) for k, v in tools.items()}
                if isinstance(tools, Mapping)
                else {}
            ),
            started_at=_str(d, "started_at"),
            schema_version=version,
            inventories=_inventories(d.get("inventories")),
            labels=(
                {str(k): str(v) for k, v in labels.items() if v is not None}
                if isinstance(labels, Mapping)
                else {}
            ),
        )


def _inventories(data: Any) -> dict[str, Inventory]:
    """The header's inventories by serial ({} when a header has none)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SchemaError(f"header inventories is not an object ({type(data).__name__})")
    try:
        return {str(serial): Inventory.from_json(value) for serial, value in data.items()}
    except (ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"header inventories: {exc}") from None


def count_statuses(cells: Iterable[CellResult]) -> dict[Status, int]:
    """Cells per status, every status present (0 when none)."""
    found = Counter(c.status for c in cells)
    return {s: found.get(s, 0) for s in Status}


@dataclass(frozen=True)
class RunSummary:
    """The last line of results.jsonl: how many cells ended in each status."""

    counts: Mapping[Status, int]
    bytes_pushed: int = 0
    interrupted: bool = False
    missing: int = 0  # planned cells with no line (a stopped run)
    finished_at: str = field(default_factory=now_iso)

    @property
    def exit_code(self) -> int:
        """130 when interrupted; 0 when every cell got a result from the tool, else 1."""
        return exit_code_for(self.counts, interrupted=self.interrupted)

    def to_json(self) -> dict[str, Any]:
        """The summary line."""
        return {
            "type": "summary",
            "counts": {s.value: int(self.counts.get(s, 0)) for s in Status},
            "bytes_pushed": self.bytes_pushed,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        """Read a summary line."""
        d = _obj(data, "summary")
        counts = d.get("counts")
        by_status = {s: 0 for s in Status}
        if isinstance(counts, Mapping):
            for name, n in counts.items():
                by_status[_status(name, "summary")] = int(n) if isinstance(n, int) else 0
        return cls(
            counts=by_status,
            bytes_pushed=_int(d, "bytes_pushed"),
            interrupted=bool(d.get("interrupted")),
            missing=_int(d, "missing"),
            finished_at=_str(d, "finished_at"),
        )


def exit_code_for(
    counts: Mapping[Status, int], *, interrupted: bool = False, gate_failed: bool = False
) -> int:
    """130 when interrupted; 4 when the `--fail-on` gate found something it names; 0 when
    every cell got a result from the tool (ok/failed/unsupported), else 1."""
    if interrupted:
        return 130
    if gate_failed:
        return GATE_FAILED
    return 1 if any(n for s, n in counts.items() if not Status(s).complete) else 0


@dataclass(frozen=True)
class ResumeMark:
    """A `resumed` line: `farm run --resume` continued the run here. The lines after it are
    written with its `schema_version` (a run started by an older farm may be resumed by a newer
    one)."""

    at: str
    done: int
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The resumed line."""
        return {
            "type": "resumed",
            "at": self.at,
            "done": self.done,
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_json(cls, data: Any, version: int) -> ResumeMark:
        """Read a resumed line; `version` is the schema of the lines before it."""
        d = _obj(data, "resumed")
        written = _opt_int(d, "schema_version") or version
        if written > SCHEMA_VERSION:
            raise SchemaError(
                f"resumed with results schema {written}, newer than this farm reads "
                f"(up to {SCHEMA_VERSION})"
            )
        return cls(at=_str(d, "at"), done=_int(d, "done"), schema_version=written)


# ---------------------------------------------------------------------------- whole runs


@dataclass(frozen=True)
class Run:
    """A run folder as read back: header, the latest line per cell key, summary."""

    path: Path  # results.jsonl
    header: RunHeader
    cells: tuple[CellResult, ...]
    summary: RunSummary | None = None
    resumes: tuple[ResumeMark, ...] = ()
    warnings: tuple[str, ...] = ()
    superseded: int = 0  # cell lines replaced by a later line for the same key (resumed runs)

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return self.path.parent

    @property
    def done_keys(self) -> set[str]:
        """Keys of cells that reached a result the tool gave (not to be run again)."""
        return {c.key for c in self.cells if c.complete and c.key}


@dataclass
class RunOutcome:
    """What one `farm run` produced: the run folder, its cells and how it ended."""

    run_dir: Path
    counts: Counter[Status] = field(default_factory=Counter)
    bytes_pushed: int = 0
    interrupted: bool = False
    cells: list[CellResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seed: int | None = None  # the seed of the run's cell order
    gate_failed: bool = False  # `--fail-on` found something it names (exit code 4)
    comparison: Comparison | None = None  # against `--baseline`, when one was given
    fail_on: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """130 when interrupted; 4 when the gate failed; 0 when every cell got a result from
        the tool, else 1."""
        return exit_code_for(
            self.counts, interrupted=self.interrupted, gate_failed=self.gate_failed
        )
