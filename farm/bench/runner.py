"""The runner: benchmark cells on devices in parallel, strictly one cell at a time per device.

Each device gets a worker thread. A worker deploys the binary and models, then for each cell
launches `benchmark_model` detached on the device (output to a log file there, pid recorded),
polls it with the per-run deadline, kills it by pid at the deadline, pulls and parses the log
and appends the cell line to the journal at once. Workers never draw: they send `Event`s that
the main thread turns into a rich progress display, one line per device.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import queue
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from farm.errors import (
    AdbServerError,
    DeviceError,
    DeviceStorageFull,
    DeviceTimeout,
    DeviceUnavailable,
    FarmError,
    OutputError,
)
from farm.report.text import safe_text

if TYPE_CHECKING:
    from farm.android.info import DeviceInfo
    from farm.bench.plan import Cell
    from farm.config import Config
    from farm.results.journal import Journal

log = logging.getLogger(__name__)

T = TypeVar("T")

# Faults worth waiting out: the device or the adb server may come back.
TRANSIENT = (DeviceUnavailable, DeviceTimeout, AdbServerError)


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
    quarantine_after: int = 3  # incomplete cells in a row before a device is set aside
    # Called in the worker as each phase begins: (serial, phase, cell); see PHASES.
    on_phase: Callable[[str, str, Any], None] | None = None


# The phases of a cell on a device, in order ("discovery" is the service's, before any cell).
PHASES = ("discovery", "push", "launch", "run", "pull")


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
    status: str | None = None


@dataclass
class RunOutcome:
    """What a run produced: counts per status, bytes pushed, and whether it was interrupted."""

    counts: Counter[str] = field(default_factory=Counter)
    bytes_pushed: int = 0
    interrupted: bool = False
    cells: list[dict[str, Any]] = field(default_factory=list)


class DeviceLost(Exception):
    """A device stayed unreachable for longer than the grace period."""


class Interrupted(Exception):
    """The run is being stopped (Ctrl-C / SIGTERM)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")
# A host write failing with one of these stops the run: nothing more could be recorded.
_HOST_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def safe_name(text: str) -> str:
    """A file-name-safe version of `text` (serials, delegate labels); never '.' or '..'."""
    name = _UNSAFE.sub("_", text).strip("_")
    return name if name.strip(".") else "_"


def log_name(cell: Cell) -> str:
    """The log file name of a cell in the run folder (on the device: prefixed by the run id)."""
    # The model name is cut (the hash tells models apart) so the name fits a file system's 255.
    return (
        f"{safe_name(cell.model)[:80]}-{cell.model_sha256[:12]}-{safe_name(cell.delegate)[:60]}"
        f"-t{cell.threads}-r{cell.repeat}.log"
    )


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
        progress: bool = True,
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
        self.outcome = RunOutcome()
        self.output_error: OutputError | None = None  # the run folder stopped taking writes
        self._lock = threading.Lock()

    # -- called from workers -------------------------------------------------------------------

    def record(self, line: dict[str, Any]) -> None:
        """Append one cell line to the journal (flushed) and count it."""
        with self._lock:
            try:
                self.journal.append(line)
            except OutputError as exc:
                self.output_failed(exc)
                raise
            self.outcome.counts[line["status"]] += 1
            self.outcome.cells.append(line)
        self.events.put(Event(line["serial"], "cell", status=line["status"]))

    def output_failed(self, exc: OutputError) -> None:
        """The run folder cannot be written: stop every device (the first error is kept)."""
        self.output_error = self.output_error or exc
        self.stop_event.set()

    def add_pushed(self, n: int) -> None:
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
        display = _Display(self.jobs, enabled=self.progress)
        with display:
            alive = len(workers)
            while alive:
                try:
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
        self._tasks: dict[str, Any] = {}
        self._progress: Any = None

    def __enter__(self) -> _Display:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

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


class _DeviceWorker(threading.Thread):
    """Runs one device's cells in order; every outcome becomes a cell line, never an exception."""

    def __init__(self, runner: Runner, job: DeviceJob) -> None:
        super().__init__(name=f"farm-{job.info.serial}", daemon=True)
        self.runner = runner
        self.job = job
        self.info = job.info
        self.serial = job.info.serial
        self.opt = runner.options
        self.log = logging.LoggerAdapter(log, {"serial": self.serial})
        self.device: Any = None
        self.binary: Any = None  # BinaryChoice
        self.models: dict[str, str] = {}  # model sha256 -> remote path
        self.pending: list[Any] = list(job.cells)
        self.final_text = "done"
        self.retries: Counter[str] = Counter()  # steps retried for the current cell
        self.incomplete_in_row = 0

    def status(self, text: str) -> None:
        self.runner.events.put(Event(self.serial, "status", text))

    def run(self) -> None:
        try:
            self._run()
        except Interrupted:
            self.final_text = "stopped"
        except OutputError as exc:
            self.runner.output_failed(exc)
            self.final_text = "stopped"
        except DeviceLost as exc:
            self._close_remaining("device_lost", str(exc))
            self.final_text = "device lost"
        except Exception as exc:  # a bug on our side must not stop the other devices
            if isinstance(exc, OSError) and exc.errno in _HOST_WRITE_ERRNOS:  # our disk
                reason = exc.strerror or exc
                self.runner.output_failed(OutputError(f"{self.runner.run_dir}: {reason}"))
                self.final_text = "stopped"
                return
            self.log.exception("[%s] worker failed", self.serial)
            self._close_remaining("error", f"internal error: {type(exc).__name__}: {exc}")
            self.final_text = "error"
        finally:
            self.runner.events.put(Event(self.serial, "finished", self.final_text))

    def _run(self) -> None:
        from farm.android.discovery import device_for

        self.device = device_for(self.info)
        self._stop_orphans()
        if not self._deploy_binary():
            return
        while self.pending:
            if self.runner.stop_event.is_set():
                raise Interrupted
            cell = self.pending[0]
            started_at = _now()
            t0 = time.monotonic()
            self.retries = Counter()
            try:
                line = self._run_cell(cell)
            except DeviceError as exc:  # the device answered, but the step failed: this cell only
                self.log.warning("[%s] %s: %s", self.serial, cell.key, exc)
                reason = str(exc)
                if isinstance(exc, DeviceStorageFull):
                    reason += f" ({self._free_space()})"
                line = self._line(
                    cell=cell,
                    info=self.info,
                    started_at=started_at,
                    status="error",
                    reason=reason,
                    t0=t0,
                )
            self.pending.pop(0)
            self.runner.record(line)
            self._count_incomplete(line)

    # -- deploy --------------------------------------------------------------------------------

    def _deploy_binary(self) -> bool:
        """Put the benchmark binary in place; False when the device cannot have one."""
        from farm.bench.binaries import Unsupported, binary_for

        self.status("deploying benchmark binary")
        self._phase("push", None)
        try:
            choice = self._retry(
                "binary deploy",
                lambda: binary_for(self.device, binaries=dict(self.runner.config.binaries)),
            )
        except FarmError as exc:
            reason = f"binary deploy failed: {exc}"
            if isinstance(exc, DeviceStorageFull):
                reason += f" ({self._free_space()})"
            self._close_remaining("error", reason)
            self.final_text = "error"
            return False
        if isinstance(choice, Unsupported):
            self._close_remaining("unsupported", str(choice))
            self.final_text = "unsupported"
            return False
        self.binary = choice
        self.runner.add_pushed(int(getattr(choice, "pushed_bytes", 0) or 0))
        return True

    def _model_path(self, cell: Any) -> str:
        from farm.bench.deploy import ensure_model

        remote = self.models.get(cell.model_sha256)
        if remote is None:
            self.status(f"pushing {cell.model}")
            self._phase("push", cell)
            result = self._retry(
                "model push",
                lambda: ensure_model(self.device, Path(cell.model_path), cell.model_sha256),
            )
            remote, pushed = _remote_and_bytes(result)
            self.runner.add_pushed(pushed)
            self.models[cell.model_sha256] = remote
        return remote

    # -- one cell ------------------------------------------------------------------------------

    def _run_cell(self, cell: Any) -> dict[str, Any]:
        from farm.android import paths
        from farm.android.adb import join_command, sh_quote
        from farm.bench.flags import benchmark_args

        started_at = _now()
        t0 = time.monotonic()
        base = dict(cell=cell, info=self.info, started_at=started_at)
        remote_model = self._model_path(cell)
        args = benchmark_args(
            cell.spec, threads=cell.threads, graph=remote_model, config=self.runner.config
        )
        command = join_command([self.binary.remote_path, *args])
        name = log_name(cell)
        remote_log = paths.log_path(f"{self.runner.run_id}-{name}")
        q_log = sh_quote(remote_log)
        q_pid = sh_quote(remote_log + ".pid")
        q_rc = sh_quote(remote_log + ".rc")
        # The benchmark runs under a detached shell that writes its pid, then its exit status
        # ("PID STATUS") when it ends. A launch retried after a lost answer first stops the
        # process the earlier try started.
        inner = f'{command} & p=$!; echo $p >{q_pid}; wait $p; echo "$p $?" >{q_rc}'
        launch = (
            f"{stop_pids_script(q_pid, self.opt.kill_wait_s)}; "
            f"mkdir -p {sh_quote(paths.LOGS)} && cd {sh_quote(paths.ROOT)} && "
            f"rm -f {q_log} {q_rc} && "
            f"{{ nohup sh -c {sh_quote(inner)} </dev/null >{q_log} 2>&1 & "
            f"i=0; while [ ! -s {q_pid} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; "
            f"cat {q_pid} 2>/dev/null; }}"
        )
        local_log = self.runner.run_dir / "logs" / safe_name(self.serial) / name
        rel_log = local_log.relative_to(self.runner.run_dir).as_posix()
        reruns = 0
        while True:
            self._phase("launch", cell)
            self.status(f"{cell.model} {cell.delegate} t{cell.threads} r{cell.repeat}")
            result = self._retry("launch", lambda: self._shell(launch))
            pid = _pid(result.output)
            if pid is None:
                return self._line(
                    **base,
                    status="error",
                    reason=f"launch printed no pid: {result.output.strip()[-200:]!r}",
                    command=command,
                    t0=t0,
                )
            self.log.debug("[%s] launched pid %s: %s", self.serial, pid, command)
            self._phase("run", cell)
            timed_out, exit_status = self._wait(pid, t0, q_rc)
            self._forget_pid(f"{q_pid} {q_rc}")
            if timed_out or exit_status is not None or reruns >= self.opt.reruns:
                break
            # Gone without an exit status: killed from outside (a reboot), not by its own fault.
            reruns += 1
            self.retries["rerun"] += 1
            self.log.info(
                "[%s] %s: ended without an exit status; running it again", self.serial, cell.key
            )
        self._phase("pull", cell)
        have_log = self._pull_log(remote_log, local_log)
        extra = {"exit_status": exit_status}
        if timed_out:
            return self._line(
                **base,
                status="timeout",
                reason=f"still running after the {self.opt.run_deadline_s:g} s deadline; killed",
                command=command,
                log=rel_log if have_log else None,
                parsed=_parse(local_log) if have_log else None,
                t0=t0,
                extra=extra,
            )
        if exit_status is None:
            return self._line(
                **base,
                status="error",
                reason="the benchmark ended without an exit status"
                f"{' twice' if reruns else ''} (killed from outside: a reboot or the OS)",
                command=command,
                log=rel_log if have_log else None,
                t0=t0,
                extra=extra,
            )
        if not have_log:
            return self._line(
                **base,
                status="error",
                reason=f"no log on the device (exit status {exit_status})",
                command=command,
                t0=t0,
                extra=extra,
            )
        parsed = _parse(local_log, exit_status)
        if parsed is None:
            tail = _tail(local_log)
            return self._line(
                **base,
                status="error",
                reason="benchmark printed nothing recognisable" + (f": {tail}" if tail else ""),
                command=command,
                log=rel_log,
                t0=t0,
                extra=extra,
            )
        if getattr(parsed, "status", "ok") != "ok":
            return self._line(
                **base,
                status="failed",
                reason=_failure_reason(parsed),
                command=command,
                log=rel_log,
                parsed=parsed,
                t0=t0,
                extra=extra,
            )
        return self._line(
            **base,
            status="ok",
            command=command,
            log=rel_log,
            parsed=parsed,
            reason=None,
            t0=t0,
            extra=extra,
        )

    def _wait(self, pid: int, t0: float, q_rc: str) -> tuple[bool, int | None]:
        """Wait until the benchmark ends; kill it at the deadline.

        Returns (timed out, exit status or None when it ended without one). Each probe waits
        on the device for up to `wait_chunk_s`, so the end of a run is seen within a tenth of
        a second without a stream of adb calls. A pid counts as the benchmark only while its
        command line names benchmark_model (after a reboot, pids are reused).
        """
        from farm.android.adb import sh_quote

        deadline = t0 + self.opt.run_deadline_s
        while True:
            if self.runner.stop_event.is_set():
                self._kill(pid)
                raise Interrupted
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill(pid)
                return True, self._exit_status(pid, q_rc)
            chunk = min(self.opt.wait_chunk_s, left)
            token = sh_quote(posixpath.basename(self.binary.remote_path) or "benchmark_model")
            probe = (
                f"i=0; while [ $i -lt {max(1, round(chunk / 0.1))} ] && kill -0 {pid} 2>/dev/null;"
                f" do sleep 0.1; i=$((i+1)); done; e=1; if kill -0 {pid} 2>/dev/null; then "
                f'case "$(tr "\\0" " " </proc/{pid}/cmdline 2>/dev/null)" in ""|*{token}*) e=;; '
                'esac; fi; if [ -z "$e" ]; then echo running; else j=0; '
                f'while ! grep -q "^{pid} " {q_rc} 2>/dev/null && [ $j -lt 10 ]; '
                "do sleep 0.1; j=$((j+1)); done; "
                f"echo ended; cat {q_rc} 2>/dev/null; fi"
            )
            try:
                out = self._retry(
                    "wait",
                    lambda p=probe, c=chunk: self._shell(
                        p, timeout=c + 1 + self.opt.command_timeout_s
                    ),
                ).output
            except Interrupted:
                self._kill(pid)
                raise
            if "ended" in out:
                return False, _exit_status(out.split("ended", 1)[1], pid)

    def _exit_status(self, pid: int, q_rc: str) -> int | None:
        """The exit status the launch shell recorded for `pid`, if any (best effort)."""
        try:
            out = self._shell(
                f'j=0; while ! grep -q "^{pid} " {q_rc} 2>/dev/null && [ $j -lt 10 ]; '
                "do sleep 0.1; j=$((j+1)); done;"
                f" cat {q_rc} 2>/dev/null"
            ).output
        except DeviceError:
            return None
        return _exit_status(out, pid)

    def _reattach(self, exc: BaseException) -> None:
        """A local adb server that died is started again; a network device the server no
        longer knows (it restarted) is connected again."""
        text = str(exc)
        if self.opt.restart_adb_server and "adb server unreachable" in text:
            restart_local_server(self.device.server)
        if ":" not in self.serial or "not found" not in text and "unreachable" not in text:
            return
        try:
            answer = self.device.server.client.connect(self.serial, timeout=5)
            self.log.info("[%s] adb connect again: %s", self.serial, str(answer).strip())
        except Exception as err:  # adbutils raises several kinds; the retry goes on anyway
            self.log.debug("[%s] adb connect failed: %s", self.serial, err)

    def _phase(self, phase: str, cell: Any) -> None:
        """Tell the on_phase hook (tests, tracing) that a phase begins."""
        if self.opt.on_phase is not None:
            self.opt.on_phase(self.serial, phase, cell)

    def _free_space(self) -> str:
        """What df says about the device's free space for farm (best effort)."""
        from farm.android import paths
        from farm.android.adb import sh_quote

        try:
            out = self._shell(f"df {sh_quote(paths.ROOT.rsplit('/', 1)[0])}").output
        except DeviceError as exc:
            return f"df failed: {exc.message}"
        return free_space(out) or "df printed nothing usable"

    def _count_incomplete(self, line: dict[str, Any]) -> None:
        """Quarantine the device after `quarantine_after` incomplete cells in a row."""
        if line["status"] in ("ok", "failed", "unsupported"):
            self.incomplete_in_row = 0
            return
        self.incomplete_in_row += 1
        limit = self.opt.quarantine_after
        if limit > 0 and self.incomplete_in_row >= limit and self.pending:
            reason = (
                f"device quarantined after {self.incomplete_in_row} incomplete cells in a row"
                f" (last: {line['status']}: {line.get('reason') or 'no reason'})"
            )
            self.log.warning("[%s] %s", self.serial, reason)
            self._close_remaining("error", reason)
            self.final_text = "quarantined"

    def _stop_orphans(self) -> None:
        """Stop benchmark processes an earlier, killed farm process of this run left running."""
        from farm.android import paths
        from farm.android.adb import sh_quote

        pattern = f"{sh_quote(paths.LOGS)}/{sh_quote(self.runner.run_id)}-*.pid"
        try:
            out = self._retry(
                "orphan check",
                lambda: self._shell(
                    stop_pids_script(pattern, self.opt.kill_wait_s),
                    timeout=self.opt.command_timeout_s + self.opt.kill_wait_s,
                ),
            ).output
        except DeviceError as exc:
            self.log.warning("[%s] could not check for orphaned benchmarks: %s", self.serial, exc)
            return
        stopped = [t for t in out.split() if t.isdigit()]
        if stopped:
            self.log.info(
                "[%s] stopped %d benchmark process(es) left by an earlier try of this run: %s",
                self.serial,
                len(stopped),
                " ".join(stopped),
            )

    def _forget_pid(self, q_pid: str) -> None:
        """Remove a finished cell's pid file; best effort (a leftover is checked on resume)."""
        try:
            self._shell(f"rm -f {q_pid}")
        except DeviceError as exc:
            self.log.debug("[%s] could not remove %s: %s", self.serial, q_pid, exc)

    def _kill(self, pid: int) -> None:
        """SIGTERM the device process, then SIGKILL if it is still there; best effort."""
        steps = max(1, int(self.opt.kill_wait_s / 0.2))
        script = (
            f"kill -TERM {pid} 2>/dev/null; i=0; "
            f"while [ $i -lt {steps} ] && kill -0 {pid} 2>/dev/null; "
            "do sleep 0.2; i=$((i+1)); done; "
            f"kill -0 {pid} 2>/dev/null && kill -KILL {pid} 2>/dev/null; echo killed"
        )
        try:
            self._shell(script, timeout=self.opt.command_timeout_s + self.opt.kill_wait_s)
        except DeviceError as exc:
            self.log.warning("[%s] could not kill pid %s: %s", self.serial, pid, exc)

    def _pull_log(self, remote: str, local: Path) -> bool:
        """Pull the device log into the run folder; False when there is none."""
        st = self._retry("stat log", lambda: self.device.stat(remote))
        if st is None:
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        self._retry(
            "pull log",
            lambda: self.device.pull(remote, str(local), timeout=self.opt.transfer_timeout_s),
        )
        return local.is_file()

    # -- helpers -------------------------------------------------------------------------------

    def _shell(self, cmd: str, *, timeout: float | None = None) -> Any:
        return self.device.shell(cmd, timeout=timeout or self.opt.command_timeout_s)

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """Call fn, waiting out transient faults with backoff up to the grace period."""
        first_failure: float | None = None
        delay = 0.5
        while True:
            if self.runner.stop_event.is_set():
                raise Interrupted
            try:
                return fn()
            except TRANSIENT as exc:
                now = time.monotonic()
                first_failure = first_failure or now
                self.retries[what] += 1
                self._reattach(exc)
                if now - first_failure >= self.opt.grace_s:
                    raise DeviceLost(
                        f"unreachable for {now - first_failure:.0f} s during {what}: {exc}"
                    ) from exc
                self.log.info("[%s] %s: %s; retrying in %.1f s", self.serial, what, exc, delay)
                self.status(f"unreachable, retrying ({what})")
                if self.runner.stop_event.wait(delay):
                    raise Interrupted from exc
                delay = min(delay * 2, 8.0)

    def _close_remaining(self, status: str, reason: str) -> None:
        """Record every cell not yet run with one status (device lost, no binary, ...)."""
        for cell in self.pending:
            try:
                self.runner.record(
                    self._line(
                        cell=cell, info=self.info, started_at=None, status=status, reason=reason
                    )
                )
            except OutputError:  # the run is stopping; nothing more can be recorded
                break
        self.pending = []

    def _line(
        self,
        *,
        cell: Any,
        info: Any,
        started_at: str | None,
        status: str,
        reason: str | None,
        command: str | None = None,
        log: str | None = None,
        parsed: Any = None,
        t0: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        local = self.runner.run_dir / log if log else None
        return cell_line(
            cell,
            info,
            status=status,
            reason=reason,
            binary_sha256=getattr(self.binary, "sha256", None),
            command=command,
            log=log,
            parsed=parsed,
            started_at=started_at,
            duration_s=None if t0 is None else round(time.monotonic() - t0, 3),
            simulated=bool(local and is_simulated(local)),
            retries=dict(self.retries) if started_at is not None else {},
            **(extra or {}),
        )


def cell_line(
    cell: Any,
    info: Any,
    *,
    status: str,
    reason: str | None,
    binary_sha256: str | None = None,
    command: str | None = None,
    log: str | None = None,
    parsed: Any = None,
    started_at: str | None = None,
    duration_s: float | None = None,
    simulated: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """The journal line of one cell (see farm.results.schema); `extra` keys are added."""
    from farm.results import schema

    metrics = parsed.to_dict() if parsed is not None else None
    delegation = (metrics or {}).get("delegation")
    return schema.cell_line(
        cell=cell,
        device=info,
        status=status,
        reason=reason,
        binary_sha256=binary_sha256,
        metrics=metrics,
        delegation=delegation,
        command=command,
        log=log,
        started_at=started_at,
        duration_s=duration_s,
        simulated=simulated,
        **extra,
    )


def unsupported_lines(
    pairs: Iterable[tuple[Any, str]], devices: dict[str, Any], *, status: str = "unsupported"
) -> list[dict]:
    """Cell lines for cells the plan set aside (unsupported, or device not online)."""
    return [
        cell_line(cell, devices[cell.serial], status=status, reason=reason)
        for cell, reason in pairs
    ]


def stop_pids_script(pid_files: str, kill_wait_s: float) -> str:
    """A device shell script: stop the benchmark processes named by `pid_files` (a quoted path
    or glob), SIGTERM then SIGKILL, remove the files and print the pids it stopped.

    A pid counts only while its command line names benchmark_model (pids are reused).
    """
    steps = max(1, int(kill_wait_s / 0.2))
    return (
        f'ps_=; for f_ in {pid_files}; do [ -f "$f_" ] || continue; read p_ <"$f_"; '
        'case "$p_" in ""|*[!0-9]*) ;; *) case "$(tr "\\0" " " 2>/dev/null </proc/$p_/cmdline)" in '
        '*benchmark_model*) kill -TERM $p_ 2>/dev/null && ps_="$ps_ $p_";; esac;; esac; '
        'rm -f "$f_"; done; '
        f'i_=0; while [ -n "$ps_" ] && [ $i_ -lt {steps} ]; do a_=; '
        'for p_ in $ps_; do kill -0 $p_ 2>/dev/null && a_=1; done; [ -z "$a_" ] && break; '
        "sleep 0.2; i_=$((i_+1)); done; "
        'for p_ in $ps_; do kill -KILL $p_ 2>/dev/null; done; echo "stopped:$ps_"'
    )


_restart_lock = threading.Lock()
_last_restart: dict[str, float] = {}
RESTART_COOLDOWN_S = 5.0


def restart_local_server(server: Any, *, timeout: float = 15.0) -> bool:
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
            import adbutils

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


def _exit_status(text: str, pid: int) -> int | None:
    """The status from the launch shell's "PID STATUS" record, when it is this pid's."""
    parts = text.split()
    if len(parts) >= 2 and parts[0] == str(pid) and parts[1].isdigit():
        return int(parts[1])
    return None


def free_space(df_output: str) -> str | None:
    """ "N MiB free on /data" from `df` output (1K blocks, Available in the 4th column)."""
    for line in df_output.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 6 and cols[3].isdigit():
            return f"{int(cols[3]) / 1024:.1f} MiB free on {cols[5]} (df)"
    return None


def _pid(output: str) -> int | None:
    for token in reversed(output.split()):
        if token.isdigit():
            return int(token)
    return None


def _remote_and_bytes(result: Any) -> tuple[str, int]:
    """ensure_model's answer as (remote path, bytes pushed)."""
    if isinstance(result, tuple):
        return str(result[0]), int(result[1])
    if isinstance(result, str):
        return result, 0
    return str(result.remote_path), int(getattr(result, "pushed_bytes", 0) or 0)


def is_simulated(path: Path) -> bool:
    """True when the log's opening lines say the tool is a virtual phone's stand-in."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return bool(_SIMULATED.search(head))


# The first line the virtual phones' benchmark_model prints; real builds never print it.
_SIMULATED = re.compile(r"^(?:INFO: )?farm virtual device .*benchmark_model stand-in", re.M)


def _parse(path: Path, exit_status: int | None = None) -> Any:
    """The last benchmark invocation found in a log (with its exit status folded in), or None."""
    from farm.bench.parse import parse_file

    results = parse_file(path, exit_status=exit_status)
    return results[-1] if results else None


def _failure_reason(parsed: Any) -> str:
    """ "kind: first tool error"; a death by signal names it: "crashed (SIGSEGV)"."""
    data = parsed.to_dict()
    kind = data.get("failure_kind") or "failed"
    if getattr(parsed, "signal", None):
        kind = f"{kind} ({parsed.signal})"
    errors = [e for e in (data.get("errors") or []) if e]
    return f"{kind}: {errors[0]}" if errors else str(kind)


def _tail(path: Path, n: int = 200) -> str:
    try:
        text = path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""
    return " ".join(text.split())
