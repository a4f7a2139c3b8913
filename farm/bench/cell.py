"""One cell from start to end: model on the device, launch, wait with a deadline, pull the log,
parse it, and the `CellResult` that says what happened.

The runner owns scheduling, retries and events; a cell reaches them through `CellHost`.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, TypeVar

from farm.android import jobs, paths
from farm.android.adb import Device, join_command
from farm.android.info import DeviceInfo
from farm.bench import gate
from farm.bench.binaries import BinaryChoice
from farm.bench.deploy import ensure_model
from farm.bench.flags import PROVIDERS, benchmark_args, tool_flags
from farm.bench.parse import BenchmarkResult, parse_file
from farm.bench.plan import Cell
from farm.config import Config
from farm.errors import DeviceError, RemoteFileMissing
from farm.results.model import (
    BinaryInfo,
    CellResult,
    Delegation,
    DeviceSummary,
    Metrics,
    Status,
    Verdict,
)
from farm.results.provenance import Snapshot, Thermal

T = TypeVar("T")


@dataclass(frozen=True)
class RunnerOptions:
    """Deadlines and pacing of a run."""

    run_deadline_s: float = 300.0  # one benchmark invocation on the device
    grace_s: float = 60.0  # how long a device may stay unreachable before it counts as lost
    command_timeout_s: float = 30.0  # one short shell command
    transfer_timeout_s: float = 600.0  # one push or pull
    wait_chunk_s: float = 2.0  # longest single wait on the device between stop checks
    kill_wait_s: float = 2.0  # between SIGTERM and SIGKILL
    reruns: int = 1  # re-runs of a cell whose benchmark was killed from outside (reboot)
    restart_adb_server: bool = True  # start a local adb server again when it died
    # A device is set aside after this many incomplete cells in a row (0: never) that also
    # span at least `quarantine_after_s` seconds, so a short fault costs a few cells only.
    quarantine_after: int = 3
    quarantine_after_s: float = 60.0
    storage_wait_s: float = 30.0  # how long a full device disk is re-checked before giving up
    # Called in the worker as each phase begins: (serial, phase, cell); see PHASES.
    on_phase: Callable[[str, str, Cell | None], None] | None = None


# The phases of a cell on a device, in order ("discovery" is the service's, before any cell).
PHASES = ("discovery", "push", "launch", "run", "pull")


class Interrupted(Exception):
    """The run is being stopped (Ctrl-C / SIGTERM)."""


class DeviceLost(Exception):
    """A device stayed unreachable for longer than the grace period."""


class CellHost(Protocol):
    """What a cell needs from the worker of its device."""

    device: Device
    info: DeviceInfo
    binary: BinaryChoice
    config: Config
    options: RunnerOptions
    run_dir: Path
    run_id: str
    retries: Counter[str]
    models: dict[str, str]  # model sha256 -> device path
    affinity: str | None  # the taskset mask benchmarks run with (None: not pinned)
    prepared: bool  # the device carries settings the run must restore

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The device's logger: every line starts with its serial."""
        ...

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """Call fn, waiting out transient faults; DeviceLost after the grace period."""
        ...

    def check_stop(self) -> None:
        """Raise Interrupted when the run is being stopped."""
        ...

    def status(self, text: str) -> None:
        """Show what the device is doing."""
        ...

    def phase(self, name: str, cell: Cell | None) -> None:
        """Tell the phase hook that a phase begins."""
        ...

    def add_pushed(self, n: int) -> None:
        """Count bytes pushed."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait; Interrupted when the run is being stopped meanwhile."""
        ...

    def note(self, text: str) -> None:
        """Tell the user something about the device, once per run."""
        ...


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Portable file names: what every file system and CI artifact store takes (no ':' either).
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A portable file name for `text` (serials, delegate labels); never '.' or '..'."""
    name = _UNSAFE.sub("_", text).strip("_.")
    return name or "_"


def log_name(cell: Cell) -> str:
    """The log file name of a cell in the run folder (on the device: prefixed by the run id)."""
    # The model name is cut (the hash tells models apart) so the name fits a file system's 255.
    return (
        f"{safe_name(cell.model)[:80]}-{cell.model_sha256[:12]}-{safe_name(cell.delegate)[:60]}"
        f"-t{cell.threads}-r{cell.repeat}.log"
    )


def cell_result(
    cell: Cell,
    info: DeviceInfo,
    status: Status,
    reason: str | None = None,
    *,
    binary_sha256: str | None = None,
    command: str | None = None,
    log: str | None = None,
    parsed: BenchmarkResult | None = None,
    started_at: str | None = None,
    duration_s: float | None = None,
    simulated: bool = False,
    exit_status: int | None = None,
    retries: dict[str, int] | None = None,
    tool_flags: dict[str, str] | None = None,
    binary: BinaryInfo | None = None,
    thermal: Thermal | None = None,
) -> CellResult:
    """The result of one cell; `parsed` is the tool's output as the parser read it.

    An ok cell whose delegate did not run (a fallback) gets the reason in `reason`.
    """
    data = parsed.to_dict() if parsed is not None else None
    if parsed is not None and status is Status.OK and not reason:
        reason = ignored_flags_reason(parsed.warnings, tool_flags or {})
    verdict = None
    if parsed is not None and cell.spec.kind in PROVIDERS:
        said, why = parsed.verdict(PROVIDERS[cell.spec.kind])
        verdict = Verdict(said) if said is not None else None
        if status is Status.OK and verdict is not None and verdict.fallback:
            reason = fallback_reason(cell.delegate, cell.spec.kind, verdict, why)
    return CellResult(
        key=cell.key,
        serial=cell.serial,
        server=cell.server,
        device=DeviceSummary.of(info),
        model=cell.model,
        model_sha256=cell.model_sha256,
        delegate=cell.delegate,
        threads=cell.threads,
        repeat=cell.repeat,
        status=status,
        reason=reason or None,
        binary_sha256=binary_sha256,
        metrics=Metrics.from_json(data),
        delegation=Delegation.from_json(data["delegation"]) if data is not None else None,
        command=command,
        log=log,
        started_at=started_at,
        duration_s=duration_s,
        simulated=simulated,
        exit_status=exit_status,
        retries=dict(retries or {}),
        delegate_kind=cell.spec.kind,
        verdict=verdict,
        tool_flags=dict(tool_flags or {}),
        binary=binary,
        thermal=thermal,
        hot=thermal is not None and thermal.hot,
        throttled=thermal is not None and thermal.throttled,
    )


def ignored_flags_reason(warnings: list[str], flags: dict[str, str]) -> str | None:
    """The tool flags the binary said it did not know ("Unconsumed cmdline flags: ...")."""
    unknown = " ".join(w for w in warnings if w.startswith("Unconsumed cmdline flags"))
    ignored = [
        f"--{name}" for name in flags if f"--{name}=" in unknown or unknown.endswith(f"--{name}")
    ]
    if not ignored:
        return None
    return f"this benchmark_model does not know {', '.join(ignored)}: ignored"


def fallback_reason(label: str, kind: str, verdict: Verdict, why: str | None) -> str:
    """One line saying that a delegate did not run and the graph ran on the CPU."""
    if verdict is Verdict.NONE:
        return f"{label}: the delegate took no node — ran on CPU"
    if kind == "external" and why and why.startswith("Unable to load"):
        return f"{label}: library did not load — ran on CPU"
    detail = f" ({why.rstrip('.')})" if why else ""
    return f"{label}: delegate was not applied{detail} — ran on CPU"


def model_path(host: CellHost, cell: Cell) -> str:
    """The model's device path, pushed first when the device does not have it."""
    remote = host.models.get(cell.model_sha256)
    if remote is None:
        host.status(f"pushing {cell.model}")
        host.phase("push", cell)
        deployed = host.retry(
            "model push",
            lambda: ensure_model(host.device, Path(cell.model_path), cell.model_sha256),
        )
        host.add_pushed(deployed.pushed_bytes)
        remote = host.models[cell.model_sha256] = deployed.remote_path
    return remote


def run_cell(host: CellHost, cell: Cell) -> CellResult:
    """Run one cell on the host's device to its result (never raises for the tool's failures)."""
    opt = host.options
    started_at = now()
    t0 = time.monotonic()
    remote_model = model_path(host, cell)
    args = benchmark_args(cell.spec, threads=cell.threads, graph=remote_model, config=host.config)
    pin = ["taskset", host.affinity] if host.affinity else []
    command = join_command([*pin, host.binary.remote_path, *args])
    name = log_name(cell)
    remote_log = paths.log_path(f"{safe_name(host.run_id)}-{name}")
    local_log = host.run_dir / "logs" / safe_name(host.info.serial) / name
    rel_log = local_log.relative_to(host.run_dir).as_posix()

    def result(
        status: Status,
        reason: str | None = None,
        *,
        log: str | None = None,
        parsed: BenchmarkResult | None = None,
        exit_status: int | None = None,
    ) -> CellResult:
        return cell_result(
            cell,
            host.info,
            status,
            reason,
            binary_sha256=host.binary.sha256,
            command=command,
            started_at=started_at,
            duration_s=round(time.monotonic() - t0, 3),
            log=log,
            parsed=parsed,
            simulated=log is not None and is_simulated(host.run_dir / log),
            retries=dict(host.retries),
            exit_status=exit_status,
            tool_flags=tool_flags(cell.spec, host.config),
            binary=host.binary.info(),
            thermal=sampler.thermal(before, waited_s, gate_state, after),
        )

    before, waited_s, gate_state = gate.cool_down(host)
    sampler = gate.Sampler(host)
    after: Snapshot | None = None
    t_run = time.monotonic()
    reruns = 0
    while True:
        host.phase("launch", cell)
        host.status(f"{cell.model} {cell.delegate} t{cell.threads} r{cell.repeat}")
        job = launch_job(host, command, remote_log)
        if job is None:
            return result(Status.ERROR, "launch printed no pid")
        host.phase("run", cell)
        timed_out, exit_status = wait_job(host, job, t_run, sampler)
        forget_job(host, job)
        if timed_out or exit_status is not None or reruns >= opt.reruns:
            break
        # Gone without an exit status: killed from outside (a reboot), not by its own fault.
        reruns += 1
        host.retries["rerun"] += 1
        host.log.info("%s: ended without an exit status; running it again", cell.key)
    after = gate.snapshot(host)
    host.phase("pull", cell)
    have_log = pull_log(host, remote_log, local_log)
    log = rel_log if have_log else None
    if timed_out:
        return result(
            Status.TIMEOUT,
            f"still running after the {opt.run_deadline_s:g} s deadline; killed",
            log=log,
            parsed=_parse(local_log) if have_log else None,
            exit_status=exit_status,
        )
    if exit_status is None:
        twice = " twice" if reruns else ""
        return result(
            Status.ERROR,
            f"the benchmark ended without an exit status{twice} "
            "(killed from outside: a reboot or the OS)",
            log=log,
        )
    if not have_log:
        return result(
            Status.ERROR,
            f"no log on the device (exit status {exit_status})",
            exit_status=exit_status,
        )
    parsed = _parse(local_log, exit_status)
    if parsed is None:
        tail = _tail(local_log)
        return result(
            Status.ERROR,
            "benchmark printed nothing recognisable" + (f": {tail}" if tail else ""),
            log=log,
            exit_status=exit_status,
        )
    if parsed.status != "ok":
        return result(Status.FAILED, parsed.reason, log=log, parsed=parsed, exit_status=exit_status)
    return result(Status.OK, log=log, parsed=parsed, exit_status=exit_status)


def launch_job(
    host: CellHost, command: str, remote_log: str, what: str = "launch"
) -> jobs.Job | None:
    """Start `command` detached on the device with its output in `remote_log` (retried)."""
    opt = host.options
    return host.retry(
        what,
        lambda: jobs.launch(
            host.device,
            command,
            log=remote_log,
            binary=host.binary.remote_path,
            timeout=opt.command_timeout_s,
            grace_s=opt.kill_wait_s,
        ),
    )


def wait_job(
    host: CellHost, job: jobs.Job, t0: float, sampler: gate.Sampler | None = None
) -> tuple[bool, int | None]:
    """Wait until the benchmark ends (sampling its thermal state when given a sampler); kill it
    at the deadline or when the run stops.

    Returns (timed out, exit status or None when it ended without one).
    """
    opt = host.options
    deadline = t0 + opt.run_deadline_s
    while True:
        if sampler is not None:
            sampler.poll()
        try:
            host.check_stop()
        except Interrupted:
            _kill(host, job)
            raise
        left = deadline - time.monotonic()
        if left <= 0:
            _kill(host, job)
            return True, jobs.exit_status(host.device, job, timeout=opt.command_timeout_s)
        chunk = min(opt.wait_chunk_s, left)
        try:
            state = host.retry(
                "wait",
                lambda c=chunk: jobs.wait(  # type: ignore[misc]
                    host.device, job, chunk_s=c, timeout=opt.command_timeout_s
                ),
            )
        except Interrupted:
            _kill(host, job)
            raise
        if not state.running:
            return False, state.exit_status


def _kill(host: CellHost, job: jobs.Job) -> None:
    """Stop the job on the device; best effort (a leftover is stopped by the next run)."""
    try:
        jobs.kill(
            host.device,
            job,
            grace_s=host.options.kill_wait_s,
            timeout=host.options.command_timeout_s,
        )
    except DeviceError as exc:  # the device may be gone; the next run stops a leftover
        host.log.warning("could not kill pid %s: %s", job.pid, exc)


def forget_job(host: CellHost, job: jobs.Job) -> None:
    try:
        jobs.forget(host.device, job, timeout=host.options.command_timeout_s)
    except DeviceError as exc:  # best effort: a leftover pid file is checked by the next run
        host.log.debug("could not remove the pid files of %s: %s", job.log, exc)


def pull_log(host: CellHost, remote: str, local: Path) -> bool:
    """Pull the device log into the run folder; False when there is none."""
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        host.retry(
            "pull log",
            lambda: host.device.pull(remote, str(local), timeout=host.options.transfer_timeout_s),
        )
    except RemoteFileMissing:
        return False
    return local.is_file()


# The first line the virtual phones' benchmark_model prints; real builds never print it.
_SIMULATED = re.compile(r"^(?:INFO: )?farm virtual device .*benchmark_model stand-in", re.M)


def is_simulated(path: Path) -> bool:
    """True when the log's opening lines say the tool is a virtual phone's stand-in."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return bool(_SIMULATED.search(head))


def _parse(path: Path, exit_status: int | None = None) -> BenchmarkResult | None:
    """The last benchmark invocation found in a log (with its exit status folded in), or None."""
    results = parse_file(path, exit_status=exit_status)
    return results[-1] if results else None


def _tail(path: Path, n: int = 200) -> str:
    try:
        text = path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""
    return " ".join(text.split())
