"""The runner: benchmark cells on devices in parallel, strictly one cell at a time per device.

Each device gets a worker thread that deploys the binary, then runs its cells in order
(`farm.bench.cell`), waits out transient faults with backoff, quarantines a device that keeps
failing, and appends each `CellResult` to the journal as it finishes. Workers never draw: they
send `Event`s that the main thread turns into a rich progress display, one line per device.
"""

from __future__ import annotations

import errno
import logging
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import adbutils
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from farm.android import jobs
from farm.android.adb import AdbServer, Device
from farm.android.discovery import device_for
from farm.android.info import DeviceInfo
from farm.bench import gate
from farm.bench.accuracy import check as check_accuracy
from farm.bench.binaries import BinaryChoice, Unsupported, binary_for
from farm.bench.cell import (
    PHASES,
    DeviceLost,
    Interrupted,
    RunnerOptions,
    cell_result,
    log_name,
    now,
    run_cell,
    safe_name,
)
from farm.bench.plan import Cell
from farm.config import Config
from farm.errors import (
    AdbServerError,
    AdbServerUnreachable,
    DeviceError,
    DeviceNotFound,
    DeviceStorageFull,
    DeviceTimeout,
    DeviceUnavailable,
    FarmError,
    OutputError,
)
from farm.report.text import safe_text
from farm.results.journal import Journal
from farm.results.model import CellResult, RunOutcome, Status

__all__ = [
    "PHASES",
    "DeviceJob",
    "Event",
    "PlainProgress",
    "ProgressMode",
    "Runner",
    "RunnerOptions",
    "log_name",
    "restart_local_server",
    "safe_name",
    "set_aside",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
ProgressMode = Literal["rich", "plain", "off"]

# Faults worth waiting out: the device or the adb server may come back.
TRANSIENT = (DeviceUnavailable, DeviceTimeout, AdbServerError)
# A host write failing with one of these stops the run: nothing more could be recorded.
_HOST_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@dataclass
class DeviceJob:
    """The cells one device has to run, in order."""

    info: DeviceInfo
    cells: list[Cell]


@dataclass(frozen=True)
class Event:
    """What a worker tells the main thread: a status text, a finished cell, or its own end."""

    serial: str
    kind: str  # "status" | "cell" | "finished"
    text: str = ""
    status: Status | None = None
    result: CellResult | None = None  # the finished cell of a "cell" event


class PrefixLogger(logging.LoggerAdapter[logging.Logger]):
    """Puts "[serial] " before every message of one device's worker."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['serial'] if self.extra else '?'}] {msg}", kwargs


class Runner:
    """Runs device jobs in parallel and journals every finished cell."""

    def __init__(
        self,
        jobs: list[DeviceJob],
        *,
        config: Config,
        journal: Journal,
        run_dir: Path,
        run_id: str,
        options: RunnerOptions | None = None,
        progress: bool | ProgressMode = True,
    ) -> None:
        self.jobs = jobs
        self.config = config
        self.journal = journal
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.options = options or RunnerOptions()
        self.progress = progress
        self.stop_event = threading.Event()
        self.events: queue.Queue[Event] = queue.Queue()
        self.outcome = RunOutcome(run_dir=self.run_dir)
        self.output_error: OutputError | None = None  # the run folder stopped taking writes
        self._lock = threading.Lock()

    # -- called from workers -------------------------------------------------------------------

    def record(self, result: CellResult) -> None:
        """Append one cell to the journal (flushed) and count it."""
        with self._lock:
            try:
                self.journal.append(result)
            except OutputError as exc:
                self.output_failed(exc)
                raise
            self.outcome.counts[result.status] += 1
            self.outcome.cells.append(result)
        self.events.put(Event(result.serial, "cell", status=result.status, result=result))

    def warn(self, text: str) -> None:
        """A warning the user sees at the end of the run (and in farm.log)."""
        log.warning("%s", text)
        with self._lock:
            self.outcome.warnings.append(text)

    def output_failed(self, exc: OutputError) -> None:
        """The run folder cannot be written: stop every device (the first error is kept)."""
        self.output_error = self.output_error or exc
        self.stop_event.set()

    def add_pushed(self, n: int) -> None:
        """Count bytes pushed to devices."""
        with self._lock:
            self.outcome.bytes_pushed += n

    # -- called from the main thread -----------------------------------------------------------

    def stop(self) -> None:
        """Ask every worker to stop its device process and end; finished cells are kept."""
        self.stop_event.set()

    def run(self) -> RunOutcome:
        """Run every job to its end (or until stopped) and return what happened."""
        workers = [_DeviceWorker(self, job) for job in self.jobs if job.cells]
        for w in workers:
            w.start()
        mode: ProgressMode
        if isinstance(self.progress, bool):
            mode = "rich" if self.progress else "off"
        else:
            mode = self.progress
        display: _Display | PlainProgress
        if mode == "plain":
            display = PlainProgress(self.jobs)
        else:
            display = _Display(self.jobs, enabled=mode == "rich")
        with display:
            alive = len(workers)
            while alive:
                try:
                    display.tick()
                    try:
                        event = self.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    if event.kind == "finished":
                        alive -= 1
                    display.update(event)
                except KeyboardInterrupt:
                    self.outcome.interrupted = True
                    self.stop()
                    display.note("stopping: killing benchmark processes on the devices…")
        for w in workers:
            w.join()
        while not self.events.empty():
            display.update(self.events.get_nowait())
        return self.outcome


class _Display:
    """rich progress, one line per device, drawn only by the main thread."""

    def __init__(self, jobs: list[DeviceJob], *, enabled: bool) -> None:
        self.enabled = enabled
        self.jobs = jobs
        self._tasks: dict[str, TaskID] = {}
        self._progress: Progress | None = None

    def __enter__(self) -> _Display:
        if not self.enabled:
            return self
        self._progress = Progress(
            TextColumn("{task.fields[label]}", markup=False),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}", markup=False),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.__enter__()
        for job in self.jobs:
            info = job.info
            label = safe_text(f"{info.serial} {info.model}")[:40].ljust(40)
            self._tasks[info.serial] = self._progress.add_task(
                "", total=len(job.cells), label=label, status="waiting"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def update(self, event: Event) -> None:
        task = self._tasks.get(event.serial)
        if self._progress is None or task is None:
            return
        if event.kind == "cell":
            self._progress.update(task, advance=1)
        elif event.kind == "status":
            self._progress.update(task, status=safe_text(event.text)[:60])
        elif event.kind == "finished":
            self._progress.update(task, status=event.text or "done")

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False)

    def tick(self) -> None:
        """rich redraws by itself."""


class PlainProgress:
    """Progress for logs (no terminal, CI): one plain line per finished cell, and a heartbeat
    line when nothing was printed for HEARTBEAT_S. Drawn only by the main thread."""

    HEARTBEAT_S = 30.0

    def __init__(
        self,
        jobs: list[DeviceJob],
        *,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs = jobs
        self.total = sum(len(job.cells) for job in jobs)
        self.done = 0
        self.state = {job.info.serial: "waiting" for job in jobs}
        self.stream = stream
        self.clock = clock
        self.started = self.last = clock()

    def __enter__(self) -> PlainProgress:
        devices = len([job for job in self.jobs if job.cells])
        self._write(f"running {self.total} cells on {devices} device(s)")
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, event: Event) -> None:
        """A finished cell is one line; status changes are kept for the heartbeat."""
        if event.kind == "cell" and event.result is not None:
            self.done += 1
            self._write(f"cell {self.done}/{self.total} {cell_line(event.result)}")
        elif event.kind == "status":
            self.state[event.serial] = event.text
        elif event.kind == "finished":
            self.state[event.serial] = event.text or "done"

    def tick(self) -> None:
        """The heartbeat: what every device is doing, when nothing was printed for a while."""
        if self.clock() - self.last < self.HEARTBEAT_S:
            return
        doing = "; ".join(f"{serial}: {text}" for serial, text in self.state.items())
        self._write(f"still running: {self.done}/{self.total} cells done; {doing}")

    def note(self, text: str) -> None:
        self._write(text)

    def _write(self, text: str) -> None:
        now_s = self.clock()
        stream = self.stream or sys.stderr
        print(f"[{now_s - self.started:6.0f}s] {safe_text(text)}", file=stream, flush=True)
        self.last = now_s


def cell_line(result: CellResult) -> str:
    """'serial Pixel 7 · model · gpu · 1t · ok · 5.12 ms': one finished cell, one line."""
    metrics = result.metrics
    avg = metrics.inference_avg_us if metrics is not None else None
    parts = [
        f"{result.serial} {result.device.model}".strip(),
        result.model,
        result.delegate,
        f"{result.threads}t",
        result.status.value,
    ]
    if result.status is Status.OK and avg is not None:
        parts.append(f"{avg / 1000.0:.2f} ms")
    if result.marks:
        parts.append(", ".join(result.marks))
    if result.status is not Status.OK and result.reason:
        reason = safe_text(result.reason)
        parts.append(reason if len(reason) <= 100 else reason[:99] + "…")
    return " · ".join(parts)


class _DeviceWorker(threading.Thread):
    """Runs one device's cells in order; every outcome becomes a CellResult, never an exception.

    It is the `CellHost` of its cells: the device, its binary, the retry policy and the events.
    """

    def __init__(self, runner: Runner, job: DeviceJob) -> None:
        super().__init__(name=f"farm-{job.info.serial}", daemon=True)
        self.runner = runner
        self.info = job.info
        self.serial = job.info.serial
        self.options = runner.options
        self.config = runner.config
        self.run_dir = runner.run_dir
        self.run_id = runner.run_id
        self.log = PrefixLogger(log, {"serial": self.serial})
        self.device: Device = device_for(self.info)
        self.binary: BinaryChoice  # set by _deploy_binary before any cell runs
        self.binary_sha256: str | None = None
        self.models: dict[str, str] = {}
        self.pending: list[Cell] = list(job.cells)
        self.final_text = "done"
        self.retries: Counter[str] = Counter()  # steps retried for the current cell
        self.incomplete: list[float] = []  # monotonic end times of the incomplete cells in a row
        self.affinity: str | None = None  # taskset mask (farm.bench.gate.prepare_device)
        self.prepared = False  # the device carries settings to restore at the end
        self._noted: set[str] = set()

    # -- CellHost

    def status(self, text: str) -> None:
        self.runner.events.put(Event(self.serial, "status", text))

    def phase(self, name: str, cell: Cell | None) -> None:
        if self.options.on_phase is not None:
            self.options.on_phase(self.serial, name, cell)

    def check_stop(self) -> None:
        if self.runner.stop_event.is_set():
            raise Interrupted

    def add_pushed(self, n: int) -> None:
        self.runner.add_pushed(n)

    def sleep(self, seconds: float) -> None:
        if self.runner.stop_event.wait(max(seconds, 0.0)):
            raise Interrupted

    def note(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self.runner.warn(f"{self.serial}: {text}")

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """Call fn, waiting out transient faults with backoff up to the grace period, and a
        full disk up to `storage_wait_s` (it may be freed)."""
        first_failure: float | None = None
        delay = 0.5
        while True:
            self.check_stop()
            try:
                return fn()
            except TRANSIENT as exc:
                at = time.monotonic()
                first_failure = first_failure or at
                self.retries[what] += 1
                self._reattach(exc)
                if at - first_failure >= self.options.grace_s:
                    raise DeviceLost(
                        f"unreachable for {at - first_failure:.0f} s during {what}: {exc}"
                    ) from exc
                self.log.info("%s: %s; retrying in %.1f s", what, exc, delay)
                self.status(f"unreachable, retrying ({what})")
            except DeviceStorageFull as exc:
                at = time.monotonic()
                first_failure = first_failure or at
                if at - first_failure >= self.options.storage_wait_s:
                    raise
                self.retries[what] += 1
                self.log.info("%s: %s; checking again in %.1f s", what, exc, delay)
                self.status(f"disk full, waiting ({what})")
            if self.runner.stop_event.wait(delay):
                raise Interrupted
            delay = min(delay * 2, 8.0)

    # -- the device's life

    def run(self) -> None:
        try:
            self._run()
        except Interrupted:
            self.final_text = "stopped"
        except OutputError as exc:
            self.runner.output_failed(exc)
            self.final_text = "stopped"
        except DeviceLost as exc:
            self._close_remaining(Status.DEVICE_LOST, str(exc))
            self.final_text = "device lost"
        except OSError as exc:
            if exc.errno not in _HOST_WRITE_ERRNOS:
                self._internal_error(exc)
                return
            reason = exc.strerror or exc
            self.runner.output_failed(OutputError(f"{self.runner.run_dir}: {reason}"))
            self.final_text = "stopped"
        except Exception as exc:  # a bug on our side must not stop the other devices
            self._internal_error(exc)
        finally:
            self.runner.events.put(Event(self.serial, "finished", self.final_text))

    def _internal_error(self, exc: BaseException) -> None:
        self.log.exception("worker failed")
        self._close_remaining(Status.ERROR, f"internal error: {type(exc).__name__}: {exc}")
        self.final_text = "error"

    def _run(self) -> None:
        self._stop_orphans()
        try:
            skip = gate.prepare_device(self)
            if skip:
                self.log.warning("%s", skip)
                self._close_remaining(Status.ERROR, skip)
                self.final_text = "skipped"
                return
            if self._deploy_binary():
                self._run_cells()
        finally:
            gate.restore_device(self)

    def _run_cells(self) -> None:
        first = True
        while self.pending:
            self.check_stop()
            if not first and self.config.run_delay_s:
                self.status(f"pausing {self.config.run_delay_s:g} s between cells")
                self.sleep(self.config.run_delay_s)
            first = False
            cell = self.pending[0]
            started_at = now()
            t0 = time.monotonic()
            self.retries = Counter()
            try:
                result = check_accuracy(self, cell, run_cell(self, cell))
            except DeviceError as exc:  # the device answered, but a step failed: this cell only
                self.log.warning("%s: %s", cell.key, exc.message)
                reason = str(exc)
                if isinstance(exc, DeviceStorageFull):
                    reason += f" ({self._free_space()})"
                result = self._result(cell, Status.ERROR, reason, started_at=started_at, t0=t0)
            self.pending.pop(0)
            self.runner.record(result)
            self._count_incomplete(result)

    def _deploy_binary(self) -> bool:
        """Put the benchmark binary in place; False when the device cannot have one."""
        self.status("deploying benchmark binary")
        self.phase("push", None)
        try:
            choice = self.retry(
                "binary deploy",
                lambda: binary_for(
                    self.device,
                    binaries=dict(self.config.binaries),
                    allow_translation=self.config.allow_translation,
                ),
            )
        except FarmError as exc:
            reason = f"binary deploy failed: {exc}"
            if isinstance(exc, DeviceStorageFull):
                reason += f" ({self._free_space()})"
            self._close_remaining(Status.ERROR, reason)
            self.final_text = "error"
            return False
        if isinstance(choice, Unsupported):
            self._close_remaining(Status.UNSUPPORTED, str(choice))
            self.final_text = "unsupported"
            return False
        self.binary = choice
        self.binary_sha256 = choice.sha256
        self.runner.add_pushed(choice.pushed_bytes)
        return True

    def _stop_orphans(self) -> None:
        """Stop every farm benchmark still running on the device (a killed run's, this one's
        earlier try or another's) and say so: it would share the CPU with ours."""
        try:
            stopped = self.retry(
                "orphan check",
                lambda: jobs.stop_orphans(
                    self.device,
                    grace_s=self.options.kill_wait_s,
                    timeout=self.options.command_timeout_s,
                ),
            )
        except DeviceError as exc:
            self.log.warning("could not check for benchmarks left running: %s", exc)
            return
        if stopped:
            self.runner.warn(
                f"{self.serial}: stopped {len(stopped)} farm benchmark(s) left running by an "
                f"earlier run (pid {', '.join(map(str, stopped))})"
            )

    def _reattach(self, exc: BaseException) -> None:
        """After a transient fault: forget cached facts (the device may have rebooted), start a
        local adb server that died, attach a network device or an emulator the server no longer
        knows."""
        self.device.forget()
        server_gone = isinstance(exc, (AdbServerUnreachable, AdbServerError))
        if self.options.restart_adb_server and server_gone:
            restart_local_server(self.device.server)
        if not (server_gone or isinstance(exc, DeviceNotFound)):
            return
        try:
            answer = self.device.server.attach(self.serial, timeout=5)
            if answer is not None:
                self.log.info("attached again: %s", answer.strip())
        except (adbutils.AdbError, OSError, AdbServerError) as err:  # the retry goes on anyway
            self.log.debug("attaching again failed: %s", err)

    def _free_space(self) -> str:
        return jobs.free_space(self.device, timeout=self.options.command_timeout_s)

    def _count_incomplete(self, result: CellResult) -> None:
        """Quarantine the device after `quarantine_after` incomplete cells in a row that span
        at least `quarantine_after_s`: a fault that lasts keeps costing, a short one does not."""
        if result.complete:
            self.incomplete = []
            return
        self.incomplete.append(time.monotonic())
        limit = self.options.quarantine_after
        if limit <= 0 or len(self.incomplete) < limit or not self.pending:
            return
        span = self.incomplete[-1] - self.incomplete[0]
        if span < self.options.quarantine_after_s:
            return
        reason = (
            f"device quarantined after {len(self.incomplete)} incomplete cells in a row over "
            f"{span:.0f} s (last: {result.status.value}: {result.reason or 'no reason'})"
        )
        self.log.warning("%s", reason)
        self._close_remaining(Status.ERROR, reason)
        self.final_text = "quarantined"

    def _result(
        self,
        cell: Cell,
        status: Status,
        reason: str,
        *,
        started_at: str | None = None,
        t0: float | None = None,
    ) -> CellResult:
        return cell_result(
            cell,
            self.info,
            status,
            reason,
            binary_sha256=self.binary_sha256,
            started_at=started_at,
            duration_s=None if t0 is None else round(time.monotonic() - t0, 3),
            retries=dict(self.retries) if started_at is not None else {},
        )

    def _close_remaining(self, status: Status, reason: str) -> None:
        """Record every cell not yet run with one status (device lost, no binary, ...)."""
        for cell in self.pending:
            try:
                self.runner.record(self._result(cell, status, reason))
            except OutputError:  # the run is stopping; nothing more can be recorded
                break
        self.pending = []


def set_aside(
    pairs: Iterable[tuple[Cell, str]],
    devices: dict[str, DeviceInfo],
    status: Status = Status.UNSUPPORTED,
) -> list[CellResult]:
    """Results for cells the plan set aside (unsupported, or device not online)."""
    return [cell_result(c, devices[c.serial], status, reason) for c, reason in pairs]


_restart_lock = threading.Lock()
_last_restart: dict[str, float] = {}
RESTART_COOLDOWN_S = 5.0


def restart_local_server(server: AdbServer, *, timeout: float = 15.0) -> bool:
    """Start the adb server at `server`'s address again when it is local and nothing listens.

    At most one try per server every RESTART_COOLDOWN_S, whichever worker asks; True when an
    adb server was started. The adb binary is the one adbutils would use.
    """
    if server.host not in ("127.0.0.1", "localhost", "::1"):
        return False
    with _restart_lock:
        now = time.monotonic()
        if now - _last_restart.get(server.address, -RESTART_COOLDOWN_S) < RESTART_COOLDOWN_S:
            return False
        _last_restart[server.address] = now
        if server.reachable(timeout=0.5):
            return False
        try:
            adb = adbutils.adb_path()
            result = subprocess.run(
                [adb, "-P", str(server.port), "start-server"],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            log.warning("adb server %s is down and could not be started: %s", server.address, exc)
            return False
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            log.warning("adb server %s is down; %s start-server: %s", server.address, adb, tail[0])
            return False
        log.warning("adb server %s was down: started it again (%s)", server.address, adb)
        return True
