"""The `benchmark_model` stand-in virtual phones run: official flags, official output format.

    python -m farm.sim.benchmark_model --graph=model.tflite --num_threads=4 --use_gpu=true

It prints what the current TFLite/LiteRT `benchmark_model` prints (parameter echo, delegate
messages, per-phase `count=` lines with percentiles, the `Inference timings in us:` summary,
memory lines, op-profiling tables) and exits as it does. Its first line names the engine and
says what is simulated:

- engine `litert`: the CPU really runs the model with LiteRT at --num_threads; GPU, NNAPI and
  Hexagon are simulated from the phone's profile (its `sim:` settings);
- engine `model`: no inference; every latency comes from the profile's `sim:` settings and the
  model's work (multiply-accumulates per node) with noise, so many phones fit on a small host.

Where it runs: FARM_SIM_STATE names the phone's state folder (profile.json, engine,
faults.json, time_scale, running/); on the host FARM_SIM_PROFILE=<name> (and FARM_SIM_ENGINE)
stand in for it. FARM_SIM_SERIAL names the phone.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import math
import os
import random
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm.errors import FarmError, ModelError
from farm.models import ModelInfo, inspect_model, quiet_stderr
from farm.profiles import Failure, Profile, SimSettings, get_profile
from farm.sim import delegates_sim as ds
from farm.sim import heat
from farm.sim import outputs as sim_outputs

TOOL = "benchmark_model"
HEAT_STEP_US = 250_000  # the phone is heated by each quarter second of simulated load

# --------------------------------------------------------------------------- flags


@dataclass(frozen=True)
class Flag:
    """One command-line flag: type, default, the echo label (None: never echoed), help text."""

    type: str  # int32, float, bool, string
    default: Any
    label: str | None
    help: str = ""


def _f(type_: str, default: Any, label: str | None, help_: str = "") -> Flag:
    return Flag(type_, default, label, help_)


# Echo order is the official LogParams order: BenchmarkModel, BenchmarkTfLiteModel, then the
# delegate providers (default, GPU, NNAPI, Hexagon, XNNPACK, external).
FLAGS: dict[str, Flag] = {
    "num_runs": _f("int32", 50, "Min num runs", "expected number of runs"),
    "min_secs": _f("float", 1.0, "Min runs duration (seconds)", "minimum seconds to rerun for"),
    "max_secs": _f("float", 150.0, "Max runs duration (seconds)", "maximum seconds to rerun for"),
    "run_delay": _f("float", -1.0, "Inter-run delay (seconds)", "delay between runs in seconds"),
    "run_frequency": _f("float", -1.0, "Number of prorated runs per second", "runs per second"),
    "num_threads": _f("int32", -1, "Num threads", "number of threads"),
    "use_caching": _f("bool", False, "Use caching", "cache prepacked weights"),
    "benchmark_name": _f("string", "", "Benchmark name", "benchmark name"),
    "output_prefix": _f("string", "", "Output prefix", "benchmark output prefix"),
    "warmup_runs": _f("int32", 1, "Min warmup runs", "minimum number of warm-up runs"),
    "warmup_min_secs": _f("float", 0.5, "Min warmup runs duration (seconds)", "warm-up seconds"),
    "dry_run": _f("bool", False, "Run w/o invoking kernels", "load and allocate only"),
    "report_peak_memory_footprint": _f(
        "bool", False, "Report the peak memory footprint", "poll the memory footprint"
    ),
    "memory_footprint_check_interval_ms": _f(
        "int32", 50, "Memory footprint check interval (ms)", "poll interval"
    ),
    "verbose": _f("bool", False, None, "log parameters whose values are not set"),
    "gpu_invoke_loop_times": _f("int32", 1, None, "GPU delegate invoke loop iterations"),
    "graph": _f("string", "", "Graph", "graph file name"),
    "signature_to_run_for": _f("string", "", "Signature to run", "signature to benchmark"),
    "list_signatures": _f("bool", False, None, "list the model's signatures and stop"),
    "input_layer": _f("string", "", "Input layers", "input layer names"),
    "input_layer_shape": _f("string", "", "Input shapes", "input layer shape"),
    "input_layer_value_range": _f("string", "", "Input value ranges", "value ranges"),
    "input_layer_value_files": _f("string", "", "Input value files", "value files"),
    "allow_fp16": _f("bool", False, "Allow fp16", "allow fp16"),
    "require_full_delegation": _f(
        "bool", False, "Require full delegation", "require delegate to run the entire graph"
    ),
    "enable_op_profiling": _f("bool", False, "Enable op profiling", "enable op profiling"),
    "op_profiling_output_mode": _f(
        "string", "stdout", "Op profiling output mode.", "stdout, csv or proto"
    ),
    "op_profiling_output_file": _f("string", "", "Op profiling output file.", "output file"),
    "max_profiling_buffer_entries": _f(
        "int32", 1024, "Max initial profiling buffer entries", "profiling buffer entries"
    ),
    "output_filepath": _f(
        "string", "", "File path to export outputs layer to", "export outputs as binary data"
    ),
    "num_threads_cpu": _f("int32", -1, "#threads used for CPU inference", ""),
    "max_delegated_partitions": _f(
        "int32", 0, "Max number of delegated partitions", "max delegated partitions"
    ),
    "min_nodes_per_partition": _f("int32", 0, "Min nodes per partition", "min nodes"),
    "use_gpu": _f("bool", False, "Use gpu", "use gpu"),
    "gpu_precision_loss_allowed": _f(
        "bool", True, "Allow lower precision in gpu", "allow lower precision in GPU"
    ),
    "gpu_experimental_enable_quant": _f(
        "bool", True, "Enable running quant models in gpu", "run quantized models in GPU"
    ),
    "gpu_inference_for_sustained_speed": _f(
        "bool", False, "Prefer maximizing the throughput in gpu", "sustained speed"
    ),
    "gpu_backend": _f("string", "", "GPU backend", "cl or gl"),
    "use_nnapi": _f("bool", False, "Use NNAPI", "use nnapi delegate api"),
    "nnapi_execution_preference": _f(
        "string", "", "NNAPI execution preference", "execution preference"
    ),
    "nnapi_execution_priority": _f(
        "string", "", "Model execution priority in nnapi", "execution priority"
    ),
    "nnapi_accelerator_name": _f("string", "", "NNAPI accelerator name", "accelerator name"),
    "disable_nnapi_cpu": _f("bool", True, "Disable NNAPI cpu", "disable the NNAPI CPU device"),
    "nnapi_allow_fp16": _f("bool", False, "Allow fp16 in NNAPI", "allow fp16 in NNAPI"),
    "use_hexagon": _f("bool", False, "Use Hexagon", "use Hexagon delegate"),
    "hexagon_lib_path": _f("string", "/data/local/tmp", "Hexagon lib path", "Hexagon libs"),
    "hexagon_profiling": _f("bool", False, "Hexagon profiling", "Hexagon profiling"),
    "use_xnnpack": _f("bool", False, "Use xnnpack", "explicitly apply the XNNPACK delegate"),
    "external_delegate_path": _f("string", "", "External delegate path", "delegate library"),
    "external_delegate_options": _f(
        "string", "", "External delegate options", "k1:v1;k2:v2 options"
    ),
    "help": _f("bool", False, None, "print this help"),
}
# `num_threads` is one flag that two components echo; the second echo reads the same value.
_ALIASES = {"num_threads_cpu": "num_threads"}
_NNAPI_DETAIL = {
    "nnapi_execution_preference",
    "nnapi_execution_priority",
    "nnapi_accelerator_name",
    "disable_nnapi_cpu",
    "nnapi_allow_fp16",
}


class FlagError(Exception):
    """A flag value the tool cannot parse."""


@dataclass
class Params:
    """Parsed command line: values, which were set, their positions, and leftovers."""

    values: dict[str, Any]
    set: dict[str, int] = field(default_factory=dict)  # name -> argv position
    unconsumed: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Any:
        return self.values[_ALIASES.get(name, name)]

    def has(self, name: str) -> bool:
        """Whether the flag was given on the command line."""
        return _ALIASES.get(name, name) in self.set


def _parse_value(type_: str, text: str) -> Any:
    if type_ == "bool":
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(text)
    if type_ == "int32":
        value = int(text, 10)
        if not -(2**31) <= value < 2**31:
            raise ValueError(text)
        return value
    if type_ == "float":
        value = float(text)
        if math.isnan(value) and text.lower() != "nan":
            raise ValueError(text)
        return value
    return text


def parse_flags(argv: list[str]) -> Params:
    """Parse `--name=value` flags as the official tool does; other words stay unconsumed."""
    params = Params({n: f.default for n, f in FLAGS.items() if n not in _ALIASES})
    for position, arg in enumerate(argv, start=1):
        name, eq, text = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        flag = FLAGS.get(name) if name not in _ALIASES else None
        if not eq or flag is None:
            params.unconsumed.append(arg)
            continue
        try:
            params.values[name] = _parse_value(flag.type, text)
        except ValueError:
            raise FlagError(f"Failed to parse flag '{name}' against argv '{arg}'") from None
        params.set[name] = position
    return params


def _show(type_: str, value: Any) -> str:
    if type_ == "bool":
        return "1" if value else "0"
    if type_ == "float":
        return _g(value)
    return str(value)


def usage() -> str:
    """The `--help` text (official layout: name=default, type, optional, help)."""
    rows = [(f"--{n}={_show(f.type, f.default)}", f) for n, f in FLAGS.items() if n not in _ALIASES]
    width = max(len(r[0]) for r in rows)
    lines = [f"usage: {TOOL} <flags>", "Flags:"]
    lines += [f"\t{name:<{width}}\t{f.type}\toptional\t{f.help}" for name, f in rows]
    return "\n".join(lines)


def _g(value: float) -> str:
    """A double as C++ streams print it by default (6 significant digits)."""
    if isinstance(value, float) and math.isnan(value):
        return "0"
    text = f"{value:g}"
    return text


# --------------------------------------------------------------------------- output


class Out:
    """The tool's two streams: tool INFO/WARN on stdout, errors and runtime lines on stderr."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def _write(self, stream: Any, text: str) -> None:
        with self.lock:
            stream.write(text + "\n")
            stream.flush()

    def info(self, msg: str) -> None:
        self._write(sys.stdout, f"INFO: {msg}")

    def warn(self, msg: str) -> None:
        self._write(sys.stdout, f"WARN: {msg}")

    def error(self, msg: str) -> None:
        self._write(sys.stderr, f"ERROR: {msg}")

    def raw(self, text: str) -> None:
        self._write(sys.stdout, text)

    def runtime(self, severity: str, msg: str) -> None:
        """A TFLITE_LOG_PROD line of the runtime or a delegate (always stderr)."""
        self._write(sys.stderr, f"{severity}: {msg}")


# --------------------------------------------------------------------------- statistics


class Stat:
    """tsl StatWithPercentiles<int64>: the `count=... p95=...` line."""

    def __init__(self, percentiles: bool = True) -> None:
        self.values: list[int] = []
        self.percentiles = percentiles

    def add(self, value: float) -> None:
        self.values.append(int(value))

    @property
    def count(self) -> int:
        return len(self.values)

    def first(self) -> int:
        return self.values[0] if self.values else 0

    def avg(self) -> float:
        return sum(self.values) / len(self.values) if self.values else 0.0

    def std(self) -> int:
        if not self.values or min(self.values) == max(self.values):
            return 0
        n = len(self.values)
        mean = sum(self.values) / n
        var = sum(v * v for v in self.values) / n - mean * mean
        return int(math.sqrt(max(var, 0.0)))

    def percentile(self, p: int) -> int:
        if not self.values:
            return 0
        ordered = sorted(self.values)
        return ordered[-1] if p == 100 else ordered[len(ordered) * p // 100]

    def line(self) -> str:
        v = self.values
        if not v:
            text = "count=0"
        elif min(v) == max(v):
            text = f"count={len(v)} curr={v[-1]}" + ("(all same)" if len(v) > 1 else "")
        else:
            text = (
                f"count={len(v)} first={v[0]} curr={v[-1]} min={min(v)} max={max(v)} "
                f"avg={_g(self.avg())} std={self.std()}"
            )
        if self.percentiles:
            text += (
                f" p5={self.percentile(5)} median={self.percentile(50)} p95={self.percentile(95)}"
            )
        return text


# --------------------------------------------------------------------------- where we run


@dataclass
class Phone:
    """The virtual phone the stand-in runs on."""

    serial: str
    profile: Profile
    engine: str  # litert | model
    state: Path | None
    time_scale: float = 1.0
    cpu_lock: str = ""  # the lab's host CPU lock file as the phone sees it ("" outside a lab)

    @property
    def sim(self) -> SimSettings:
        """How the lab simulates this phone (the profile's `sim:` section)."""
        return self.profile.sim

    def faults(self) -> dict[str, Any]:
        """faults.json of the phone (empty on the host)."""
        if self.state is None:
            return {}
        try:
            data = json.loads((self.state / "faults.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def locate_phone(environ: dict[str, str] | None = None) -> Phone:
    """The phone from FARM_SIM_STATE, or on the host from FARM_SIM_PROFILE."""
    env = os.environ if environ is None else environ
    serial = env.get("FARM_SIM_SERIAL", "host")
    state_dir = env.get("FARM_SIM_STATE")
    if state_dir:
        state = Path(state_dir)
        source = state / "profile.json"
        try:
            profile = Profile.model_validate_json(source.read_text("utf-8"))
        except ValueError as exc:  # pydantic.ValidationError
            lines = str(exc).splitlines()
            raise FarmError(f"{source}: invalid device profile: {' '.join(lines[:3])}") from None
        engine_file = state / "engine"
        engine = engine_file.read_text("utf-8").strip() if engine_file.exists() else "litert"
        scale_file = state / "time_scale"
        scale = float(scale_file.read_text().strip()) if scale_file.exists() else 1.0
        lock_file = state / "cpu_lock"
        cpu_lock = lock_file.read_text("utf-8").strip() if lock_file.exists() else ""
    elif env.get("FARM_SIM_PROFILE"):
        state = None
        profile = get_profile(env["FARM_SIM_PROFILE"])
        engine, scale, cpu_lock = "litert", 1.0, ""
    else:
        raise FarmError("not on a virtual phone: set FARM_SIM_STATE or FARM_SIM_PROFILE")
    engine = env.get("FARM_SIM_ENGINE", engine)
    scale = float(env.get("FARM_SIM_TIME_SCALE", scale))
    if engine not in ("litert", "model"):
        raise FarmError(f"unknown engine {engine!r} (known: litert, model)")
    return Phone(serial, profile, engine, state, max(scale, 0.0), cpu_lock)


class _Marker:
    """running/<pid> while the benchmark runs: the phone heats while one exists."""

    def __init__(self, phone: Phone) -> None:
        self.path = phone.state / "running" / str(os.getpid()) if phone.state else None

    def __enter__(self) -> _Marker:
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(f"{heat.HEAT_SELF} {time.time()}")
            except OSError:
                self.path = None
        return self

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        self.remove()


class HostCpuLock:
    """The lab's host CPU lock (a flock shared by every phone of a lab), for the litert engine.

    Timed runs hold it exclusively, so timed runs on different virtual phones take turns on the
    host's cores. The CPU-heavy set-up before them (imports, model load, interpreter) holds it
    shared: set-ups overlap one another but never another phone's timed runs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def _take(self, mode: int) -> float:
        start = time.monotonic()
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(self.fd, mode)
        return time.monotonic() - start

    def shared(self) -> float:
        """Wait for the lock in shared mode; the seconds waited."""
        return self._take(fcntl.LOCK_SH)

    def exclusive(self) -> float:
        """Wait for the lock alone (a shared hold is given up first); the seconds waited."""
        return self._take(fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None


def _die(sig: int, marker: _Marker) -> None:
    """End the process by `sig` as a crashing native program does (shell status 128+sig)."""
    sys.stdout.flush()
    sys.stderr.flush()
    marker.remove()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    time.sleep(5)
    os._exit(128 + sig)


# --------------------------------------------------------------------------- clocks


class RealClock:
    """Wall clock in microseconds."""

    def now(self) -> int:
        return time.perf_counter_ns() // 1000

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """Simulated time: advances by simulated durations, sleeps them scaled (in batches)."""

    def __init__(self, scale: float) -> None:
        self.t = 0
        self.scale = scale
        self.debt = 0.0  # seconds of sleep owed

    def now(self) -> int:
        return self.t

    def spend(self, us: float, already_s: float = 0.0) -> None:
        """`us` simulated microseconds passed, of which `already_s` were really spent."""
        self.t += int(us)
        self.debt += max(us / 1e6 * self.scale - already_s, 0.0)
        if self.debt >= 0.02:
            time.sleep(self.debt)
            self.debt = 0.0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.spend(seconds * 1e6)

    def flush(self) -> None:
        if self.debt > 0:
            time.sleep(self.debt)
            self.debt = 0.0


# --------------------------------------------------------------------------- memory


def _rss_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _statm_mb() -> tuple[int, int]:
    """(rss, shared) in whole MB as the tool reads /proc/self/statm."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        page = os.sysconf("SC_PAGE_SIZE")
        return int(fields[1]) * page >> 20, int(fields[2]) * page >> 20
    except (OSError, ValueError, IndexError):
        return 0, 0


class PeakMonitor(threading.Thread):
    """--report_peak_memory_footprint: polls RSS in the background."""

    def __init__(self, interval_ms: int) -> None:
        super().__init__(daemon=True)
        self.interval = max(interval_ms, 1) / 1000
        self.peak_kb = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak_kb = max(self.peak_kb, _rss_kb())
            self.stopped.wait(self.interval)

    def stop(self) -> float:
        self.stopped.set()
        self.join(timeout=1)
        return max(self.peak_kb, _rss_kb()) / 1024.0


# --------------------------------------------------------------------------- the benchmark


class Failed(Exception):
    """The tool reports failure: `Benchmarking failed.` and exit 1."""


@dataclass
class Applied:
    """A delegate applied to the graph."""

    plan: ds.DelegatePlan
    speedup: float
    init_us: float
    first_factor: float  # first inference slower by this much (kernel compilation, warm-up)


@dataclass
class Execution:
    """How a run executes: per node, CPU or one of the delegate partitions."""

    model: ModelInfo
    applied: list[Applied]
    xnnpack: ds.DelegatePlan | None  # XNNPACK on the CPU (default or explicit), None if off

    def cpu_nodes(self) -> list[int]:
        taken = {i for a in self.applied for i in a.plan.delegated}
        return [i for i in range(self.model.node_count) if i not in taken]


class Benchmark:
    """One invocation of the tool."""

    def __init__(self, phone: Phone, params: Params, out: Out, marker: _Marker) -> None:
        self.phone = phone
        self.p = params
        self.out = out
        self.marker = marker
        self.rng = random.Random()
        self.crash_signal: int | None = None
        self.model_quantized = False
        self.interpreter: Any = None
        self.input_data: list[tuple[int, Any]] = []
        self.clock: RealClock | VirtualClock = (
            VirtualClock(phone.time_scale) if phone.engine == "model" else RealClock()
        )
        # Where its threads may run (taskset on the phone), and how much the cores' speed and
        # heat stretch CPU work (model engine); the phone heats by the load as it is simulated.
        self.affinity = heat.parse_affinity(os.environ.get("FARM_SIM_AFFINITY", ""))
        self.slowdown = 1.0
        self.heat_mark: int | None = None
        self.cpu_lock: HostCpuLock | None = None
        if phone.engine == "litert" and phone.cpu_lock and not params["dry_run"]:
            self.cpu_lock = HostCpuLock(phone.cpu_lock)

    def _lock(self, exclusive: bool) -> float:
        """Take the host CPU lock (when the phone has one); the seconds waited."""
        if self.cpu_lock is None:
            return 0.0
        try:
            return self.cpu_lock.exclusive() if exclusive else self.cpu_lock.shared()
        except OSError as exc:
            self.out.warn(f"farm virtual device: host CPU lock {self.cpu_lock.path}: {exc}")
            self.cpu_lock = None
            return 0.0

    def unlock(self) -> None:
        """Give the host CPU lock up."""
        if self.cpu_lock is not None:
            self.cpu_lock.release()

    def threads(self) -> float:
        """Single-core equivalents of --num_threads, within the CPUs taskset left it."""
        n = self.p["num_threads"]
        if self.affinity is not None:
            n = min(n if n > 0 else len(self.affinity), len(self.affinity))
        return ds.effective_threads(n, self.phone.sim)

    def heat(self, *, flush: bool = False) -> None:
        """Heat the phone by the load run since the last call (in steps of HEAT_STEP_US), and
        take the new CPU slowdown."""
        state, profile = self.phone.state, self.phone.profile
        now = self.clock.now()
        if self.heat_mark is None:
            self.heat_mark = now
        spent = now - self.heat_mark
        if spent < HEAT_STEP_US and not (flush and spent > 0):
            return
        self.heat_mark = now
        if state is None:
            return
        try:
            temps = heat.update(state, profile, lambda t: heat.heated(profile, t, spent / 1e6))
        except OSError:
            return
        self.slowdown = heat.cpu_slowdown(profile, temps, self.affinity)

    # ---------------------------------------------------------------- parameters

    def log_params(self) -> None:
        p, out = self.p, self.out
        verbose = p["verbose"]
        out.info(f"Log parameter values verbosely: [{int(verbose)}]")
        always = {"graph", "signature_to_run_for"}
        for name, flag in FLAGS.items():
            if flag.label is None:
                continue
            real = _ALIASES.get(name, name)
            if name in _NNAPI_DETAIL and not p["use_nnapi"]:
                continue
            if name in always or verbose or p.has(real):
                out.info(f"{flag.label}: [{_show(flag.type, p[real])}]")
            if name == "nnapi_accelerator_name" and p["use_nnapi"]:
                nnapi = self.phone.sim.delegates.nnapi
                if nnapi and nnapi.accelerators:
                    names = ",".join(a.name for a in nnapi.accelerators)
                    out.info(f"NNAPI accelerators available: [{names}]")

    # ---------------------------------------------------------------- model

    def load_model(self) -> ModelInfo:
        graph = self.p["graph"]
        path = Path(graph)
        if not path.is_file():
            self.out.runtime("ERROR", f"Could not open '{graph}'.")
            self.out.error(f"Failed to load model {graph}")
            raise Failed
        try:
            # The model engine runs no inference: it reads the flatbuffer without LiteRT.
            model = inspect_model(path, verify=self.phone.engine == "litert")
        except ModelError:
            self.out.runtime("ERROR", "The model is not a valid Flatbuffer buffer")
            self.out.error(f"Failed to load model {graph}")
            raise Failed from None
        self.out.info(f"Loaded model {graph}")
        return model

    def check_signature(self, model: ModelInfo) -> None:
        """--list_signatures and --signature_to_run_for, as the tool handles them in Init()."""
        out, keys = self.out, model.signatures
        if self.p["list_signatures"]:
            out.info(f"The Model contains {len(keys)} signature key(s).")
            if keys:
                out.info("They are listed below: ")
            for key in keys:
                out.info(f"-> Signature Key: {key}")
            raise Failed
        wanted = self.p["signature_to_run_for"]
        if wanted and not keys:
            out.error("Signature key is specified, but the model does not have any signatures.")
            raise Failed
        if (wanted and wanted not in keys) or (not wanted and len(keys) > 1):
            out.error(
                "Signature not specified or incorrect. Pass one of the following to the flag "
                '"--signature_to_run_for"'
            )
            for key in keys:
                out.error(f" #> Signature key: {key}")
            raise Failed

    # ---------------------------------------------------------------- delegates

    def _requested(self) -> list[str]:
        """Delegate providers asked for, in registration order."""
        p = self.p
        names = []
        if p["use_gpu"]:
            names.append("GPU")
        if p["use_nnapi"]:
            names.append("NNAPI")
        if p["use_hexagon"]:
            names.append("Hexagon")
        if p["use_xnnpack"]:
            names.append("XNNPACK")
        if p["external_delegate_path"]:
            names.append("EXTERNAL")
        return names

    def _position(self, name: str) -> int:
        flag = {
            "GPU": "use_gpu",
            "NNAPI": "use_nnapi",
            "Hexagon": "use_hexagon",
            "XNNPACK": "use_xnnpack",
            "EXTERNAL": "external_delegate_path",
        }[name]
        return self.p.set.get(flag, 0)

    def create_delegates(self) -> list[str]:
        """Providers that produce a delegate on this phone, in application order."""
        out, delegates, p = self.out, self.phone.sim.delegates, self.p
        created: list[str] = []
        for name in self._requested():
            # On Android the GPU and NNAPI delegates are always created; a phone without a
            # usable GPU or NNAPI shows it when the delegate is applied.
            if name == "GPU":
                out.runtime("INFO", "Created TensorFlow Lite delegate for GPU.")
            elif name == "NNAPI":
                out.runtime("INFO", "Created TensorFlow Lite delegate for NNAPI.")
            elif name == "Hexagon":
                if delegates.hexagon is None:
                    # The Hexagon delegate loads libhexagon_interface.so when it is created.
                    out.runtime(
                        "ERROR",
                        "Failed to load libhexagon_interface.so, Error: dlopen failed: "
                        'library "libhexagon_interface.so" not found',
                    )
                    out.runtime("INFO", "Hexagon Delegate is not supported.\n")
                    out.warn(
                        "Could not create Hexagon delegate: platform may not support "
                        "delegate or required libraries are missing"
                    )
                    continue
            elif name == "XNNPACK":
                out.runtime("INFO", "Created TensorFlow Lite XNNPACK delegate for CPU.")
            elif name == "EXTERNAL":
                path = p["external_delegate_path"]
                out.runtime("INFO", f"Unable to load external delegate from : {path}")
                continue
            if not created:
                out.info(f"{name} delegate created.")
            created.append(name)
        return sorted(created, key=self._position)

    def _replacing(self, plan: ds.DelegatePlan, total: int) -> None:
        n = len(plan.delegated)
        if n:
            self.out.runtime(
                "VERBOSE",
                f"Replacing {n} out of {total} node(s) with delegate ({plan.kernel}) node, "
                f"yielding {len(plan.parts)} partitions for subgraph 0.",
            )

    def _fail_delegate(self, plan: ds.DelegatePlan, model: ModelInfo) -> None:
        failure = plan.failure
        assert failure is not None
        out = self.out
        node = model.node_count
        message = failure.message or f"{plan.kernel}: delegate initialization failed."
        if failure.kind == "init_error" and plan.name == "GPU":
            out.runtime("ERROR", f"TfLiteGpuDelegate Init: {message}")
            out.runtime("INFO", "Created 0 GPU delegate kernels.")
            out.runtime("ERROR", "TfLiteGpuDelegate Prepare: delegate is not initialized")
            out.runtime("ERROR", f"Node number {node} ({plan.kernel}) failed to prepare.")
        elif failure.kind == "init_error":
            out.runtime("ERROR", message)
            out.runtime("ERROR", "Delegate kernel was not initialized")
            out.runtime("ERROR", f"Node number {node} ({plan.kernel}) failed to prepare.\n")
        else:
            out.runtime("ERROR", message + "\n")
            out.runtime("ERROR", f"Node number {node} ({plan.kernel}) failed to prepare.\n")
        out.runtime("ERROR", "Restored original execution plan after delegate application failure.")
        out.error(f"Failed to apply {plan.name} delegate.")
        raise Failed

    def apply_delegates(self, model: ModelInfo, created: list[str]) -> Execution:
        """Apply each created delegate in turn, printing what the runtime and tool print."""
        out, p, sim = self.out, self.p, self.phone.sim
        if len(created) >= 2:
            out.info(f"Going to apply {len(created)} delegates one after another.")
        if not created and p["require_full_delegation"]:
            out.error("Disallowed CPU fallback detected.")
            raise Failed
        applied: list[Applied] = []
        xnnpack: ds.DelegatePlan | None = None
        taken: set[int] = set()
        kernels = 0  # delegate nodes earlier delegates put in the graph
        max_parts = p["max_delegated_partitions"]
        for name in created:
            if name == "XNNPACK":
                plan = ds.plan_xnnpack(model)
                acc = None
            elif name == "GPU":
                # No GPU: the delegate still picks its nodes, then fails to initialise.
                acc = sim.delegates.gpu or ds.NO_GPU
                plan = ds.plan_accelerator(name, acc, model, max_partitions=max_parts)
                if model.quantized and not p["gpu_experimental_enable_quant"]:
                    no_quant = acc.model_copy(update={"takes_quantized": False})
                    plan = ds.plan_accelerator(name, no_quant, model, max_partitions=max_parts)
            elif name == "NNAPI" and not (sim.delegates.nnapi and sim.delegates.nnapi.accelerators):
                # No NNAPI runtime: the delegate takes nothing (named accelerator or not).
                acc = None
                plan = ds.DelegatePlan(name="NNAPI", accelerator=None, node_count=model.node_count)
            elif name == "NNAPI":
                requested = p["nnapi_accelerator_name"]
                acc = ds.nnapi_accelerator(sim, requested)
                if acc is None:
                    names = ",".join(a.name for a in sim.delegates.nnapi.accelerators)  # type: ignore[union-attr]
                    out.runtime(
                        "ERROR",
                        f"Could not find the specified NNAPI accelerator: {requested}. "
                        f"Must be one of: {{{names}}}.",
                    )
                    out.runtime(
                        "ERROR",
                        "Restored original execution plan after delegate application failure.",
                    )
                    out.error("Failed to apply NNAPI delegate.")
                    raise Failed
                plan = ds.plan_accelerator(name, acc, model, max_partitions=max_parts)
            else:  # Hexagon
                acc = sim.delegates.hexagon
                assert acc is not None
                plan = ds.plan_accelerator(name, acc, model, max_partitions=max_parts)
            # Nodes an earlier delegate took are gone from the graph this one sees.
            if taken:
                accepted = [i in plan.delegated and i not in taken for i in range(model.node_count)]
                plan.parts = ds.partitions(accepted, max_parts)
            self._announce(plan, model, model.node_count - len(taken) + kernels)
            if name == "XNNPACK":
                xnnpack = plan
            elif acc is not None:
                applied.append(self._applied(plan, acc))
            taken |= plan.delegated
            kernels += len(plan.parts)
            self._report_application(plan, model)
        if not created and not p.has("use_xnnpack"):
            xnnpack = ds.plan_xnnpack(model)  # the runtime's default delegate
            out.runtime("INFO", "Created TensorFlow Lite XNNPACK delegate for CPU.")
            self._replacing(xnnpack, model.node_count)
        return Execution(model, applied, xnnpack)

    def _announce(self, plan: ds.DelegatePlan, model: ModelInfo, total: int) -> None:
        """The runtime's lines while a delegate is applied to a graph of `total` nodes."""
        out = self.out
        if not plan.parts:
            plan.failure = None  # no delegate kernel is built, so none can fail
        if plan.name == "GPU":
            gpu = self.phone.sim.delegates.gpu or ds.NO_GPU
            backend = gpu.backend
            forced = self.p["gpu_backend"]
            if plan.refused:
                n = len(plan.delegated)
                lines = [f"{op}: {why}" for op, why in plan.refused.items()]
                tail = (
                    f"{n} operations will run on the GPU, and the remaining "
                    f"{total - n} operations will run on the CPU."
                    if n
                    else f"No operations will run on the GPU, and all {total} "
                    "operations will run on the CPU."
                )
                out.runtime(
                    "ERROR",
                    "Following operations are not supported by GPU delegate:\n"
                    + "\n".join(lines)
                    + "\n"
                    + tail,
                )
            if plan.parts and self.phone.sim.delegates.gpu is None:
                plan.failure = self._no_gpu(forced)
            elif (
                plan.parts
                and forced in ("cl", "gl")
                and {"cl": "opencl", "gl": "gl"}[forced] != backend
            ):
                plan.failure = plan.failure or _backend_failure(forced)
            if backend == "opencl" and plan.failure is None:
                out.runtime("INFO", "Loaded OpenCL library with dlopen.")
            if plan.failure and plan.failure.fails_run:
                self._fail_delegate(plan, model)
            self._replacing(plan, total)
            if plan.delegated:
                api = "OpenCL" if backend == "opencl" else "OpenGL"
                out.runtime("INFO", f"Initialized {api}-based API.")
                out.runtime("INFO", f"Created {len(plan.parts)} GPU delegate kernels.")
            return
        if plan.failure and plan.failure.fails_run:
            self._fail_delegate(plan, model)
        if plan.name == "Hexagon" and plan.delegated:
            out.runtime(
                "INFO",
                f"{plan.kernel} delegate: {len(plan.delegated)} nodes delegated out of "
                f"{total} nodes with {len(plan.parts)} partitions.\n",
            )
        self._replacing(plan, total)

    def _no_gpu(self, forced: str) -> Failure:
        """What the GPU delegate meets on a phone without a usable GPU, and how it fails.

        No OpenCL library (the ICD loader finds none either), and OpenGL ES below 3.1: the
        delegate tries OpenCL, falls back to OpenGL unless a backend is forced, and its
        kernel fails to initialise.
        """
        out = self.out
        if forced != "gl":
            out.runtime("INFO", ds.OPENCL_DLOPEN_FAILED)
        if forced == "cl":
            return Failure(when="always", kind="init_error", message=ds.OPENCL_MISSING)
        if forced != "gl":
            out.runtime("ERROR", ds.OPENCL_MISSING)
            out.runtime("ERROR", "Falling back to OpenGL")
        return Failure(when="always", kind="init_error", message=ds.OPENGL_TOO_OLD)

    def _report_application(self, plan: ds.DelegatePlan, model: ModelInfo) -> None:
        out = self.out
        if plan.failure and plan.failure.kind == "crash":
            self.crash_signal = self.crash_signal or plan.failure.signal
        fully = plan.full
        if self.p["require_full_delegation"] and not fully:
            out.error("Disallowed CPU fallback detected.")
            raise Failed
        if fully:
            out.info(
                f"Explicitly applied {plan.name} delegate, and the model graph will be "
                "completely executed by the delegate."
            )
        elif plan.parts:
            out.info(
                f"Explicitly applied {plan.name} delegate, and the model graph will be "
                f"partially executed by the delegate w/ {len(plan.parts)} delegate kernels."
            )
        else:
            out.info(
                f"Though {plan.name} delegate is explicitly applied, the model graph will "
                "not be executed by the delegate."
            )

    def _applied(self, plan: ds.DelegatePlan, acc: Any) -> Applied:
        speedup = acc.speedup
        first = 1.5
        if plan.name == "GPU":
            first = 3.0
            if not self.p["gpu_precision_loss_allowed"]:
                speedup /= 1.6
        elif plan.name == "NNAPI":
            first = 2.0
            if self.p["nnapi_allow_fp16"] and not self.model_quantized:
                speedup *= 1.3
        init_us = acc.init_ms * 1000 * self.rng.lognormvariate(0, 0.05) if plan.parts else 0.0
        return Applied(plan, max(speedup, 1e-3), init_us, first)

    # ---------------------------------------------------------------- fixed inputs, outputs

    def fixed_inputs(self, model: ModelInfo) -> list[Any]:
        """--input_layer_value_files: each input's data from its file (None: random)."""
        specs = [(t.name, t.dtype, [max(n, 1) for n in t.shape]) for t in model.inputs]
        try:
            return sim_outputs.fixed_inputs(self.p, specs)
        except sim_outputs.InputFileError as exc:
            self.out.error(str(exc))
            raise Failed from None

    def save_outputs(self, ex: Execution, fixed: list[Any]) -> None:
        """--output_filepath: the last run's outputs with the applied delegates' error."""
        path = self.p["output_filepath"]
        if self.phone.engine == "litert":
            details = self.interpreter.get_output_details()
            values = [self.interpreter.get_tensor(d["index"]) for d in details]
            source = "LiteRT's CPU outputs"
        else:
            values = sim_outputs.derived_outputs(ex.model, fixed)
            source = "outputs derived from the model without inference"
        changed = []
        for applied in ex.applied:
            plan = applied.plan
            if not plan.delegated:
                continue
            fp16 = plan.name == "Hexagon" or bool(
                self.p["gpu_precision_loss_allowed"]
                if plan.name == "GPU"
                else self.p["nnapi_allow_fp16"]
            )
            wrong = plan.failure is not None and plan.failure.kind == "wrong_results"
            values = sim_outputs.delegated_outputs(
                values, plan.name, fp16=fp16, wrong=wrong, seed=ex.model.sha256
            )
            changed.append(f"{plan.name} ({'fp16' if fp16 else 'fp32'})")
        if sim_outputs.write(path, values):
            how = f", changed as {' and '.join(changed)} would" if changed else ""
            self.out.info(
                f"farm virtual device: outputs written to {path} are simulated: {source}{how}"
            )

    # ---------------------------------------------------------------- timing model

    def node_costs(self, ex: Execution) -> tuple[list[float], dict[int, float]]:
        """Simulated per-run cost: per CPU node (µs at one thread), per delegate partition."""
        model, sim = ex.model, self.phone.sim
        xnn = ds.cpu_node_us(model, sim, xnnpack=True)
        plain = ds.cpu_node_us(model, sim, xnnpack=False)
        in_xnn = ex.xnnpack.delegated if ex.xnnpack else set()
        cpu = [xnn[i] if i in in_xnn else plain[i] for i in range(model.node_count)]
        parts: dict[int, float] = {}
        k = 0
        for a in ex.applied:
            for part in a.plan.parts:
                parts[k] = sum(xnn[i] for i in part) / a.speedup + ds.PARTITION_OVERHEAD_US
                k += 1
        return cpu, parts

    def reference_cpu_us(self, model: ModelInfo) -> float:
        """Simulated time of the whole model on the phone's CPU, one thread, XNNPACK."""
        sim = self.phone.sim
        xnn = ds.cpu_node_us(model, sim, xnnpack=True)
        plain = ds.cpu_node_us(model, sim, xnnpack=False)
        taken = ds.plan_xnnpack(model).delegated
        return sum(xnn[i] if i in taken else plain[i] for i in range(model.node_count)) or 1.0

    # ---------------------------------------------------------------- engines

    def prepare_litert(self, ex: Execution) -> None:
        """Build the LiteRT interpreter the CPU runs (XNNPACK as the run asks) with inputs.

        A delegated run instead times the host's reference: the whole model on one thread with
        XNNPACK, as a one-thread CPU run does (see make_run).
        """
        import numpy as np

        if ex.applied:
            self.interpreter = make_interpreter(ex.model.path, 1, xnnpack=True)
        else:
            self.interpreter = make_interpreter(
                ex.model.path, self.p["num_threads"], xnnpack=ex.xnnpack is not None
            )
        rng = np.random.default_rng()
        for detail in self.interpreter.get_input_details():
            dtype = detail["dtype"]
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                data = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True)
            else:
                data = rng.uniform(-1, 1, size=detail["shape"])
            self.input_data.append((detail["index"], data.astype(dtype)))
        if ex.xnnpack is not None and not ex.applied:
            ex.xnnpack = _real_xnnpack_plan(self.interpreter, ex.model) or ex.xnnpack

    def _invoke(self, *, one_thread: bool) -> tuple[float, float]:
        """One real inference: the seconds it counts as, and its wall seconds.

        On one thread it counts as the CPU time of the thread that ran it: what the inference
        computed, without the time other programs on the host took the CPU away (a phone's
        benchmark has its cores to itself). On more threads, its wall time.
        """
        start, cpu = time.perf_counter(), time.thread_time()
        for index, data in self.input_data:
            self.interpreter.set_tensor(index, data)
        self.interpreter.invoke()
        wall = time.perf_counter() - start
        return (time.thread_time() - cpu if one_thread else wall), wall

    def make_run(self, ex: Execution) -> Callable[[bool], int]:
        """A function doing one inference and returning its (reported) microseconds."""
        cpu, parts = self.node_costs(ex)
        threads = self.threads()
        cpu_nodes = ex.cpu_nodes()
        cpu_us = sum(cpu[i] for i in cpu_nodes) / threads
        delegate_us = sum(parts.values())
        first_factor = max([a.first_factor for a in ex.applied], default=1.8)
        state = {"first": True}

        def noise() -> float:
            factor = self.rng.lognormvariate(0.0, 0.03)
            if self.rng.random() < 0.02:
                factor *= 1.0 + self.rng.random() * 0.6
            if state["first"]:
                state["first"] = False
                factor *= first_factor
            return factor

        if self.phone.engine == "model":
            clock = self.clock
            assert isinstance(clock, VirtualClock)

            def run_model(_warmup: bool) -> int:
                us = max((cpu_us * self.slowdown + delegate_us) * noise(), 1.0)
                clock.spend(us)
                return int(us)

            return run_model

        if not ex.applied:
            one_thread = self.p["num_threads"] == 1

            def run_cpu(_warmup: bool) -> int:
                return max(int(self._invoke(one_thread=one_thread)[0] * 1e6), 1)

            return run_cpu

        # Delegated runs on the litert engine: a real one-thread XNNPACK inference of the whole
        # model on the host, times the profile's ratio between this run (delegated partitions
        # and the CPU rest at these threads) and the phone's CPU running the whole model on one
        # thread; so "vs CPU 1t" has the sign and size the profile gives. Wall time is padded
        # to the reported duration.
        reference_us = self.reference_cpu_us(ex.model)
        # The host's one-thread time of the model, from inferences back to back as the CPU
        # cells run them: an inference right after the padding sleep below runs on cold caches
        # and would count as slower than the CPU cell's.
        host_s = statistics.median(
            self._invoke(one_thread=True)[0] for _ in range(_CALIBRATION_RUNS)
        )

        def run_delegated(_warmup: bool) -> int:
            start = time.perf_counter()
            self._invoke(one_thread=True)  # the work a real run does, kept for the wall time
            spent = time.perf_counter() - start
            us = host_s * 1e6 * (cpu_us + delegate_us * noise()) / reference_us
            if us / 1e6 > spent:
                time.sleep((us / 1e6 - spent) * self.phone.time_scale)
            return max(int(us), 1)

        return run_delegated

    def slowdown_factor(self) -> float:
        """The factor of a `slowdown` fault matching this run's delegate and model (else 1)."""
        fault = self.phone.faults().get("slowdown")
        if not isinstance(fault, dict):
            return 1.0
        asked = {name.lower() for name in self._requested()}
        if not asked - {"xnnpack"}:
            asked.add("cpu")  # no accelerator asked for: the CPU runs it
        kind = str(fault.get("delegate", "*"))
        if kind != "*" and kind not in asked:
            return 1.0
        if not fnmatch.fnmatch(os.path.basename(self.p["graph"]), str(fault.get("model", "*"))):
            return 1.0
        return float(fault.get("factor", 1.0))

    def slowed(self, run: Callable[[bool], int]) -> Callable[[bool], int]:
        """`run` made slower by the phone's `slowdown` fault, in reported and spent time."""
        factor = self.slowdown_factor()
        if factor == 1.0:
            return run

        def slowed_run(warmup: bool) -> int:
            us = run(warmup)
            extra = us * (factor - 1.0)
            if extra > 0 and isinstance(self.clock, VirtualClock):
                self.clock.spend(extra)
            elif extra > 0:
                time.sleep(extra / 1e6 * self.phone.time_scale)
            return max(int(us * factor), 1)

        return slowed_run

    # ---------------------------------------------------------------- phases

    def phase(self, min_runs: int, min_secs: float, max_secs: float, run: Callable) -> Stat:
        """BenchmarkModel::Run: runs while (runs < N or elapsed < min_secs) and within max_secs."""
        self.out.info(
            f"Running benchmark for at least {min_runs} iterations and at least "
            f"{_g(min_secs)} seconds but terminate if exceeding {_g(max_secs)} seconds."
        )
        clock = self.clock
        stat = Stat()
        now = clock.now()
        min_finish = now + int(min_secs * 1e6)
        max_finish = now + int(max_secs * 1e6)
        delay = self.p["run_delay"]
        frequency = self.p["run_frequency"]
        gap = 1.0 / frequency if frequency > 0 else 0.0
        next_finish = now / 1e6 + gap
        runs = 0
        while (runs < min_runs or now < min_finish) and now <= max_finish:
            if self.crash_signal is not None:
                _die(self.crash_signal, self.marker)
            stat.add(run(True))
            self.heat()
            if frequency > 0:
                delay = next_finish - clock.now() / 1e6
                next_finish += gap
            clock.sleep(delay)
            now = clock.now()
            runs += 1
        self.heat(flush=True)
        if isinstance(clock, VirtualClock):
            clock.flush()
        self.out.info(stat.line() + "\n")
        return stat

    # ---------------------------------------------------------------- run

    def run(self) -> int:
        p, out, phone = self.p, self.out, self.phone
        if p["help"]:
            out.error(usage())
            raise Failed
        if not p["graph"]:
            out.error("Please specify the name of your TF Lite input file with --graph")
            raise Failed
        if p["enable_op_profiling"] and p["op_profiling_output_mode"] not in (
            "stdout",
            "csv",
            "proto",
        ):
            out.error(
                f"Output mode{p['op_profiling_output_mode']} is not supported. Supported "
                "values are: 'stdout', 'csv' and 'proto'."
            )
            raise Failed
        if p["report_peak_memory_footprint"] and p["memory_footprint_check_interval_ms"] <= 0:
            out.warn(
                f"--memory_footprint_check_interval_ms is set to "
                f"{p['memory_footprint_check_interval_ms']} (ms), This value is invalid, and it "
                "will be set to the default value 50 (ms)."
            )
            p.values["memory_footprint_check_interval_ms"] = 50
        self.log_params()
        monitor = None
        if p["report_peak_memory_footprint"]:
            monitor = PeakMonitor(p["memory_footprint_check_interval_ms"])
            monitor.start()
        self._lock(exclusive=False)
        # Imports are the stand-in's start-up cost, not the model's initialisation.
        from ai_edge_litert import schema_py_generated  # noqa: F401

        if phone.engine == "litert":
            import ai_edge_litert.interpreter  # noqa: F401

        start_kb = _rss_kb()
        t0 = time.perf_counter()
        model = self.load_model()
        self.model_quantized = model.quantized
        out.runtime("INFO", "Initialized TensorFlow Lite runtime.")
        self.check_signature(model)
        created = self.create_delegates()
        ex = self.apply_delegates(model, created)
        fixed = self.fixed_inputs(model)
        if phone.engine == "litert":
            self.prepare_litert(ex)
            self.input_data = [
                (index, data if given is None else given)
                for (index, data), given in zip(self.input_data, fixed, strict=False)
            ]
        self.unlock()  # the simulated delegate set-up below only sleeps
        delegate_init_us = sum(a.init_us for a in ex.applied)
        if phone.engine == "model":
            init_us = (800 + model.size_mb * 900 + model.node_count * 25) * self.rng.lognormvariate(
                0, 0.08
            ) + delegate_init_us
            self.clock.sleep(init_us / 1e6)
        else:
            if delegate_init_us:
                time.sleep(delegate_init_us / 1e6 * phone.time_scale)
            init_us = (time.perf_counter() - t0) * 1e6
            if phone.time_scale < 1:
                init_us += delegate_init_us * (1 - phone.time_scale)
        init_kb = _rss_kb()
        out.info(f"The input model file size (MB): {_g(model.size_mb)}")
        out.info(f"Initialized session in {_g(int(init_us) / 1e3)}ms.")

        warmup_runs, warmup_secs = p["warmup_runs"], p["warmup_min_secs"]
        num_runs, min_secs = p["num_runs"], p["min_secs"]
        if p["dry_run"]:
            warmup_runs, warmup_secs, num_runs, min_secs = 0, -1.0, 0, -1.0
        crash = phone.faults().get("benchmark_crash")
        if isinstance(crash, dict):
            self.crash_signal = int(crash.get("signal", signal.SIGSEGV))
        run = self.slowed(self.make_run(ex))
        if p["dry_run"]:
            run = _no_run
        waited = self._lock(exclusive=True)
        if self.cpu_lock is not None:
            out.info(
                f"farm virtual device: holding the lab's host CPU lock for the timed runs "
                f"(waited {waited:.3f} s): no other virtual phone of this lab runs "
                "inference or set-up meanwhile."
            )
        warmup = self.phase(warmup_runs, warmup_secs, p["max_secs"], run)
        inference = self.phase(num_runs, min_secs, p["max_secs"], run)
        self.unlock()
        if p["output_filepath"]:
            self.save_outputs(ex, fixed)
        end_kb = _rss_kb()

        out.info(
            f"Inference timings in us: Init: {int(init_us)}, First inference: {warmup.first()}, "
            f"Warmup (avg): {_g(warmup.avg())}, Inference (avg): {_g(inference.avg())}"
        )
        self.memory_lines(model, ex, start_kb, init_kb, end_kb, monitor)
        if p["enable_op_profiling"]:
            self.op_profile(ex, inference, init_us, delegate_init_us)
        return 0

    def memory_lines(
        self,
        model: ModelInfo,
        ex: Execution,
        start_kb: int,
        init_kb: int,
        end_kb: int,
        monitor: PeakMonitor | None,
    ) -> None:
        out = self.out
        if self.phone.engine == "model":
            base = model.size_mb * 1.05 + 2.4 + (40.0 if ex.applied else 0.0)
            init_mb = round(base * self.rng.lognormvariate(0, 0.03) * 256) / 256
            overall_mb = init_mb + round(self.rng.uniform(0.1, 0.6) * 256) / 256
        else:
            init_mb = max(init_kb - start_kb, 0) / 1024.0
            overall_mb = max(end_kb - start_kb, 0) / 1024.0
        out.info(
            "Note: as the benchmark tool itself affects memory footprint, the following is "
            "only APPROXIMATE to the actual memory footprint of the model at runtime. Take "
            "the information at your discretion."
        )
        out.info(
            f"Memory footprint delta from the start of the tool (MB): init={_g(init_mb)} "
            f"overall={_g(overall_mb)}"
        )
        if monitor is None:
            return
        peak = monitor.stop()
        rss, shared = _statm_mb()
        if self.phone.engine == "model":
            peak = overall_mb + 9.0 + self.rng.uniform(0, 1)
            rss, shared = int(peak), 6
        out.info(f"Overall peak memory footprint (MB) via periodic monitoring: {_g(peak)}")
        out.info("Memory status at the end of exeution:")
        out.info(f"- VmRSS              : {rss} MB")
        out.info(f"+ RssAnnon           : {rss - shared} MB")
        out.info(f"+ RssFile + RssShmem : {shared} MB")

    # ---------------------------------------------------------------- op profiling

    def op_profile(self, ex: Execution, runs: Stat, init_us: float, delegate_us: float) -> None:
        """The two op-profiling sections; node times apportion each run by the cost model."""
        model = ex.model
        cpu, parts = self.node_costs(ex)
        threads = self.threads()
        rows: list[tuple[str, str, float]] = []  # type, name, share of a run
        xnn_parts = ex.xnnpack.parts if ex.xnnpack and not ex.applied else []
        in_xnn = {i: k for k, part in enumerate(xnn_parts) for i in part}
        delegate_parts = [(a.plan, part) for a in ex.applied for part in a.plan.parts]
        first_of = {part[0]: j for j, (_, part) in enumerate(delegate_parts)}
        taken = {i for _, part in delegate_parts for i in part}
        seen_xnn: set[int] = set()
        for i in range(model.node_count):
            if i in first_of:
                plan, part = delegate_parts[first_of[i]]
                name = f"[{model.node_names[part[-1]]}]:{model.node_count + first_of[i]}"
                rows.append((plan.kernel, name, parts[first_of[i]]))
            elif i in taken:
                continue
            elif i in in_xnn:
                k = in_xnn[i]
                if k in seen_xnn:
                    continue
                seen_xnn.add(k)
                part = xnn_parts[k]
                name = f"[{model.node_names[part[-1]]}]:{model.node_count + k}"
                rows.append(("TfLiteXNNPackDelegate", name, sum(cpu[j] for j in part) / threads))
            else:
                rows.append(
                    (model.op_sequence[i], f"[{model.node_names[i]}]:{i}", cpu[i] / threads)
                )
        total = sum(r[2] for r in rows) or 1.0
        shares = [r[2] / total for r in rows]
        # Per-node time of every timed run: the run split by shares, 1 % left to the runtime.
        per_node = [[int(v * 0.99 * s) for v in runs.values] for s in shares]
        totals = Stat(percentiles=False)
        for k in range(runs.count):
            totals.add(sum(col[k] for col in per_node))

        init_rows = []
        if ex.applied:
            init_rows.append(("ModifyGraphWithDelegate", "ModifyGraphWithDelegate/0", delegate_us))
        init_rows.append(("AllocateTensors", "AllocateTensors/0", max(init_us * 0.02, 50.0)))
        init_nodes = [[int(us)] for _, _, us in init_rows]
        init_total = Stat(percentiles=False)
        init_total.add(sum(v[0] for v in init_nodes))
        self.out.info("Profiling Info for Benchmark Initialization:")
        self.out.raw(
            _profile_text([(t, n) for t, n, _ in init_rows], init_nodes, init_total) + "\n"
        )
        self.out.info("Operator-wise Profiling Info for Regular Benchmark Runs:")
        self.out.raw(_profile_text([(t, n) for t, n, _ in rows], per_node, totals) + "\n")


def _backend_failure(forced: str) -> Failure:
    message = (
        'OpenCL library not loaded - dlopen failed: library "libOpenCL.so" not found'
        if forced == "cl"
        else "OpenGL-based API could not be initialized: EGL_NOT_INITIALIZED"
    )
    return Failure(when="always", kind="init_error", message=message)


def _no_run(_warmup: bool) -> int:
    return 0


def make_interpreter(path: str, num_threads: int, *, xnnpack: bool) -> Any:
    """A LiteRT interpreter with tensors allocated, at `num_threads` (<= 0: runtime default)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    # The runtime's own stderr lines would repeat what the tool prints; keep them out.
    with quiet_stderr():
        interpreter = Interpreter(
            model_path=path,
            num_threads=num_threads if num_threads > 0 else None,
            experimental_op_resolver_type=resolver,
        )
        interpreter.allocate_tensors()
    return interpreter


_CALIBRATION_RUNS = 15  # back-to-back one-thread inferences a delegated run's time is based on


def _real_xnnpack_plan(interpreter: Any, model: ModelInfo) -> ds.DelegatePlan | None:
    """The XNNPACK partitions LiteRT really made, read from the execution plan."""
    try:
        ops = [op["op_name"] for op in interpreter._get_ops_details()]
    except Exception:  # private API; fall back to the op-set estimate
        return None
    delegate_nodes = sum(1 for op in ops if op == "DELEGATE")
    if delegate_nodes == 0:
        return ds.DelegatePlan("XNNPACK", None, model.node_count, [])
    estimate = ds.plan_xnnpack(model)
    remaining = len(ops) - delegate_nodes
    if len(estimate.parts) == delegate_nodes and model.node_count - len(estimate.delegated) == (
        remaining
    ):
        return estimate
    return None


def _profile_text(rows: list[tuple[str, str]], per_node: list[list[int]], totals: Stat) -> str:
    """StatsCalculator output: Run Order, Top by Computation Time, Summary by node type."""
    n_runs = max(totals.count, 1)
    grand = sum(sum(col) for col in per_node) or 1
    details = []
    for order, ((node_type, name), col) in enumerate(zip(rows, per_node, strict=True)):
        first = col[0] / 1000 if col else 0.0
        avg = sum(col) / len(col) / 1000 if col else 0.0
        details.append((order, node_type, name, first, avg, sum(col)))

    def header(title: str) -> str:
        return (
            f"============================== {title} ==============================\n"
            f"\t{'[node type]':>40}\t{'[first]':>9}\t{'[avg ms]':>9}\t{'[%]':>8}\t{'[cdf%]':>8}"
            f"\t{'[mem KB]':>10}\t{'[times called]':>9}\t[Name]"
        )

    def table(title: str, ordered: list) -> list[str]:
        lines = [header(title)]
        cumulative = 0
        for _, node_type, name, first, avg, total in ordered:
            cumulative += total
            lines.append(
                f"\t{node_type:>40}\t{first:>9.3f}\t{avg:>9.3f}\t{total * 100 / grand:>7.3f}%"
                f"\t{cumulative * 100 / grand:>7.3f}%\t{0.0:>10.3f}\t{1:>9}\t{name}"
            )
        lines.append("")
        return lines

    lines = table("Run Order", details)
    lines += table("Top by Computation Time", sorted(details, key=lambda d: -d[4])[:10])
    by_type: dict[str, list[int]] = {}
    for _, node_type, _, _, _, total in details:
        entry = by_type.setdefault(node_type, [0, 0])
        entry[0] += 1
        entry[1] += total // n_runs
    accumulated = sum(v[1] for v in by_type.values()) or 1
    lines.append(f"Number of nodes executed: {len(details)}")
    lines.append(
        "============================== Summary by node type =============================="
    )
    lines.append(
        f"\t{'[Node type]':>40}\t{'[count]':>9}\t{'[avg ms]':>10}\t{'[avg %]':>11}"
        f"\t{'[cdf %]':>11}\t{'[mem KB]':>10}\t{'[times called]':>10}"
    )
    cdf = 0.0
    for node_type, (count, us) in sorted(by_type.items(), key=lambda kv: (-kv[1][1], kv[0])):
        pct = us / accumulated * 100
        cdf += pct
        lines.append(
            f"\t{node_type:>40}\t{count:>9}\t{us / 1000:>10.3f}\t{pct:>10.3f}%\t{cdf:>10.3f}%"
            f"\t{0.0:>10.3f}\t{count:>9}"
        )
    lines.append("")
    lines.append(f"Timings (microseconds): {totals.line()}")
    lines.append("Memory (bytes): count=0")
    lines.append(f"{len(details)} nodes observed")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def _engine_line(phone: Phone) -> str:
    if phone.engine == "model":
        what = "no inference is run, all timings are simulated from the device profile"
    else:
        what = (
            "CPU timings are measured with LiteRT on the host (one thread: the thread's CPU "
            "time); a delegate's timings are simulated: the host's one-thread CPU time for the "
            "model times the profile's delegate/CPU ratio"
        )
    return (
        f"INFO: farm virtual device {phone.serial} ({phone.profile.name}): "
        f"benchmark_model stand-in, engine {phone.engine}: {what}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in with `argv` (default: sys.argv[1:]); the tool's exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    out = Out()
    try:
        phone = locate_phone()
    except (FarmError, OSError, ValueError) as exc:
        out.error(f"farm virtual device: {' '.join(str(exc).split())}")
        return 1
    out.raw(_engine_line(phone))
    with _Marker(phone) as marker:
        previous = {}

        def on_signal(signum: int, _frame: object) -> None:
            _die(signum, marker)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[sig] = signal.signal(sig, on_signal)
        try:
            out.info("STARTING!")
            try:
                params = parse_flags(args)
            except FlagError as exc:
                out.error(str(exc))
                out.error(usage())
                out.error("Benchmarking failed.")
                return 1
            if params.unconsumed:
                out.warn(f"Unconsumed cmdline flags: {' '.join(params.unconsumed)}")
            benchmark = Benchmark(phone, params, out, marker)
            try:
                return benchmark.run()
            except Failed:
                out.error("Benchmarking failed.")
                return 1
            finally:
                benchmark.unlock()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
