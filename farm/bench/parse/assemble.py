"""Assembling invocations: line events folded into one BenchmarkResult per invocation.

A log may hold many invocations. The next one begins at ``STARTING!`` or a ``benchmark_model``
command line; when a line of an earlier phase follows a later one (a parameter echo after the
runs began, a count line after the summary); when a line repeats what an invocation has only
once (a second summary, memory line or profiling section, a third ``Running benchmark``); and
after the tool said it stopped (``Benchmarking failed.``, a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, get_args

from farm.bench.parse import events as ev
from farm.bench.parse import phases
from farm.bench.parse.delegation import Tallies
from farm.bench.parse.events import (
    classify,
    is_gpu_op_entry,
    is_gpu_ops_header,
    wrapped_flags,
)
from farm.bench.parse.failures import Evidence, crash_signal, failure_kind, is_crash
from farm.bench.parse.model import BenchmarkResult, OpProfile, RunStats
from farm.bench.parse.profile import Tables
from farm.bench.parse.read import Line
from farm.bench.parse.values import Number, is_true

MAX_MESSAGES = 50  # error / warning lines kept per invocation
_CONTINUATION = 20  # unprefixed lines after an ERROR line kept as part of its message


def _add_message(messages: list[str], msg: str) -> None:
    """Keep `msg` (cut to 2,000 characters) unless MAX_MESSAGES are kept already."""
    if len(messages) < MAX_MESSAGES:
        messages.append(msg[:2000])


class _Run:
    """The invocation being assembled."""

    __slots__ = (
        "result",
        "phase",
        "content",
        "ended",
        "running",
        "stats",
        "summary",
        "litert",
        "session_us",
        "evidence",
        "tallies",
        "tables",
        "continuation",
        "gpu_listing",
    )

    def __init__(self) -> None:
        self.result = BenchmarkResult()
        self.phase = phases.NONE  # the latest phase seen
        self.content = False  # the invocation has begun: it will be reported
        self.ended = False  # the tool said it stopped: what follows is another invocation
        self.running = 0  # "Running benchmark" lines seen: 1 warm-up, 2 timed runs
        self.stats: list[RunStats | None] = [None, None]  # warm-up, timed runs
        self.summary: dict[str, Number | None] | None = None
        self.litert: dict[str, Number | None] | None = None  # LiteRT's results block
        self.session_us: Number | None = None
        self.evidence = Evidence()
        self.tallies = Tallies()
        self.tables = Tables()
        # how following lines are read: as an error message's continuation (lines left), as
        # entries of the GPU delegate's list of ops it leaves to the CPU
        self.continuation = 0
        self.gpu_listing = False


class _Assembler:
    """Feeds lines into invocations; finished ones collect in `done`."""

    def __init__(self) -> None:
        self.done: list[BenchmarkResult] = []
        self.run = _Run()

    # ---- which invocation a line belongs to

    def _new(self) -> _Run:
        """Finish the current invocation (reported if it began) and start the next."""
        self.close()
        self.run = _Run()
        return self.run

    def close(self) -> None:
        """Finish the current invocation, reporting it if it began."""
        if self.run.content:
            self.done.append(finish(self.run))

    def _run_for(self, phase: int) -> _Run:
        """The invocation a line of `phase` belongs to: a new one if the current is past it."""
        run = self.run
        if run.phase > phase or run.ended:
            run = self._new()
        return run

    def _run_for_single(self, repeated: bool) -> _Run:
        """The invocation a line of something it has once belongs to: a new one if `repeated`."""
        if repeated or self.run.ended:
            return self._new()
        return self.run

    def _begin(self, phase: int) -> _Run:
        """The invocation a line of `phase` belongs to, now at least at `phase`."""
        run = self._run_for(phase)
        if phase > run.phase:
            run.phase = phase
        run.content = True
        run.tables.table = None
        return run

    # ---- per line

    def feed(self, line: Line) -> None:
        """Take one cleaned line.

        A few lines are read in the light of what came before, first: entries of the GPU
        delegate's list of ops it leaves to the CPU, rows of an open op-profile table. Then
        the line's own event decides (see _other for what a plain line can still be).
        """
        run = self.run
        msg = line.msg
        if not msg:
            run.tables.table = None
            run.continuation = 0
            return
        if line.foreign:  # another tag's report that the tool crashed
            run.evidence.crashed = run.ended = True
            _add_message(run.result.errors, msg)
            return
        if run.gpu_listing:
            if is_gpu_op_entry(msg):
                _add_message(run.result.warnings, msg)
                return
            run.gpu_listing = False
        if run.tables.table is not None and not is_gpu_ops_header(msg):
            if run.tables.reads(line.raw, msg):
                return
        event = classify(line)
        if event is None:
            return
        handler, ends_message = _HANDLERS[type(event)]
        if ends_message:
            run.continuation = 0
        handler(self, event)

    # ---- the start of an invocation

    def _starting(self, event: ev.Starting) -> None:
        run = self._new() if self.run.content else self.run
        run.phase = phases.START
        run.content = True

    def _command(self, event: ev.Command) -> None:
        run = self.run
        if run.content or run.result.command is not None:
            run = self._new()
        run.result.command = event.text
        for k, v in event.flags:
            run.result.params.setdefault(k, v)

    def _echo(self, event: ev.Echo) -> None:
        if event.flag is None:
            if self.run.phase in (phases.START, phases.PARAMS):
                self.run.result.params[event.key] = event.value
            return
        run = self._begin(phases.PARAMS)
        # the echo is what the tool used: it wins over a command line we read
        run.result.params[event.flag] = event.value

    # ---- initialization

    def _init_line(self, event: ev.InitLine) -> None:
        self._begin(phases.INIT)

    def _session(self, event: ev.Session) -> None:
        self._begin(phases.INIT).session_us = event.init_us

    def _loaded(self, event: ev.Loaded) -> None:
        self._begin(phases.INIT).result.params.setdefault("graph", event.graph)

    def _model_size(self, event: ev.ModelSize) -> None:
        self._begin(phases.INIT).result.model_size_mb = event.mb

    # ---- delegates

    def _delegate_created(self, event: ev.DelegateCreated) -> None:
        self._begin(phases.INIT).result.delegation.get(event.provider)

    def _explicit(self, event: ev.Explicit) -> None:
        d = self._begin(phases.INIT).result.delegation.get(event.provider)
        d.coverage = event.coverage
        if event.kernels is not None:
            d.kernels = event.kernels

    def _replacing(self, event: ev.Replacing) -> None:
        run = self._run_for(phases.RUN)
        d = run.result.delegation.get(event.provider)
        d.kernel = event.kernel
        run.tallies.add(d.name, "replacing", event.delegated, event.total, event.partitions)

    def _delegate_summary(self, event: ev.DelegateSummary) -> None:
        run = self._run_for(phases.RUN)
        d = run.result.delegation.get(event.provider)
        d.kernel = event.kernel
        run.tallies.add(d.name, "simple", event.delegated, event.total, event.partitions)

    def _created_for(self, event: ev.CreatedFor) -> None:
        run = self._run_for(phases.RUN)
        d = run.result.delegation.get(event.name)
        if (
            event.name == "XNNPACK"
            and event.xnnpack_word
            and not is_true(run.result.params.get("use_xnnpack"))
        ):
            d.default = True

    def _gpu_kernels(self, event: ev.GpuKernels) -> None:
        d = self.run.result.delegation.get("GPU")
        if d.kernels is None:
            d.kernels = event.kernels

    def _gpu_ops(self, event: ev.GpuOps) -> None:
        run = self.run
        run.result.delegation.get("GPU")
        run.tallies.add("GPU", "gpu_ops", event.on_gpu, event.total, None)

    def _gpu_ops_header(self, event: ev.GpuOpsHeader) -> None:
        # informational, not a failure: the listed ops stay on the CPU (partial delegation)
        _add_message(self.run.result.warnings, event.msg)
        self.run.gpu_listing = True

    # ---- runs and results

    def _running(self, event: ev.Running) -> None:
        run = self._run_for(phases.RUN)
        if run.running >= 2:
            run = self._new()
        run.running += 1
        run.phase = max(run.phase, phases.RUN)
        run.content = True
        run.tables.table = None

    def _stats(self, event: ev.Stats) -> None:
        run = self._run_for(phases.RUN)
        if run.running:
            slot = run.running - 1
            if run.stats[slot] is not None:
                run = self._new()
                slot = 0
        else:
            slot = 0 if run.stats[0] is None else 1
            if run.stats[1] is not None:
                run = self._new()
                slot = 0
        run.stats[slot] = event.stats
        run.phase = max(run.phase, phases.RUN)
        run.content = True
        run.tables.table = None

    def _summary(self, event: ev.Summary) -> None:
        run = self._run_for_single(self.run.summary is not None or self.run.litert is not None)
        run.result.format = event.format
        run.summary = event.values
        run.phase = max(run.phase, phases.SUMMARY)
        run.content = True
        run.tables.table = None

    def _litert_results(self, event: ev.LiteRTResults) -> None:
        run = self.run
        if run.summary is not None or run.litert is not None:
            run = self._new()
        run.litert = {}
        run.result.format = "litert_compiled_model"
        run.phase = max(run.phase, phases.SUMMARY)
        run.content = True

    def _litert_timing(self, event: ev.LiteRTTiming) -> None:
        litert = self.run.litert
        if litert is None:
            return
        litert[event.key] = event.us
        if event.runs is not None:
            litert[event.key + " runs"] = event.runs

    def _litert_memory(self, event: ev.LiteRTMemory) -> None:
        if self.run.litert is None:
            return
        mem = self.run.result.memory
        if event.key == "peak memory":
            mem.peak_mb = event.mb
        elif mem.label in (None, "litert"):
            mem.label = "litert"
            if event.key == "init footprint":
                mem.init_mb = event.mb
            else:
                mem.overall_mb = event.mb

    def _footprint(self, event: ev.Footprint) -> None:
        mem = self.run.result.memory
        run = self._run_for_single(mem.init_mb is not None or mem.overall_mb is not None)
        mem = run.result.memory
        mem.init_mb = event.init_mb
        mem.overall_mb = event.overall_mb
        mem.label = event.label
        run.phase = max(run.phase, phases.POST)
        run.content = True
        run.tables.table = None

    def _peak(self, event: ev.PeakMemory) -> None:
        run = self.run
        run.result.memory.peak_mb = event.mb
        run.phase = max(run.phase, phases.POST)
        run.content = True

    def _rss(self, event: ev.Rss) -> None:
        mem = self.run.result.memory
        if event.kind == "VmRSS":
            mem.vmrss_mb = event.mb
        elif event.kind == "RssAnnon":
            mem.rss_anon_mb = event.mb
        else:
            mem.rss_file_shmem_mb = event.mb

    # ---- op profiling

    def _profile_section(self, event: ev.ProfileSection) -> None:
        result = self.run.result
        run = self._run_for_single(
            (result.profile_init if event.init else result.profile_regular) is not None
        )
        section = OpProfile()
        if event.init:
            run.result.profile_init = section
        else:
            run.result.profile_regular = section
        run.tables.open_section(section)
        run.content = True

    def _subgraph(self, event: ev.Subgraph) -> None:
        # only the primary graph's tables are kept
        self.run.tables.in_subgraph = not event.primary
        self.run.tables.table = None

    def _table_title(self, event: ev.TableTitle) -> None:
        run = self.run
        if run.tables.section is None:
            # Old tools print the tables without a section header, before their summary: after
            # a summary they open the next invocation. LiteRT prints them after its block.
            if (run.phase >= phases.SUMMARY or run.ended) and run.litert is None:
                run = self._new()
            run.result.profile_regular = run.tables.section = OpProfile()
            run.content = True
        run.tables.open_table(event.table)

    def _timings(self, event: ev.Timings) -> None:
        tables = self.run.tables
        tables.table = None
        section = tables.section
        if section is not None and not tables.in_subgraph and section.timings is None:
            section.timings = event.stats

    def _nodes(self, event: ev.NodesExecuted) -> None:
        tables = self.run.tables
        tables.table = None
        section = tables.section
        if section is not None and not tables.in_subgraph and section.nodes_executed is None:
            section.nodes_executed = event.nodes

    # ---- failures and messages

    def _error(self, event: ev.Error) -> None:
        run = self.run
        _add_message(run.result.errors, event.msg)
        evidence = run.evidence
        if event.fatal:
            evidence.fatal = True
            run.content = True
        if event.fails_run:
            evidence.failure_message = True
            run.content = True
        if evidence.error_phase is None:
            evidence.error_phase = run.phase
        if event.continues:
            run.continuation = _CONTINUATION

    def _failed_to_apply(self, event: ev.FailedToApply) -> None:
        if event.provider is not None:
            d = self.run.result.delegation.get(event.provider)
            d.failed = True
            d.coverage = "none"
        self._error(ev.Error(event.msg, False, event.fails_run, False))

    def _not_created(self, event: ev.NotCreated) -> None:
        run = self._begin(phases.INIT)
        run.result.delegation.get(event.provider).not_created = True
        _add_message(run.result.warnings, event.msg)

    def _gave_up(self, event: ev.GaveUp) -> None:
        run = self.run
        run.evidence.gave_up = run.ended = True
        run.content = True
        _add_message(run.result.errors, event.msg)

    def _warning(self, event: ev.Notice | ev.PrefixedWarning) -> None:
        _add_message(self.run.result.warnings, event.msg)

    def _other(self, event: ev.Other) -> None:
        run = self.run
        msg = event.msg
        if run.continuation and event.sev is None:
            # unprefixed lines right after an ERROR line continue its message
            run.continuation -= 1
            _add_message(run.result.errors, msg)
        elif run.content and is_crash(msg):
            run.evidence.crashed = run.ended = True
            _add_message(run.result.errors, msg)
        elif "--" in msg and "=" in msg and event.sev is None and run.phase == phases.NONE:
            # a wrapped fragment of the command line: keep its flags
            for k, v in wrapped_flags(msg):
                run.result.params.setdefault(k, v)


def _ignore(assembler: _Assembler, event: ev.Unreadable) -> None:
    """Nothing to keep from a line whose values could not be read."""


# Event type → its handler, and whether the event ends an ERROR line's message: after the
# others, unprefixed lines still continue it.
_HANDLERS: dict[type, tuple[Callable[[_Assembler, Any], None], bool]] = {
    ev.Starting: (_Assembler._starting, True),
    ev.Command: (_Assembler._command, False),
    ev.Echo: (_Assembler._echo, True),
    ev.Stats: (_Assembler._stats, True),
    ev.Running: (_Assembler._running, True),
    ev.Summary: (_Assembler._summary, True),
    ev.InitLine: (_Assembler._init_line, True),
    ev.Session: (_Assembler._session, True),
    ev.Loaded: (_Assembler._loaded, True),
    ev.ModelSize: (_Assembler._model_size, True),
    ev.Footprint: (_Assembler._footprint, True),
    ev.PeakMemory: (_Assembler._peak, True),
    ev.Rss: (_Assembler._rss, True),
    ev.Explicit: (_Assembler._explicit, True),
    ev.Replacing: (_Assembler._replacing, True),
    ev.CreatedFor: (_Assembler._created_for, True),
    ev.GpuKernels: (_Assembler._gpu_kernels, True),
    ev.DelegateCreated: (_Assembler._delegate_created, False),
    ev.DelegateSummary: (_Assembler._delegate_summary, False),
    ev.GpuOps: (_Assembler._gpu_ops, True),
    ev.GpuOpsHeader: (_Assembler._gpu_ops_header, True),
    ev.FailedToApply: (_Assembler._failed_to_apply, True),
    ev.Error: (_Assembler._error, False),
    ev.GaveUp: (_Assembler._gave_up, True),
    ev.NotCreated: (_Assembler._not_created, True),
    ev.Notice: (_Assembler._warning, True),
    ev.PrefixedWarning: (_Assembler._warning, False),
    ev.ProfileSection: (_Assembler._profile_section, True),
    ev.Subgraph: (_Assembler._subgraph, True),
    ev.TableTitle: (_Assembler._table_title, True),
    ev.LiteRTResults: (_Assembler._litert_results, True),
    ev.LiteRTTiming: (_Assembler._litert_timing, True),
    ev.LiteRTMemory: (_Assembler._litert_memory, True),
    ev.Timings: (_Assembler._timings, True),
    ev.NodesExecuted: (_Assembler._nodes, True),
    ev.Unreadable: (_ignore, True),
    ev.Other: (_Assembler._other, False),
}
assert set(_HANDLERS) == set(get_args(ev.Event))


def assemble(lines: Iterable[Line]) -> Iterator[BenchmarkResult]:
    """One result per invocation in `lines`, each yielded as soon as the next one begins."""
    assembler = _Assembler()
    done = assembler.done
    feed = assembler.feed
    for line in lines:
        feed(line)
        if done:
            yield from done
            done.clear()
    assembler.close()
    yield from done


def finish(run: _Run) -> BenchmarkResult:
    """The result of an assembled invocation: timings settled, failure classified."""
    result = run.result
    run.tallies.settle(result.delegation)
    warm, timed = run.stats
    if run.running == 0 and run.summary is not None and timed is None and warm is not None:
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
        _from_stats_and_litert(run, warm, timed)

    completed = summary is not None or run.litert is not None or result.memory.label is not None
    if run.evidence.failed or not completed:
        result.status = "failed"
        result.failure_kind = failure_kind(
            result.errors,
            run.evidence,
            completed=completed,
            phase=run.phase,
            has_delegates=bool(result.delegation.delegates),
        )
        if result.failure_kind == "crashed":
            result.signal = crash_signal(result.errors)
    return result


def _from_stats_and_litert(run: _Run, warm: RunStats | None, timed: RunStats | None) -> None:
    """Timings without a tool summary: the stats lines and the session line say them more
    precisely than the LiteRT block's two-decimal milliseconds."""
    result = run.result
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
