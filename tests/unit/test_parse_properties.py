"""Property tests: benchmark_model output generated across format variants parses to its numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farm.bench.parse import parse_text

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _g(value: float) -> str:
    """C++ ostream default formatting of a double (6 significant digits)."""
    return format(value, "g")


def _as_parsed(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


@dataclass
class Stats:
    count: int
    values: list[int]
    avg: float
    std: int
    percentiles: tuple[int, int, int] | None

    def line(self) -> str:
        v = self.values
        if self.count == 1 or len(set(v)) == 1:
            text = f"count={self.count} curr={v[-1]}"
            if self.count > 1:
                text += "(all same)"
        else:
            text = (
                f"count={self.count} first={v[0]} curr={v[-1]} min={min(v)} max={max(v)}"
                f" avg={_g(self.avg)} std={self.std}"
            )
        if self.percentiles:
            p5, med, p95 = self.percentiles
            text += f" p5={p5} median={med} p95={p95}"
        return text

    def expected_avg(self) -> int | float:
        if self.count == 1 or len(set(self.values)) == 1:
            return self.values[-1]
        return _as_parsed(_g(self.avg))


@dataclass
class Run:
    threads: int | None
    graph: str
    delegate: str | None  # None, "xnnpack_partial", "gpu_full", "nnapi_none"
    kernels: int
    init_us: int
    warmup: Stats
    timed: Stats
    mem_init: float
    mem_overall: float
    peak: float | None
    model_mb: float
    old_memory_label: bool
    family: str = "tf2"  # "tf1" and "tf1_contrib": the older summary lines, no memory lines
    ops: list[tuple[str, float, float]] = field(default_factory=list)  # type, first, avg (ms)

    def lines(self) -> list[tuple[str, str]]:
        """(severity, message) of every tool line, blank lines as ("", "")."""
        out = [("I", "STARTING!"), ("I", "Log parameter values verbosely: [0]")]
        if self.threads is not None:
            out.append(("I", f"Num threads: [{self.threads}]"))
        out.append(("I", f"Graph: [{self.graph}]"))
        if self.ops:
            out.append(("I", "Enable op profiling: [1]"))
        out.append(("I", f"Loaded model {self.graph}"))
        if self.delegate == "xnnpack_partial":
            out += [
                ("I", "XNNPACK delegate created."),
                (
                    "I",
                    "Explicitly applied XNNPACK delegate, and the model graph will be partially"
                    f" executed by the delegate w/ {self.kernels} delegate kernels.",
                ),
            ]
        elif self.delegate == "gpu_full":
            out += [
                ("I", "Created TensorFlow Lite delegate for GPU."),
                ("I", "GPU delegate created."),
                (
                    "I",
                    "Explicitly applied GPU delegate, and the model graph will be completely"
                    " executed by the delegate.",
                ),
            ]
        elif self.delegate == "nnapi_none":
            out += [
                ("I", "NNAPI delegate created."),
                (
                    "I",
                    "Though NNAPI delegate is explicitly applied, the model graph will not be"
                    " executed by the delegate.",
                ),
            ]
        out.append(("I", f"The input model file size (MB): {_g(self.model_mb)}"))
        out.append(("I", f"Initialized session in {_g(self.init_us / 1e3)}ms."))
        for stats, n, secs in ((self.warmup, 1, "0.5"), (self.timed, 50, "1")):
            running = (
                f"Running benchmark for {n} iterations "
                if self.family == "tf1_contrib"
                else f"Running benchmark for at least {n} iterations and at least {secs} seconds"
                " but terminate if exceeding 150 seconds."
            )
            out.append(("I", running))
            out.append(("I", stats.line()))
            out.append(("", ""))
        w, t = _g(self.warmup.expected_avg()), _g(self.timed.expected_avg())
        if self.family != "tf2":
            last = "no stats" if self.family == "tf1_contrib" else "Inference"
            summary = (
                f"Average inference timings in us: Warmup: {w}, Init: {self.init_us}, {last}: {t}"
            )
        else:
            summary = (
                f"Inference timings in us: Init: {self.init_us}, First inference:"
                f" {self.warmup.values[0]}, Warmup (avg): {w}, Inference (avg): {t}"
            )
        out.append(("I", summary))
        if self.family != "tf2":
            return out + self._ops_lines()
        label = (
            "Peak memory footprint (MB)"
            if self.old_memory_label
            else "Memory footprint delta from the start of the tool (MB)"
        )
        out.append(("I", f"{label}: init={_g(self.mem_init)} overall={_g(self.mem_overall)}"))
        if self.peak is not None:
            out.append(
                (
                    "I",
                    f"Overall peak memory footprint (MB) via periodic monitoring: {_g(self.peak)}",
                )
            )
        return out + self._ops_lines()

    def _ops_lines(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.ops:
            out.append(("I", "Operator-wise Profiling Info for Regular Benchmark Runs:"))
            out.append(
                ("", "============================== Run Order ==============================")
            )
            out.append(
                (
                    "T",
                    "\t                             [node type]\t  [first]\t [avg ms]\t     [%]"
                    "\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]",
                )
            )
            total = sum(a for _, _, a in self.ops) or 1.0
            cdf = 0.0
            for i, (kind, first, avg) in enumerate(self.ops):
                pct = 100 * avg / total
                cdf += pct
                out.append(
                    (
                        "T",
                        f"\t{kind:>40}\t{first:9.3f}\t{avg:9.3f}\t{pct:7.3f}%\t{cdf:7.3f}%"
                        f"\t{0:10.3f}\t{1:9d}\t[{kind.lower()}]:{i}",
                    )
                )
            out.append(("", ""))
        return out


def _stats(draw: st.DrawFn, percentiles: bool) -> Stats:
    count = draw(st.integers(1, 3000))
    n = min(count, 5)
    values = draw(st.lists(st.integers(1, 20_000_000), min_size=n, max_size=n))
    if draw(st.booleans()) and count > 1:
        values = [values[0]] * n  # the "(all same)" case
    avg = draw(st.floats(1, 2e7, allow_nan=False))
    std = draw(st.integers(0, 500_000))
    pct = tuple(sorted(draw(st.lists(st.integers(1, 20_000_000), min_size=3, max_size=3))))
    return Stats(count, values, avg, std, pct if percentiles else None)  # type: ignore[arg-type]


@st.composite
def runs(draw: st.DrawFn, percentiles: bool) -> Run:
    ops = []
    if draw(st.booleans()):
        kinds = st.sampled_from(["CONV_2D", "DEPTHWISE_CONV_2D", "Fully Connected (NC, PF32) GEMM"])
        ms = st.floats(0, 500, allow_nan=False).map(lambda x: round(x, 3))
        ops = draw(st.lists(st.tuples(kinds, ms, ms), min_size=1, max_size=6))
    return Run(
        threads=draw(st.none() | st.integers(1, 16)),
        graph=draw(st.sampled_from(["/data/local/tmp/m.tflite", "model with space.tflite"])),
        delegate=draw(st.sampled_from([None, "xnnpack_partial", "gpu_full", "nnapi_none"])),
        kernels=draw(st.integers(2, 40)),
        init_us=draw(st.integers(0, 50_000_000)),
        warmup=_stats(draw, percentiles),
        timed=_stats(draw, percentiles),
        mem_init=draw(st.floats(0, 4000, allow_nan=False)),
        mem_overall=draw(st.floats(0, 4000, allow_nan=False)),
        peak=draw(st.none() | st.floats(0.001, 4000, allow_nan=False)),
        model_mb=draw(st.floats(0.001, 2000, allow_nan=False)),
        old_memory_label=draw(st.booleans()),
        family=draw(st.sampled_from(["tf2", "tf2", "tf1", "tf1_contrib"])),
        ops=ops,
    )


STYLES = ["plain", "severity", "logcat_brief", "logcat_time", "logcat_threadtime", "litert_tag"]


def render(runs_: list[Run], style: str, indent: str, blanks: bool, eol: str) -> str:
    """The text a capture of these runs would hold in one output style."""
    out = []
    for run in runs_:
        for i, (sev, msg) in enumerate(run.lines()):
            if sev == "":
                if blanks or msg:
                    out.append(indent + msg)
                continue
            if sev == "T":  # raw table line: never prefixed
                out.append(indent + msg)
                continue
            if style == "severity":
                msg = f"INFO: {msg}"
            elif style == "litert_tag":
                msg = f"INFO: [benchmark_litert_model.h:{80 + i}] {msg}"
            elif style == "logcat_brief":
                msg = f"I/tflite  ( 6794): {msg}"
            elif style == "logcat_time":
                msg = f"07-08 15:40:34.{i % 1000:03d} I/tflite  ( 6794): {msg}"
            elif style == "logcat_threadtime":
                msg = f"07-08 15:40:34.{i % 1000:03d}  6794  6794 I tflite  : {msg}"
            out.append(indent + msg)
    return eol.join(out) + eol


def _check(run: Run, got: dict, *, complete: bool = True) -> None:
    assert got["status"] == "ok"
    assert got["threads"] == run.threads
    assert got["graph"] == run.graph
    assert got["init_us"] == run.init_us
    tf2 = run.family == "tf2"
    assert got["first_inference_us"] == (run.warmup.values[0] if tf2 else None)
    assert got["warmup_avg_us"] == _as_parsed(_g(run.warmup.expected_avg()))
    assert got["inference_avg_us"] == _as_parsed(_g(run.timed.expected_avg()))
    t = run.timed
    assert got["inference_count"] == t.count
    if t.count == 1 or len(set(t.values)) == 1:
        assert (got["inference_min_us"], got["inference_max_us"]) == (t.values[-1],) * 2
        assert got["inference_std_us"] == 0
    else:
        assert (got["inference_min_us"], got["inference_max_us"]) == (min(t.values), max(t.values))
        assert got["inference_std_us"] == t.std
    if t.percentiles:
        assert got["inference_median_us"] == t.percentiles[1]
    elif t.count == 1 or len(set(t.values)) == 1:
        assert got["inference_median_us"] == t.values[-1]
    else:
        assert got["inference_median_us"] is None
    assert got["model_size_mb"] == float(_g(run.model_mb))
    if complete and not tf2:
        assert (got["memory_init_mb"], got["memory_peak_mb"]) == (None, None)
    elif complete:
        assert got["memory_init_mb"] == float(_g(run.mem_init))
        assert got["memory_overall_mb"] == float(_g(run.mem_overall))
        assert got["memory_peak_mb"] == (float(_g(run.peak)) if run.peak is not None else None)
    coverage = {None: None, "xnnpack_partial": "partial", "gpu_full": "full", "nnapi_none": "none"}
    assert got["delegation"]["coverage"] == coverage[run.delegate]
    kernels = {None: None, "xnnpack_partial": run.kernels, "gpu_full": 1, "nnapi_none": 0}
    assert got["delegation"]["kernels"] == kernels[run.delegate]
    if complete and run.ops:
        assert got["op_profile"] is None  # run order only: no summary table was printed
    assert got["format"] == run.family


variants = st.tuples(
    st.sampled_from(STYLES),
    st.sampled_from(["", "    ", "   ", "\t"]),
    st.booleans(),
    st.sampled_from(["\n", "\r\n"]),
)


@SETTINGS
@given(
    st.booleans().flatmap(lambda p: st.lists(runs(p), min_size=1, max_size=3)),
    variants,
)
def test_generated_outputs_parse_to_their_numbers(runs_: list[Run], variant: tuple) -> None:
    style, indent, blanks, eol = variant
    results = parse_text(render(runs_, style, indent, blanks, eol))
    assert len(results) == len(runs_)
    for run, result in zip(runs_, results, strict=True):
        _check(run, result.to_dict())
        if run.ops:
            rows = result.profile_regular.run_order
            assert [(r.node_type, r.first_ms, r.avg_ms) for r in rows] == run.ops
            assert rows[-1].name == f"[{run.ops[-1][0].lower()}]:{len(run.ops) - 1}"


@SETTINGS
@given(runs(True), variants, st.data())
def test_truncated_outputs_keep_what_was_printed(
    run: Run, variant: tuple, data: st.DataObject
) -> None:
    style, indent, blanks, eol = variant
    lines = render([run], style, indent, blanks, "\n").split("\n")
    cut = data.draw(st.integers(0, len(lines)))
    results = parse_text(eol.join(lines[:cut]))
    summary_at = next(i for i, line in enumerate(lines) if "nference timings in us" in line)
    if cut <= 1 and (cut == 0 or not lines[0].strip()):
        assert results == []
        return
    (result,) = results
    got = result.to_dict()
    if cut > summary_at:
        _check(run, got, complete=cut == len(lines))
    else:
        assert (got["status"], got["failure_kind"]) == ("failed", "crashed")
        if got["init_us"] is not None:  # from "Initialized session in X ms." (6 digits)
            assert abs(got["init_us"] - run.init_us) <= 5e-6 * run.init_us + 1
        if got["inference_count"] is not None:  # the timed count line made it
            assert got["inference_count"] == run.timed.count


@SETTINGS
@given(
    st.lists(st.sampled_from(["plain", "severity", "logcat_threadtime"]), min_size=2, max_size=4)
)
def test_grep_filtered_multi_run_splits_on_each_summary(styles: list[str]) -> None:
    # only the summary line of each run survives, as in a grep-filtered capture
    lines = []
    for i, style in enumerate(styles):
        msg = (
            f"Inference timings in us: Init: {i + 1}, First inference: {10 + i},"
            f" Warmup (avg): 1.5e+06, Inference (avg): {i}.5"
        )
        lines.append(
            {"plain": msg, "severity": "INFO: " + msg}.get(
                style, "07-08 15:40:34.000  1  2 I tflite  : " + msg
            )
        )
    results = parse_text("\n".join(lines))
    assert [r.init_us for r in results] == list(range(1, len(styles) + 1))
    assert [r.inference_avg_us for r in results] == [i + 0.5 for i in range(len(styles))]
    assert all(r.warmup_avg_us == 1500000.0 for r in results)
