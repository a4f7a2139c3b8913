"""Parse captured `benchmark_model` output into structured results, one per invocation found.

Understands every output family the TFLite / LiteRT benchmark tool has printed:

``tf2``
    ``Inference timings in us: Init: …, First inference: …, Warmup (avg): …, Inference (avg): …``
    (TF 2.x, current TFLite/LiteRT ``benchmark_model``).
``tf1``
    ``Average inference timings in us: Warmup: …, Init: …, Inference: …`` (TF ~1.14–2.1).
``tf1_contrib``
    ``Average inference timings in us: Warmup: …, Init: …, no stats: …`` (TF ≤ 1.13).
``litert_compiled_model``
    the LiteRT CompiledModel tool's ``BENCHMARK RESULTS`` block (values in ms, converted to µs).

Lines may carry ``INFO:``/``WARN:``/``ERROR:`` prefixes, logcat brief/time/threadtime prefixes
(lines of other logcat tags are skipped), LiteRT ``[file:line]`` tags, indentation or tabs,
``\\r\\n`` ends, and tool lines glued to the end of other lines. Unknown lines are ignored. A new
invocation starts at ``STARTING!``, at a ``benchmark_model`` command line, at a parameter echo
after the run began, after ``Benchmarking failed.``, or when a line of an earlier phase (a count
line, a summary) follows a finished summary.

``parse_text``/``parse_lines``/``parse_file`` return lists; ``iter_lines``/``iter_file`` yield
each invocation as soon as the next begins, so memory stays flat for logs of any size. Files are
read in chunks (UTF-8, or UTF-16 when a BOM or the byte pattern says so) with lines cut at
``MAX_LINE`` characters.

Failure kinds (``BenchmarkResult.failure_kind`` when ``status == "failed"``):

``delegate_failed``
    a delegate could not be applied (``Failed to apply … delegate.``, ``Disallowed CPU fallback``,
    or errors while delegates were being set up).
``model_load_failed``
    the model could not be opened or read.
``allocation_failed``
    ``Failed to allocate tensors!``.
``invoke_failed``
    an inference failed (warm-up or timed runs).
``invalid_input``
    inputs, shapes, signatures or flags did not fit the model or the tool.
``aborted``
    the tool stopped on a ``FATAL:`` check.
``crashed``
    no summary and no tool error: the process died or the log was cut. Given the exit status
    (``exit_status=`` of the parse functions, or ``classify_exit``), 128 + N is a crash by
    signal N whatever the log says, named in ``signal`` (``crashed (SIGSEGV)``).
``tool_error``
    the tool reported failure for a reason not recognised above.

The tool's own error lines are kept in ``errors`` (at most 50 per invocation); informational
lines (the GPU delegate's list of ops it leaves to the CPU) go to ``warnings``. Node counts come
from the runtime's ``Replacing N out of M node(s)`` lines when printed (summed over subgraphs),
else from a delegate's own summary line: each fact is counted once.
"""

from __future__ import annotations

import io
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from farm.bench.parse import phases
from farm.bench.parse.failures import (
    Evidence,
    classify_exit,
    crash_signal,
    fails_run,
    failure_kind,
    is_crash,
)
from farm.bench.parse.model import (
    FAILURE_KINDS,
    FORMATS,
    BenchmarkResult,
    DelegateInfo,
    Delegation,
    Memory,
    OpProfile,
    OpRow,
    OpTypeRow,
    RunStats,
)
from farm.bench.parse.read import (
    CHUNK,
    MAX_LINE,
    Line,
    clean_lines,
    sniff_encoding,
    split_stream,
)
from farm.bench.parse.values import NUM_TOKEN as _NUM_TOKEN
from farm.bench.parse.values import Number
from farm.bench.parse.values import is_true as _is_true
from farm.bench.parse.values import ms_to_us as _ms_to_us
from farm.bench.parse.values import num as _num
from farm.errors import InputError

__all__ = [
    "FAILURE_KINDS",
    "FORMATS",
    "MAX_LINE",
    "BenchmarkResult",
    "DelegateInfo",
    "Delegation",
    "Memory",
    "OpProfile",
    "OpRow",
    "OpTypeRow",
    "RunStats",
    "iter_file",
    "iter_lines",
    "classify_exit",
    "parse_file",
    "parse_lines",
    "parse_text",
]

MAX_MESSAGES = 50  # error / warning lines kept per invocation
_CHUNK = CHUNK  # characters iter_file reads at a time

# --------------------------------------------------------------------------- public API


def parse_text(text: str, *, exit_status: int | None = None) -> list[BenchmarkResult]:
    """Parse a whole captured output held in memory.

    `exit_status` is the process's exit status when known; it is folded into the last
    invocation (see classify_exit).
    """
    return parse_lines(text.splitlines(), exit_status=exit_status)


def parse_file(path: Path, *, exit_status: int | None = None) -> list[BenchmarkResult]:
    """Parse a log file, reading it in bounded memory; InputError if it cannot be read."""
    return _with_exit(list(iter_file(path)), exit_status)


def parse_lines(lines: Iterable[str], *, exit_status: int | None = None) -> list[BenchmarkResult]:
    """Parse output given line by line (line ends optional); never raises on odd input."""
    return _with_exit(list(iter_lines(lines)), exit_status)


def _with_exit(results: list[BenchmarkResult], exit_status: int | None) -> list[BenchmarkResult]:
    if exit_status is None or (not results and exit_status == 0):
        return results
    if not results:  # nothing recognisable printed, yet the process failed
        results.append(BenchmarkResult(status="failed", failure_kind="tool_error"))
    classify_exit(results[-1], exit_status)
    return results


def iter_lines(lines: Iterable[str]) -> Iterator[BenchmarkResult]:
    """Like parse_lines, but yield each invocation as soon as the next one begins."""
    parser = _Parser()
    results = parser.results
    for line in clean_lines(lines):
        parser.feed(line)
        if results:
            yield from results
            results.clear()
    yield from parser.finish()


def iter_file(path: Path) -> Iterator[BenchmarkResult]:
    """Like parse_file, but yield invocations one by one: memory stays flat for any log."""
    path = Path(path)
    try:
        # A device (/dev/zero, a tty) never ends; a pipe (`<(adb logcat -d)`) is read once.
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISDIR(mode)):
            raise InputError(f"{path}: not a regular file or a pipe, not a log file")
        raw = open(path, "rb")  # closed with fh by _iter_open_file
        fh = io.TextIOWrapper(
            raw, encoding=sniff_encoding(raw.peek(4)[:4]), errors="replace", newline=""
        )
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, not a log file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return _iter_open_file(path, fh, _CHUNK)


def _iter_open_file(path: Path, fh: IO[str], chunk_size: int) -> Iterator[BenchmarkResult]:
    with fh:
        try:
            yield from iter_lines(split_stream(fh, chunk_size))
        except OSError as exc:  # e.g. EIO while reading
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------- line grammar

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
    | (?P<unsupported>\S+[ ]acceleration[ ]is[ ]unsupported)
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

_KERNEL_TO_PROVIDER = {
    "tflitexnnpackdelegate": "XNNPACK",
    "tflitegpudelegatev2": "GPU",
    "tflitegpudelegate": "GPU",
    "tflitennapidelegate": "NNAPI",
    "tflitehexagondelegate": "Hexagon",
    "tflitecoremldelegate": "COREML",
}
_CREATED_FOR = {"CPU": "XNNPACK", "GPU": "GPU", "NNAPI": "NNAPI", "SELECT": "FLEX"}

# Parameter echo descriptions (all eras) → flag names.
_ECHO_FLAGS = {
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


_START, _PARAMS, _INIT, _RUN, _SUMMARY, _POST = (
    phases.START,
    phases.PARAMS,
    phases.INIT,
    phases.RUN,
    phases.SUMMARY,
    phases.POST,
)


def _parse_stats(text: str) -> RunStats | None:
    all_same = "(all same)" in text
    values: dict[str, Number | None] = {}
    for key, raw in _KV.findall(text):
        values[key] = _num(raw)
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


# --------------------------------------------------------------------------- the state machine


class _Run:
    """The invocation being assembled."""

    __slots__ = (
        "result",
        "stage",
        "content",
        "phase",
        "stats",
        "summary",
        "litert",
        "session_us",
        "section",
        "table",
        "columns",
        "colidx",
        "in_subgraph",
        "failure_lines",
        "fatal",
        "crash",
        "error_stage",
        "continuation",
        "cont_target",
        "failed_line",
        "ended",
        "tallies",
        "gpu_listing",
    )

    def __init__(self) -> None:
        self.result = BenchmarkResult()
        self.stage = 0
        self.content = False
        self.phase = 0  # 1 warm-up, 2 timed runs: which "Running benchmark" we are under
        self.stats: list[RunStats | None] = [None, None]
        self.summary: dict[str, Number | None] | None = None
        self.litert: dict[str, Number | None] | None = None
        self.session_us: Number | None = None
        self.section: OpProfile | None = None
        self.table: str | None = None
        self.columns: list[str] | None = None
        self.colidx: tuple[int, ...] | None = None
        self.in_subgraph = False
        self.failure_lines = False
        self.fatal = False
        self.crash = False
        self.error_stage: int | None = None
        self.continuation = 0
        self.cont_target: list[str] = self.result.errors
        self.failed_line = False
        self.ended = False  # the tool said it stopped: what follows is another invocation
        # node counts per delegate and per kind of line (see _settle_delegation)
        self.tallies: dict[str, dict[str, list[int | None]]] = {}
        self.gpu_listing = False  # inside the GPU delegate's list of ops it does not take


class _Parser:
    def __init__(self) -> None:
        self.results: list[BenchmarkResult] = []
        self.run = _Run()
        self._handlers = {
            name: getattr(self, "_on_" + name) for name in _DISPATCH.groupindex if name
        }

    # ---- plumbing

    def _new(self) -> _Run:
        self._close()
        self.run = _Run()
        return self.run

    def _close(self) -> None:
        run = self.run
        if run.content:
            self.results.append(_finish(run))

    def finish(self) -> list[BenchmarkResult]:
        self._close()
        self.run = _Run()
        return self.results

    # ---- per line

    def feed(self, line: Line) -> None:
        run = self.run
        raw, msg, sev, lvl, foreign = line
        if not msg:
            run.table = None
            run.continuation = 0
            return
        if foreign:  # another tag's report that the tool crashed
            run.crash = run.ended = True
            _add(run.result.errors, msg)
            return
        if run.gpu_listing:
            if _GPU_OP_REASON.match(msg):
                _add(run.result.warnings, msg)
                return
            run.gpu_listing = False
        if _GPU_UNSUPPORTED_OPS.match(msg):
            # informational, not a failure: the listed ops stay on the CPU (partial delegation)
            _add(run.result.warnings, msg)
            run.gpu_listing = True
            run.continuation = 0
            return
        if run.table is not None and ("\t" in raw or run.columns is not None or "[" in msg):
            if self._table_row(run, raw, msg):
                return
        d = _DISPATCH.match(msg)
        if d is not None:
            run.continuation = 0
            self._handlers[d.lastgroup](run, msg, sev)
            return
        if sev in ("ERROR", "FATAL") or lvl in ("E", "F"):
            self._error(run, msg, fatal=sev == "FATAL" or lvl == "F")
            run.cont_target = run.result.errors
            run.continuation = 20
            return
        e = _ECHO.match(msg)
        if e is not None:
            run.continuation = 0
            self._echo(run, e.group(1), e.group(2))
            return
        if "delegate" in msg:
            if self._delegate_misc(run, msg):
                return
        if "benchmark_model" in msg and "--" in msg and not msg.startswith("usage"):
            self._command(run, msg)
            return
        if fails_run(msg):
            self._error(run, msg)
            return
        if sev in ("WARN", "WARNING") or lvl == "W":
            if sev is not None:
                _add(run.result.warnings, msg)
            return
        if run.continuation and sev is None:
            # unprefixed lines right after an ERROR line continue its message
            run.continuation -= 1
            _add(run.cont_target, msg)
            return
        if run.content and is_crash(msg):
            run.crash = run.ended = True
            _add(run.result.errors, msg)
            return
        if "--" in msg and "=" in msg and sev is None and run.stage == 0:
            # a wrapped fragment of the command line: keep its flags
            for k, v in _FLAG.findall(msg):
                run.result.params.setdefault(k.replace("-", "_"), v)

    # ---- helpers

    def _advance(self, run: _Run, stage: int, *, split_from: int) -> _Run:
        """Start a new invocation when `run` is already at `split_from` or later."""
        if run.stage >= split_from or run.ended:
            run = self._new()
        if stage > run.stage:
            run.stage = stage
        run.content = True
        run.table = None
        return run

    def _error(self, run: _Run, msg: str, *, fatal: bool = False) -> None:
        _add(run.result.errors, msg)
        if fatal:
            run.fatal = True
            run.content = True
        if fails_run(msg):
            run.failure_lines = True
            run.content = True
        if run.error_stage is None:
            run.error_stage = run.stage

    def _command(self, run: _Run, msg: str) -> None:
        if run.content or run.result.command is not None:
            run = self._new()
        run.result.command = sys.intern(msg[:1000])
        for k, v in _FLAG.findall(msg):
            run.result.params.setdefault(sys.intern(k.replace("-", "_")), sys.intern(v))

    def _echo(self, run: _Run, desc: str, value: str) -> None:
        key = desc.strip().lower()
        flag = _ECHO_FLAGS.get(key)
        if flag is None:
            if run.stage in (_START, _PARAMS):
                run.result.params[key] = value
            return
        run = self._advance(run, _PARAMS, split_from=_INIT)
        # the echo is what the tool used: it wins over a command line we read
        run.result.params[flag] = sys.intern(value) if len(value) <= 200 else value

    def _delegate_misc(self, run: _Run, msg: str) -> bool:
        m = _DELEGATE_CREATED.match(msg) if msg.endswith(" delegate created.") else None
        if m is not None:
            run = self._advance(run, _INIT, split_from=_RUN)
            run.result.delegation.get(_provider(m.group(1)))
            return True
        m = _SIMPLE_DELEGATE.match(msg) if "nodes delegated out of" in msg else None
        if m is not None:
            if run.stage >= _SUMMARY or run.ended:
                run = self._new()
            d = run.result.delegation.get(_provider(m.group(1)))
            d.kernel = m.group(1)
            _tally(run, d.name, "simple", int(m.group(2)), int(m.group(3)), int(m.group(4)))
            return True
        return False

    # ---- dispatch targets (named after _DISPATCH groups)

    def _on_stats(self, run: _Run, msg: str, sev: str | None) -> None:
        stats = _parse_stats(msg)
        if stats is None:
            return
        if run.stage >= _SUMMARY or run.ended:
            run = self._new()
        if run.phase:
            slot = run.phase - 1
            if run.stats[slot] is not None:
                run = self._new()
                slot = 0
        else:
            slot = 0 if run.stats[0] is None else 1
            if run.stats[1] is not None:
                run = self._new()
                slot = 0
        run.stats[slot] = stats
        run.stage = max(run.stage, _RUN)
        run.content = True
        run.table = None

    def _on_summary(self, run: _Run, msg: str, sev: str | None) -> None:
        if run.summary is not None or run.litert is not None or run.ended:
            run = self._new()
        label, _, rest = msg.partition(":")
        values: dict[str, Number | None] = {}
        for part in rest.split(","):
            key, sep, raw = part.rpartition(":")
            if sep:
                raw = raw.strip()
                values[key.strip().lower()] = _num(raw) if raw else None
        if label.startswith("Average"):
            run.result.format = "tf1_contrib" if "no stats" in values else "tf1"
        else:
            run.result.format = "tf2"
        run.summary = values
        run.stage = max(run.stage, _SUMMARY)
        run.content = True
        run.table = None

    def _on_running(self, run: _Run, msg: str, sev: str | None) -> None:
        if run.stage >= _SUMMARY or run.ended or run.phase >= 2:
            run = self._new()
        run.phase += 1
        run.stage = max(run.stage, _RUN)
        run.content = True
        run.table = None

    def _on_starting(self, run: _Run, msg: str, sev: str | None) -> None:
        if run.content:
            run = self._new()
        run.stage = _START
        run.content = True

    def _on_session(self, run: _Run, msg: str, sev: str | None) -> None:
        run = self._advance(run, _INIT, split_from=_RUN)
        m = _NUM_TOKEN.search(msg, 21)
        if m is not None:
            run.session_us = _ms_to_us(m.group())

    def _on_loaded(self, run: _Run, msg: str, sev: str | None) -> None:
        run = self._advance(run, _INIT, split_from=_RUN)
        run.result.params.setdefault("graph", sys.intern(msg[len("Loaded model ") :].strip()))

    def _on_size(self, run: _Run, msg: str, sev: str | None) -> None:
        run = self._advance(run, _INIT, split_from=_RUN)
        run.result.model_size_mb = _num(msg.rpartition(":")[2].strip())

    def _on_mem(self, run: _Run, msg: str, sev: str | None) -> None:
        mem = run.result.memory
        if mem.init_mb is not None or mem.overall_mb is not None or run.ended:
            run = self._new()
            mem = run.result.memory
        values = dict(_KV.findall(msg))
        mem.init_mb = _num(values["init"]) if "init" in values else None
        mem.overall_mb = _num(values["overall"]) if "overall" in values else None
        mem.label = "peak" if msg.startswith("Peak") else "delta"
        run.stage = max(run.stage, _POST)
        run.content = True
        run.table = None

    def _on_peak(self, run: _Run, msg: str, sev: str | None) -> None:
        run.result.memory.peak_mb = _num(msg.rpartition(":")[2].strip())
        run.stage = max(run.stage, _POST)
        run.content = True

    def _on_rss(self, run: _Run, msg: str, sev: str | None) -> None:
        m = _NUM_TOKEN.search(msg, msg.index(":"))
        if m is None:
            return
        value = _num(m.group())
        mem = run.result.memory
        if "VmRSS" in msg:
            mem.vmrss_mb = value
        elif "RssAnnon" in msg:
            mem.rss_anon_mb = value
        else:
            mem.rss_file_shmem_mb = value

    def _on_explicit(self, run: _Run, msg: str, sev: str | None) -> None:
        m = _EXPLICIT.match(msg)
        if m is None:
            return
        run = self._advance(run, _INIT, split_from=_RUN)
        if m.group(4):
            d = run.result.delegation.get(_provider(m.group(4)))
            d.coverage, d.kernels = "none", 0
            return
        d = run.result.delegation.get(_provider(m.group(1)))
        if m.group(2) == "completely":
            d.coverage, d.kernels = "full", 1
        else:
            d.coverage = "partial"
            if m.group(3):
                d.kernels = int(m.group(3))

    def _on_replacing(self, run: _Run, msg: str, sev: str | None) -> None:
        m = _REPLACING.match(msg)
        if m is None:
            return
        if run.stage >= _SUMMARY or run.ended:
            run = self._new()
        kernel = m.group(3)
        d = run.result.delegation.get(_provider(kernel))
        d.kernel = kernel
        total = int(m.group(2)) if m.group(2) else None
        _tally(run, d.name, "replacing", int(m.group(1)), total, int(m.group(4)))

    def _on_created(self, run: _Run, msg: str, sev: str | None) -> None:
        m = _CREATED_TFL.match(msg)
        if m is not None:
            name = _CREATED_FOR.get(m.group(2).upper(), m.group(2))
            if run.stage >= _SUMMARY or run.ended:
                run = self._new()
            d = run.result.delegation.get(name)
            if (
                name == "XNNPACK"
                and m.group(1)
                and not _is_true(run.result.params.get("use_xnnpack"))
            ):
                d.default = True
            return
        m = _CREATED_KERNELS.match(msg)
        if m is not None:
            d = run.result.delegation.get("GPU")
            if d.kernels is None:
                d.kernels = int(m.group(1))

    def _on_failapply(self, run: _Run, msg: str, sev: str | None) -> None:
        m = re.match(r"Failed to apply (\S+) delegate", msg)
        if m is not None:
            d = run.result.delegation.get(_provider(m.group(1)))
            d.failed = True
            d.coverage = "none"
        self._error(run, msg)

    def _on_benchfail(self, run: _Run, msg: str, sev: str | None) -> None:
        run.failed_line = run.ended = True
        run.content = True
        _add(run.result.errors, msg)

    def _on_going(self, run: _Run, msg: str, sev: str | None) -> None:
        self._advance(run, _INIT, split_from=_RUN)

    def _on_profinit(self, run: _Run, msg: str, sev: str | None) -> None:
        if run.result.profile_init is not None or run.ended:
            run = self._new()
        run.result.profile_init = run.section = OpProfile()
        run.in_subgraph = False
        run.content = True
        run.table = None

    def _on_profrun(self, run: _Run, msg: str, sev: str | None) -> None:
        if run.result.profile_regular is not None or run.ended:
            run = self._new()
        run.result.profile_regular = run.section = OpProfile()
        run.in_subgraph = False
        run.content = True
        run.table = None

    def _on_subgraph(self, run: _Run, msg: str, sev: str | None) -> None:
        # only the primary graph's tables are kept
        run.in_subgraph = not msg.startswith("Primary")
        run.table = None

    def _on_title(self, run: _Run, msg: str, sev: str | None) -> None:
        title = msg.strip("= ").lower()
        if "benchmark results" in title:
            if run.summary is not None or run.litert is not None:
                run = self._new()
            run.litert = {}
            run.result.format = "litert_compiled_model"
            run.stage = max(run.stage, _SUMMARY)
            run.content = True
            return
        if run.section is None:
            # Old tools print the tables without a section header, before their summary: after
            # a summary they open the next invocation. LiteRT prints them after its block.
            if (run.stage >= _SUMMARY or run.ended) and run.litert is None:
                run = self._new()
            run.result.profile_regular = run.section = OpProfile()
            run.content = True
        if title == "run order":
            run.table = "run_order"
        elif title.startswith("top by computation time"):
            run.table = "top_by_time"
        elif title.startswith("summary by node type"):
            run.table = "by_node_type"
        else:
            run.table = "other"
        run.columns = run.colidx = None

    def _on_timings(self, run: _Run, msg: str, sev: str | None) -> None:
        run.table = None
        if run.section is not None and not run.in_subgraph and run.section.timings is None:
            run.section.timings = _parse_stats(msg)

    def _on_nodes(self, run: _Run, msg: str, sev: str | None) -> None:
        run.table = None
        if run.section is not None and not run.in_subgraph and run.section.nodes_executed is None:
            value = _num(msg.rpartition(":")[2].strip())
            run.section.nodes_executed = value if isinstance(value, int) else None

    def _on_litert(self, run: _Run, msg: str, sev: str | None) -> None:
        if run.litert is None:
            return
        key, _, rest = msg.partition(":")
        key = key.strip().lower()
        rest = rest.strip()
        m = _NUM_TOKEN.match(rest)
        if m is None:
            return
        token = m.group()
        mem = run.result.memory
        if key in ("init footprint", "overall footprint", "peak memory"):
            value = _num(token)
            if key == "peak memory":
                mem.peak_mb = value
            elif mem.label in (None, "litert"):
                mem.label = "litert"
                if key == "init footprint":
                    mem.init_mb = value
                else:
                    mem.overall_mb = value
            return
        run.litert[key] = _ms_to_us(token)
        runs = _RUNS.search(rest)
        if runs is not None:
            run.litert[key + " runs"] = int(runs.group(1))

    def _on_gpuops(self, run: _Run, msg: str, sev: str | None) -> None:
        m = _GPU_OPS.match(msg)
        if m is None:
            return
        run.result.delegation.get("GPU")
        if m.group(3) is not None:  # "No operations will run on the GPU, and all N …"
            on_gpu, total = 0, int(m.group(3))
        else:
            on_gpu, total = int(m.group(1)), int(m.group(1)) + int(m.group(2))
        _tally(run, "GPU", "gpu_ops", on_gpu, total, None)

    def _on_unsupported(self, run: _Run, msg: str, sev: str | None) -> None:
        _add(run.result.warnings, msg)

    def _on_flagwarn(self, run: _Run, msg: str, sev: str | None) -> None:
        _add(run.result.warnings, msg)

    # ---- op-profile tables

    def _table_row(self, run: _Run, raw: str, msg: str) -> bool:
        if "[node type]" in msg or "[Node type]" in msg:
            run.columns = [c.lower() for c in _HEADER_CELL.findall(msg)]
            run.colidx = _column_index(run.columns, run.table)
            return True
        columns = run.columns
        if columns is None or run.section is None:
            return False
        idx = run.colidx
        if run.in_subgraph or idx is None:
            return True
        fields = raw.split("\t")
        if len(fields) != len(columns):
            fields = [f for f in (x.strip() for x in fields) if f]
            if len(fields) != len(columns):
                fields = _split_spaced(msg, len(columns), "[name]" in columns)
                if fields is None:
                    return False
        try:
            if run.table == "by_node_type":
                t, c, a, p, cdf, mem, times = idx
                run.section.by_node_type.append(
                    OpTypeRow(
                        sys.intern(fields[t].strip()),
                        int(fields[c]),
                        float(fields[a]),
                        float(fields[p].rstrip().rstrip("%")),
                        float(fields[cdf].rstrip().rstrip("%")),
                        float(fields[mem]),
                        int(fields[times]),
                    )
                )
            else:
                t, start, first, a, p, cdf, mem, times, name = idx
                op = OpRow(
                    sys.intern(fields[t].strip()),
                    float(fields[first]),
                    float(fields[a]),
                    float(fields[p].rstrip().rstrip("%")),
                    float(fields[cdf].rstrip().rstrip("%")),
                    float(fields[mem]),
                    int(fields[times]),
                    fields[name].strip() if name >= 0 else "",
                    float(fields[start]) if start >= 0 else None,
                )
                if run.table == "run_order":
                    run.section.run_order.append(op)
                else:
                    run.section.top_by_time.append(op)
        except ValueError:
            return False  # a cut or foreign row: not ours
        return True


_HEADER_CELL = re.compile(r"\[[^\[\]]*\]")
_RUN_ORDER_COLUMNS = (
    "[node type]",
    "[start]",
    "[first]",
    "[avg ms]",
    "[%]",
    "[cdf%]",
    "[mem kb]",
    "[times called]",
    "[name]",
)
_BY_TYPE_COLUMNS = (
    "[node type]",
    "[count]",
    "[avg ms]",
    "[avg %]",
    "[cdf %]",
    "[mem kb]",
    "[times called]",
)


def _column_index(columns: list[str], table: str | None) -> tuple[int, ...] | None:
    """Where each field we keep sits in a table's header; None for tables we do not keep."""
    wanted = {"by_node_type": _BY_TYPE_COLUMNS, "run_order": _RUN_ORDER_COLUMNS}.get(
        "run_order" if table == "top_by_time" else table or ""
    )
    if wanted is None:
        return None
    optional = ("[start]", "[name]")
    idx = []
    for name in wanted:
        if name in columns:
            idx.append(columns.index(name))
        elif name in optional:
            idx.append(-1)
        else:
            return None
    return tuple(idx)


def _split_spaced(msg: str, n: int, has_name: bool) -> list[str] | None:
    """Split a table row whose tabs became spaces: type, numeric columns, optional name."""
    tokens = msg.split()
    numeric = n - 1 - (1 if has_name else 0)
    for i in range(1, len(tokens) - numeric + 1):
        window = tokens[i : i + numeric]
        if all(_NUM_TOKEN.fullmatch(t.rstrip("%")) for t in window):
            rest = tokens[i + numeric :]
            if has_name and not rest or not has_name and rest:
                continue
            out = [" ".join(tokens[:i]), *window]
            if has_name:
                out.append(" ".join(rest))
            return out
    return None


def _add(messages: list[str], msg: str) -> None:
    if len(messages) < MAX_MESSAGES:
        messages.append(msg[:2000])


def _provider(name: str) -> str:
    """A provider name (GPU, NNAPI, …) for a provider or delegate-kernel name."""
    upper = name.upper()
    if upper in ("GPU", "NNAPI", "XNNPACK", "YNNPACK", "COREML", "EXTERNAL", "STABLE_DELEGATE"):
        return upper
    if upper == "HEXAGON":
        return "Hexagon"
    known = _KERNEL_TO_PROVIDER.get(name.lower().replace(" ", ""))
    if known is not None:
        return known
    return "EXTERNAL"


def _tally(
    run: _Run,
    name: str,
    source: str,
    delegated: int | None,
    total: int | None,
    partitions: int | None,
) -> None:
    """Add one line's node counts for delegate `name`; each subgraph prints its own line."""
    row = run.tallies.setdefault(name, {}).setdefault(source, [None, None, None])
    for i, value in enumerate((delegated, total, partitions)):
        if value is not None:
            row[i] = (row[i] or 0) + value


# Lines that give node counts, most authoritative first. The runtime's "Replacing N out of M
# node(s)" counts what was delegated; a delegate's own summary (simple delegates) and the GPU
# delegate's "N operations will run on the GPU" say the same thing again, or what it would take.
_TALLY_SOURCES = ("replacing", "simple", "gpu_ops")


def _settle_delegation(run: _Run) -> None:
    """Each delegate's node counts from its most authoritative line, counted once."""
    for d in run.result.delegation.delegates:
        sources = run.tallies.get(d.name)
        if sources:
            for i, attr in enumerate(("nodes_delegated", "nodes_total", "partitions")):
                for source in _TALLY_SOURCES:
                    row = sources.get(source)
                    if row is not None and row[i] is not None:
                        setattr(d, attr, row[i])
                        break
        if d.coverage is None:
            d.coverage = _coverage(d.nodes_delegated, d.nodes_total)


def _coverage(delegated: int | None, total: int | None) -> str | None:
    if delegated is None or total is None:
        return None
    if delegated <= 0:
        return "none"
    return "full" if delegated >= total else "partial"


# --------------------------------------------------------------------------- finishing a run


def _finish(run: _Run) -> BenchmarkResult:
    result = run.result
    _settle_delegation(run)
    warm, timed = run.stats
    if run.phase == 0 and run.summary is not None and timed is None and warm is not None:
        # count lines without "Running benchmark" headers: the last one before the summary is
        # the timed phase (a grep-filtered log may keep only that one)
        warm, timed = None, warm
    result.warmup, result.inference = warm, timed

    summary = run.summary
    if summary is not None:
        result.init_us = summary.get("init")
        result.first_inference_us = summary.get("first inference")
        if result.format == "tf2":
            result.warmup_avg_us = summary.get("warmup (avg)")
            result.inference_avg_us = summary.get("inference (avg)")
        else:
            result.warmup_avg_us = summary.get("warmup")
            result.inference_avg_us = summary.get("inference", summary.get("no stats"))
    else:
        # no tool summary: the stats lines and the session line say it more precisely than the
        # LiteRT block's two-decimal milliseconds
        lit = run.litert or {}
        result.init_us = (
            run.session_us if run.session_us is not None else lit.get("model initialization")
        )
        if warm is not None:
            result.first_inference_us = warm.first
            result.warmup_avg_us = warm.avg
        if result.first_inference_us is None:
            result.first_inference_us = lit.get("warmup (first)")
        if result.warmup_avg_us is None:
            result.warmup_avg_us = lit.get("warmup (avg)")
        if timed is not None:
            result.inference_avg_us = timed.avg
        elif "inference (avg)" in lit:
            result.inference_avg_us = lit["inference (avg)"]
            count = lit.get("inference (avg) runs")
            result.inference = RunStats(
                count=int(count) if count is not None else 0,
                min=lit.get("inference (min)"),
                max=lit.get("inference (max)"),
                avg=lit["inference (avg)"],
                std=lit.get("inference (std)"),
            )
        if result.warmup is None and "warmup (avg)" in lit:
            count = lit.get("warmup (avg) runs")
            result.warmup = RunStats(
                count=int(count) if count is not None else 0,
                first=lit.get("warmup (first)"),
                avg=lit["warmup (avg)"],
            )

    completed = summary is not None or run.litert is not None or result.memory.label is not None
    failed = run.failed_line or run.failure_lines or run.fatal or run.crash or not completed
    if failed:
        result.status = "failed"
        result.failure_kind = _failure_kind(run, completed)
        if result.failure_kind == "crashed":
            result.signal = crash_signal(result.errors)
    return result


def _failure_kind(run: _Run, completed: bool) -> str:
    evidence = Evidence(
        failure_message=run.failure_lines,
        fatal=run.fatal,
        crashed=run.crash,
        gave_up=run.failed_line,
        error_phase=run.error_stage,
    )
    return failure_kind(
        run.result.errors,
        evidence,
        completed=completed,
        phase=run.stage,
        has_delegates=bool(run.result.delegation.delegates),
    )
