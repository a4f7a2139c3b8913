"""Line events: what one cleaned line of the tool's output says, on its own.

``classify`` turns a Line into a typed event (a start marker, a flag echo, a timing summary, a
failure line, a delegation line, …) or None for a line that says nothing to farm. It reads no
state: the few lines that mean something only after another (rows of an op-profile table,
entries of the GPU delegate's list of ops it leaves to the CPU, the continuation of an error
message, a crash report, a wrapped command line) are read by the assembler, which knows what
came before.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import NamedTuple

from farm.bench.parse.delegation import provider
from farm.bench.parse.failures import fails_run
from farm.bench.parse.model import RunStats
from farm.bench.parse.read import Line
from farm.bench.parse.values import NUM_TOKEN, Number, ms_to_us, num

# --------------------------------------------------------------------------- the events


class Starting(NamedTuple):
    """``STARTING!``: the tool began."""


class Command(NamedTuple):
    """A ``benchmark_model --flag=value …`` command line (a shell trace, a wrapper's echo)."""

    text: str
    flags: list[tuple[str, str]]  # (flag with _ for -, value)


class Echo(NamedTuple):
    """A parameter echo, ``Num threads: [4]``."""

    key: str  # the description, lower case
    flag: str | None  # the flag it echoes, when known
    value: str


class Stats(NamedTuple):
    """A ``count=…`` line: the statistics of the warm-up or the timed runs."""

    stats: RunStats


class Running(NamedTuple):
    """``Running benchmark for …``: the warm-up or the timed runs begin."""


class Summary(NamedTuple):
    """The timing summary line, ``Inference timings in us: Init: …`` (or an older form)."""

    format: str  # tf2, tf1 or tf1_contrib
    values: dict[str, Number | None]  # lower-case label → µs


class InitLine(NamedTuple):
    """A line of the initialization phase that carries no value (``Going to apply …``)."""


class Session(NamedTuple):
    """``Initialized session in 12.3ms.``"""

    init_us: Number | None


class Loaded(NamedTuple):
    """``Loaded model /path``."""

    graph: str


class ModelSize(NamedTuple):
    """``The input model file size (MB): 3.4``."""

    mb: Number | None


class Footprint(NamedTuple):
    """The memory footprint line at the end: init and overall, in MB."""

    init_mb: Number | None
    overall_mb: Number | None
    label: str  # "delta" (TF ≥ 2.8) or "peak" (the older label)


class PeakMemory(NamedTuple):
    """``Overall peak memory footprint (MB) via periodic monitoring: …``."""

    mb: Number | None


class Rss(NamedTuple):
    """``- VmRSS : 12 MB`` and its siblings at the end of a run."""

    kind: str  # VmRSS, RssAnnon or RssFile + RssShmem
    mb: Number | None


class Explicit(NamedTuple):
    """``Explicitly applied X delegate, and the model graph will be …`` (or ``Though …``)."""

    provider: str
    coverage: str  # full, partial, none
    kernels: int | None  # None when the line does not say


class Replacing(NamedTuple):
    """The runtime's ``Replacing N out of M node(s) with delegate (K) node, …``."""

    kernel: str
    provider: str
    delegated: int
    total: int | None
    partitions: int


class CreatedFor(NamedTuple):
    """``Created TensorFlow Lite (XNNPACK) delegate for CPU.``"""

    name: str  # the delegate
    xnnpack_word: bool  # the line names XNNPACK: the runtime's default delegate, unless asked


class GpuKernels(NamedTuple):
    """``Created N GPU delegate kernels.``"""

    kernels: int


class DelegateCreated(NamedTuple):
    """``X delegate created.``"""

    provider: str


class DelegateSummary(NamedTuple):
    """A delegate's own ``X delegate: N nodes delegated out of M nodes with P partitions``."""

    kernel: str
    provider: str
    delegated: int
    total: int
    partitions: int


class GpuOps(NamedTuple):
    """``N operations will run on the GPU, and the remaining M …``."""

    on_gpu: int
    total: int


class GpuOpsHeader(NamedTuple):
    """``Following operations are not supported by GPU``: a list of entries follows."""

    msg: str


class FailedToApply(NamedTuple):
    """``Failed to apply X delegate.``"""

    msg: str
    provider: str | None
    fails_run: bool


class Error(NamedTuple):
    """An error line: ERROR/FATAL-prefixed (or logcat E/F), or a tool failure message."""

    msg: str
    fatal: bool
    fails_run: bool
    continues: bool  # unprefixed lines after it continue its message


class GaveUp(NamedTuple):
    """``Benchmarking failed.``: the tool stopped this invocation."""

    msg: str


class Notice(NamedTuple):
    """An informational line kept as a warning (``GPU acceleration is unsupported``, …)."""

    msg: str


class NotCreated(NamedTuple):
    """A requested delegate was never created: its library did not load, or the platform
    lacks it (``Unable to load external delegate from : …``, ``Could not create Hexagon
    delegate: …``, ``GPU acceleration is unsupported on this platform.``)."""

    provider: str
    msg: str


class PrefixedWarning(NamedTuple):
    """A WARN/WARNING-prefixed line, kept as a warning."""

    msg: str


class ProfileSection(NamedTuple):
    """The header of an op-profiling section."""

    init: bool  # the initialization's section, else the regular runs'


class Subgraph(NamedTuple):
    """``Primary graph (…) profile:``, ``Subgraph (…) profile:``, ``Delegate internal:``."""

    primary: bool


class TableTitle(NamedTuple):
    """``===== Run Order =====`` and the other op-profile table titles."""

    table: str  # run_order, top_by_time, by_node_type or other


class LiteRTResults(NamedTuple):
    """``===== BENCHMARK RESULTS =====``: LiteRT's results block begins."""


class LiteRTTiming(NamedTuple):
    """A timing line of LiteRT's block: ``Inference (avg): 1.25 ms (20 runs)``."""

    key: str  # lower case
    us: Number | None
    runs: int | None


class LiteRTMemory(NamedTuple):
    """A memory line of LiteRT's block: ``Peak memory: 12.5 MB``."""

    key: str  # init footprint, overall footprint or peak memory
    mb: Number | None


class Timings(NamedTuple):
    """``Timings (microseconds): count=…`` of an op-profiling section."""

    stats: RunStats | None


class NodesExecuted(NamedTuple):
    """``Number of nodes executed: N`` of an op-profiling section."""

    nodes: int | None


class Unreadable(NamedTuple):
    """A tool line recognised by its start whose values could not be read."""


class Other(NamedTuple):
    """Any other line: its meaning, if any, depends on what came before."""

    msg: str
    sev: str | None


Event = (
    Starting
    | Command
    | Echo
    | Stats
    | Running
    | Summary
    | InitLine
    | Session
    | Loaded
    | ModelSize
    | Footprint
    | PeakMemory
    | Rss
    | Explicit
    | Replacing
    | CreatedFor
    | GpuKernels
    | DelegateCreated
    | DelegateSummary
    | GpuOps
    | GpuOpsHeader
    | FailedToApply
    | Error
    | GaveUp
    | NotCreated
    | Notice
    | PrefixedWarning
    | ProfileSection
    | Subgraph
    | TableTitle
    | LiteRTResults
    | LiteRTTiming
    | LiteRTMemory
    | Timings
    | NodesExecuted
    | Unreadable
    | Other
)

# --------------------------------------------------------------------------- the grammar

# Lines known by how they start: each group names its reader below.
_DISPATCH = re.compile(
    r"""(?:
      (?P<stats>count=)
    | (?P<summary>(?:Average[ ])?[Ii]nference[ ]timings[ ]in[ ]us:)
    | (?P<running>Running[ ]benchmark[ ]for[ ])
    | (?P<starting>STARTING!)
    | (?P<session>Initialized[ ]session[ ]in[ ])
    | (?P<loaded>Loaded[ ]model[ ])
    | (?P<size>The[ ]input[ ]model[ ]file[ ]size[ ]\(MB\):)
    | (?P<mem>(?:Memory[ ]footprint[ ]delta[ ]from[ ]the[ ]start[ ]of[ ]the[ ]tool
                |Peak[ ]memory[ ]footprint)[ ]\(MB\):)
    | (?P<peak>Overall[ ]peak[ ]memory[ ]footprint[ ]\(MB\)[ ]via[ ]periodic[ ]monitoring:)
    | (?P<rss>[-+][ ](?:VmRSS|RssAnnon|RssFile[ ]\+[ ]RssShmem)\s*:)
    | (?P<explicit>Explicitly[ ]applied[ ]|Though[ ]\S+[ ]delegate[ ]is[ ]explicitly)
    | (?P<replacing>Replacing[ ]\d+[ ])
    | (?P<created>Created[ ])
    | (?P<failapply>Failed[ ]to[ ]apply[ ])
    | (?P<benchfail>Benchmarking[ ]failed)
    | (?P<going>Going[ ]to[ ]apply[ ])
    | (?P<title>={5,}[ ])
    | (?P<profinit>Profiling[ ]Info[ ]for[ ]Benchmark[ ]Initialization)
    | (?P<profrun>Operator-wise[ ]Profiling[ ]Info)
    | (?P<timings>Timings[ ]\(microseconds\):)
    | (?P<nodes>Number[ ]of[ ]nodes[ ]executed:)
    | (?P<subgraph>(?:Primary[ ]graph|Subgraph)[ ]\(.*profile:|Delegate[ ]internal:)
    | (?P<litert>(?:Model[ ]initialization|Warmup[ ]\((?:first|avg)\)
                |Inference[ ]\((?:avg|min|max|std)\)|Init[ ]footprint|Overall[ ]footprint
                |Peak[ ]memory)\s*:)
    | (?P<gpuops>(?:First[ ]\d+|\d+|No)[ ]operations[ ]will[ ]run[ ]on[ ]the[ ]GPU)
    | (?P<notcreated>\S+[ ]acceleration[ ]is[ ]unsupported
                    |Unable[ ]to[ ]load[ ]external[ ]delegate
                    |Could[ ]not[ ]create[ ]Hexagon[ ]delegate
                    |Hexagon[ ]Delegate[ ]is[ ]not[ ]supported
                    |nnapi[ ]error:[ ]unable[ ]to[ ]open[ ]library)
    | (?P<flagwarn>Unconsumed[ ]cmdline[ ]flags|Duplicate[ ]flags)
    )""",
    re.X,
)

_ECHO = re.compile(r"([^\[\]:]{1,80}?) ?: \[(.*)\]\s*$")
_KV = re.compile(r"(?<!\w)(\w+)=([^\s(]+)")
_FLAG = re.compile(r"--([A-Za-z][\w-]*)=(\S*)")
_DELEGATE_CREATED = re.compile(r"(\S+) delegate created\.$")
_SIMPLE_DELEGATE = re.compile(
    r"([^:]{1,120}?) delegate: (\d{1,18}) nodes delegated out of (\d{1,18}) nodes"
    r" with (\d{1,18}) partitions"
)
_REPLACING = re.compile(
    r"Replacing (\d{1,18})(?: out of (\d{1,18}))? node\(s\) with delegate \(([^)]*)\) node,"
    r" yielding (\d{1,18}) partitions(?: for (?:the whole graph|subgraph (\d+)))?"
)
_EXPLICIT = re.compile(
    r"(?:Explicitly applied (\S+) delegate, and the model graph will be (completely|partially)"
    r"(?: executed by the delegate w/ (\d{1,18}) delegate kernels)?"
    r"|Though (\S+) delegate is explicitly applied)"
)
_FAILED_TO_APPLY = re.compile(r"Failed to apply (\S+) delegate")
_CREATED_TFL = re.compile(r"Created TensorFlow Lite (?:(XNNPACK) )?delegate for (\w+)")
_CREATED_KERNELS = re.compile(r"Created (\d{1,18}) GPU delegate kernels")
_GPU_OPS = re.compile(
    r"(?:(?:First )?(\d{1,18}) operations will run on the GPU, and the remaining (\d{1,18})"
    r"|No operations will run on the GPU, and all (\d{1,18}))"
)
_GPU_UNSUPPORTED_OPS = re.compile(r"(?:Following|Next) operations are not supported by GPU")
# One entry of that list: "CUMSUM: Operation is not supported.", "CUSTOM Foo: …"
_GPU_OP_REASON = re.compile(r"[A-Z][A-Z0-9_]*(?: [\w./-]{1,200})?(?: v\d+)?: \S")
_RUNS = re.compile(r"\((\d{1,18}) runs\)")

# "Created TensorFlow Lite delegate for X": X → the delegate
_CREATED_FOR = {"CPU": "XNNPACK", "GPU": "GPU", "NNAPI": "NNAPI", "SELECT": "FLEX"}
_LITERT_MEMORY = ("init footprint", "overall footprint", "peak memory")

# Parameter echo descriptions (all eras) → flag names.
ECHO_FLAGS = {
    "log parameter values verbosely": "verbose",
    "min num runs": "num_runs",
    "num runs": "num_runs",
    "min runs duration (seconds)": "min_secs",
    "max runs duration (seconds)": "max_secs",
    "inter-run delay (seconds)": "run_delay",
    "number of prorated runs per second": "run_frequency",
    "num threads": "num_threads",
    "#threads used for cpu inference": "num_threads",
    "use caching": "use_caching",
    "benchmark name": "benchmark_name",
    "output prefix": "output_prefix",
    "min warmup runs": "warmup_runs",
    "warmup runs": "warmup_runs",
    "min warmup runs duration (seconds)": "warmup_min_secs",
    "run w/o invoking kernels": "dry_run",
    "graph": "graph",
    "signature to run": "signature_to_run_for",
    "input layers": "input_layer",
    "input shapes": "input_layer_shape",
    "input value ranges": "input_layer_value_range",
    "input value files": "input_layer_value_files",
    "allow fp16": "allow_fp16",
    "require full delegation": "require_full_delegation",
    "enable op profiling": "enable_op_profiling",
    "max profiling buffer entries": "max_profiling_buffer_entries",
    "csv file to export profiling data to": "profiling_output_csv_file",
    "report the peak memory footprint": "report_peak_memory_footprint",
    "memory footprint check interval (ms)": "memory_footprint_check_interval_ms",
    "use gpu": "use_gpu",
    "allow lower precision in gpu": "gpu_precision_loss_allowed",
    "enable running quant models in gpu": "gpu_experimental_enable_quant",
    "gpu backend": "gpu_backend",
    "use nnapi": "use_nnapi",
    "use legacy nnapi": "use_legacy_nnapi",
    "nnapi execution preference": "nnapi_execution_preference",
    "nnapi execution priority": "nnapi_execution_priority",
    "nnapi accelerator name": "nnapi_accelerator_name",
    "nnapi accelerators available": "nnapi_accelerators_available",
    "disable nnapi cpu": "disable_nnapi_cpu",
    "allow fp16 in nnapi": "nnapi_allow_fp16",
    "use hexagon": "use_hexagon",
    "hexagon lib path": "hexagon_lib_path",
    "hexagon profiling": "hexagon_profiling",
    "use xnnpack": "use_xnnpack",
    "use ynnpack": "use_ynnpack",
    "use coreml": "use_coreml",
    "external delegate path": "external_delegate_path",
    "external delegate options": "external_delegate_options",
    "stable delegate settings file": "stable_delegate_settings_file",
    "max number of delegated partitions": "max_delegated_partitions",
    "min nodes per partition": "min_nodes_per_partition",
    "enable platform-wide tracing": "enable_platform_tracing",
}

_UNREADABLE = Unreadable()
# The two most frequent events (Echo, Other) are built as a plain tuple is, without the
# Python-level NamedTuple.__new__.
_tuple_new = tuple.__new__
_RUNNING = Running()
_STARTING = Starting()
_INIT_LINE = InitLine()
_LITERT_RESULTS = LiteRTResults()


def parse_stats(text: str) -> RunStats | None:
    """A ``count=… first=… curr=…`` line's statistics; None without a count."""
    all_same = "(all same)" in text
    values: dict[str, Number | None] = {}
    for key, raw in _KV.findall(text):
        values[key] = num(raw)
    count = values.get("count")
    if not isinstance(count, int):
        return None
    stats = RunStats(
        count=count,
        first=values.get("first"),
        curr=values.get("curr"),
        min=values.get("min"),
        max=values.get("max"),
        avg=values.get("avg"),
        std=values.get("std"),
        p5=values.get("p5"),
        median=values.get("median"),
        p95=values.get("p95"),
        all_same=all_same,
    )
    if (all_same or count == 1) and stats.curr is not None:
        # The tool prints only `curr` when every value is the same.
        for name in ("first", "min", "max", "avg"):
            if getattr(stats, name) is None:
                setattr(stats, name, stats.curr)
        if stats.std is None:
            stats.std = 0
        if stats.median is None:
            stats.median = stats.p5 = stats.p95 = stats.curr
    return stats


def is_gpu_ops_header(msg: str) -> bool:
    """Whether a line begins the GPU delegate's list of ops it leaves to the CPU."""
    return msg[:1] in ("F", "N") and _GPU_UNSUPPORTED_OPS.match(msg) is not None


def is_gpu_op_entry(msg: str) -> bool:
    """Whether a line is an entry of that list: ``CUMSUM: Operation is not supported.``"""
    return _GPU_OP_REASON.match(msg) is not None


def wrapped_flags(msg: str) -> list[tuple[str, str]]:
    """The ``--flag=value`` pairs of a command line's wrapped fragment (flag with _ for -)."""
    return [(k.replace("-", "_"), v) for k, v in _FLAG.findall(msg)]


def _after_colon(msg: str) -> Number | None:
    return num(msg.rpartition(":")[2].strip())


def _stats(msg: str) -> Event:
    stats = parse_stats(msg)
    return _UNREADABLE if stats is None else Stats(stats)


def _summary(msg: str) -> Event:
    label, _, rest = msg.partition(":")
    values: dict[str, Number | None] = {}
    for part in rest.split(","):
        key, sep, raw = part.rpartition(":")
        if sep:
            raw = raw.strip()
            values[key.strip().lower()] = num(raw) if raw else None
    if label.startswith("Average"):
        return Summary("tf1_contrib" if "no stats" in values else "tf1", values)
    return Summary("tf2", values)


def _session(msg: str) -> Event:
    m = NUM_TOKEN.search(msg, 21)
    return _INIT_LINE if m is None else Session(ms_to_us(m.group()))


def _loaded(msg: str) -> Event:
    return Loaded(sys.intern(msg[len("Loaded model ") :].strip()))


def _footprint(msg: str) -> Event:
    values = dict(_KV.findall(msg))
    return Footprint(
        num(values["init"]) if "init" in values else None,
        num(values["overall"]) if "overall" in values else None,
        "peak" if msg.startswith("Peak") else "delta",
    )


def _rss(msg: str) -> Event:
    m = NUM_TOKEN.search(msg, msg.index(":"))
    if m is None:
        return _UNREADABLE
    for kind in ("VmRSS", "RssAnnon"):
        if kind in msg:
            return Rss(kind, num(m.group()))
    return Rss("RssFile + RssShmem", num(m.group()))


def _explicit(msg: str) -> Event:
    m = _EXPLICIT.match(msg)
    if m is None:
        return _UNREADABLE
    if m.group(4):
        return Explicit(provider(m.group(4)), "none", 0)
    if m.group(2) == "completely":
        return Explicit(provider(m.group(1)), "full", 1)
    return Explicit(provider(m.group(1)), "partial", int(m.group(3)) if m.group(3) else None)


def _replacing(msg: str) -> Event:
    m = _REPLACING.match(msg)
    if m is None:
        return _UNREADABLE
    kernel = m.group(3)
    total = int(m.group(2)) if m.group(2) else None
    return Replacing(kernel, provider(kernel), int(m.group(1)), total, int(m.group(4)))


def _created(msg: str) -> Event:
    m = _CREATED_TFL.match(msg)
    if m is not None:
        name = _CREATED_FOR.get(m.group(2).upper(), m.group(2))
        return CreatedFor(name, bool(m.group(1)))
    m = _CREATED_KERNELS.match(msg)
    if m is not None:
        return GpuKernels(int(m.group(1)))
    return _UNREADABLE


def _failed_to_apply(msg: str) -> Event:
    m = _FAILED_TO_APPLY.match(msg)
    return FailedToApply(msg, provider(m.group(1)) if m else None, fails_run(msg))


def _title(msg: str) -> Event:
    title = msg.strip("= ").lower()
    if "benchmark results" in title:
        return _LITERT_RESULTS
    if title == "run order":
        return TableTitle("run_order")
    if title.startswith("top by computation time"):
        return TableTitle("top_by_time")
    if title.startswith("summary by node type"):
        return TableTitle("by_node_type")
    return TableTitle("other")


def _nodes(msg: str) -> Event:
    value = _after_colon(msg)
    return NodesExecuted(value if isinstance(value, int) else None)


def _litert(msg: str) -> Event:
    key, _, rest = msg.partition(":")
    key = key.strip().lower()
    rest = rest.strip()
    m = NUM_TOKEN.match(rest)
    if m is None:
        return _UNREADABLE
    token = m.group()
    if key in _LITERT_MEMORY:
        return LiteRTMemory(key, num(token))
    runs = _RUNS.search(rest)
    return LiteRTTiming(key, ms_to_us(token), int(runs.group(1)) if runs is not None else None)


def _gpu_ops(msg: str) -> Event:
    m = _GPU_OPS.match(msg)
    if m is None:
        return _UNREADABLE
    if m.group(3) is not None:  # "No operations will run on the GPU, and all N …"
        return GpuOps(0, int(m.group(3)))
    return GpuOps(int(m.group(1)), int(m.group(1)) + int(m.group(2)))


def _not_created(msg: str) -> NotCreated:
    lower = msg.lower()
    if "external" in lower:
        name = "EXTERNAL"
    elif "hexagon" in lower:
        name = "Hexagon"
    elif "nnapi" in lower:
        name = "NNAPI"
    else:  # "<X> acceleration is unsupported on this platform."
        name = provider(msg.split(" ", 1)[0])
    return NotCreated(name, msg.rstrip())


_READERS: dict[str, Callable[[str], Event]] = {
    "stats": _stats,
    "summary": _summary,
    "running": lambda msg: _RUNNING,
    "starting": lambda msg: _STARTING,
    "session": _session,
    "loaded": _loaded,
    "size": lambda msg: ModelSize(_after_colon(msg)),
    "mem": _footprint,
    "peak": lambda msg: PeakMemory(_after_colon(msg)),
    "rss": _rss,
    "explicit": _explicit,
    "replacing": _replacing,
    "created": _created,
    "failapply": _failed_to_apply,
    "benchfail": GaveUp,
    "going": lambda msg: _INIT_LINE,
    "title": _title,
    "profinit": lambda msg: ProfileSection(True),
    "profrun": lambda msg: ProfileSection(False),
    "timings": lambda msg: Timings(parse_stats(msg)),
    "nodes": _nodes,
    "subgraph": lambda msg: Subgraph(msg.startswith("Primary")),
    "litert": _litert,
    "gpuops": _gpu_ops,
    "notcreated": _not_created,
    "flagwarn": Notice,
}
assert set(_READERS) == set(_DISPATCH.groupindex)


def _delegate_line(msg: str) -> Event | None:
    m = _DELEGATE_CREATED.match(msg) if msg.endswith(" delegate created.") else None
    if m is not None:
        return DelegateCreated(provider(m.group(1)))
    m = _SIMPLE_DELEGATE.match(msg) if "nodes delegated out of" in msg else None
    if m is not None:
        kernel = m.group(1)
        return DelegateSummary(
            kernel, provider(kernel), int(m.group(2)), int(m.group(3)), int(m.group(4))
        )
    return None


def _command(msg: str) -> Command:
    flags = [(sys.intern(k.replace("-", "_")), sys.intern(v)) for k, v in _FLAG.findall(msg)]
    return Command(sys.intern(msg[:1000]), flags)


def classify(line: Line) -> Event | None:
    """The event a non-blank line is, read on its own; None for a line that says nothing.

    First match wins: a line known by its start, the head of the GPU delegate's list of ops
    it leaves to the CPU, an error line, a parameter echo, a delegate's line, a command line,
    a tool failure message, a warning, anything else (Other).
    """
    msg, sev, lvl = line.msg, line.sev, line.lvl
    d = _DISPATCH.match(msg)
    if d is not None:
        return _READERS[d.lastgroup or ""](msg)
    if is_gpu_ops_header(msg):
        return GpuOpsHeader(msg)
    if sev in ("ERROR", "FATAL") or lvl in ("E", "F"):
        return Error(msg, sev == "FATAL" or lvl == "F", fails_run(msg), True)
    e = _ECHO.match(msg) if ": [" in msg else None  # the test first: most lines are not echoes
    if e is not None:
        key = e.group(1).strip().lower()
        flag = ECHO_FLAGS.get(key)
        value = e.group(2)
        if flag is not None and len(value) <= 200:
            value = sys.intern(value)
        return _tuple_new(Echo, (key, flag, value))
    if "delegate" in msg:
        event = _delegate_line(msg)
        if event is not None:
            return event
    if "benchmark_model" in msg and "--" in msg and not msg.startswith("usage"):
        return _command(msg)
    if fails_run(msg):
        return Error(msg, False, True, False)
    if sev in ("WARN", "WARNING") or lvl == "W":
        return PrefixedWarning(msg) if sev is not None else None
    return _tuple_new(Other, (msg, sev))
