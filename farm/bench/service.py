"""The `run` service: config → discovery → models → plan → deploy and run → run folder → report."""

from __future__ import annotations

import glob
import logging
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from farm.bench.runner import RunnerOptions
from farm.errors import ConfigError, InputError, NoDeviceError, OutputError

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")
# Longest wait at discovery for selected devices that are offline or do not answer yet.
DISCOVERY_WAIT_S = 10.0


@dataclass
class RunResult:
    """What `farm run` produced."""

    run_dir: Path
    counts: Counter[str]
    bytes_pushed: int
    exit_code: int
    interrupted: bool = False
    cells: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def expand_models(patterns: list[str]) -> list[Path]:
    """Model paths from paths and globs, in order, without duplicates."""
    out: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern) and not Path(pattern).expanduser().exists():
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True))
            if not found:
                raise InputError(f"{pattern}: no model file matches")
        else:
            found = [Path(pattern).expanduser()]
        for p in found:
            if p not in seen:
                seen.add(p)
                out.append(p)
    if not out:
        raise ConfigError("no models given (set `models:` in farm.yaml or pass --model)")
    return out


def load_models(patterns: list[str]) -> list[Any]:
    """Expand, validate and hash the models: a list of plan ModelRef."""
    from farm.bench.plan import ModelRef
    from farm.models import check_file, validate_model

    refs = []
    seen: set[str] = set()
    for path in expand_models(patterns):
        check_file(path)
        ref = ModelRef.from_path(path)
        if ref.sha256 in seen:  # the same bytes again (a copy or link): checked once
            continue
        validate_model(path)
        seen.add(ref.sha256)
        refs.append(ref)
    return refs


def discover_settled(
    servers: list[str],
    *,
    wanted: Callable[[Any], bool],
    wait_s: float,
    timeout: float,
) -> Any:
    """Discover devices; wait up to `wait_s` for wanted ones that are offline or unreadable.

    A phone seen mid-reconnect (a USB blip, a reboot) is given that long to come back; one
    still away after it is reported as discovery found it.
    """
    from farm.android.discovery import discover

    end = time.monotonic() + wait_s
    while True:
        found = discover(servers, timeout=timeout)
        waiting = [
            d
            for d in found.devices
            if wanted(d) and (not d.online or not d.props) and d.state != "unauthorized"
        ]
        if not waiting or time.monotonic() >= end:
            return found
        log.info("waiting for %s", ", ".join(f"{d.serial} ({d.state})" for d in waiting))
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))


def new_run_dir(output: str | Path) -> tuple[str, Path]:
    """A fresh run id and its folder under `output`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    return run_id, Path(output) / run_id


def run(
    config_path: Path | None = None,
    *,
    config: Any = None,
    overrides: dict[str, Any] | None = None,
    resume: Path | None = None,
    progress: bool = True,
    grace_s: float = 60.0,
    warn: Callable[[str], None] | None = None,
    options: RunnerOptions | None = None,
) -> RunResult:
    """Run a benchmark matrix (or the missing cells of `resume`) and write the run folder.

    The matrix comes from `config` (a ready Config) or from `config_path` with `overrides`.
    `options` (deadlines, quarantine, phase hook) replaces the runner's settings whole: with
    it, `grace_s` and the config's `run_deadline_s` are not used.
    """
    from pydantic import ValidationError

    from farm.bench.binaries import check_binaries
    from farm.bench.plan import make_plan
    from farm.bench.runner import DeviceJob, Runner, unsupported_lines
    from farm.config import Config, load_config
    from farm.results import schema
    from farm.results.journal import Journal, load_run

    warn = warn or (lambda text: log.warning("%s", text))
    done_keys: set[str] = set()
    if resume is not None:
        resume = Path(resume)
        if resume.is_file():
            resume = resume.parent
        previous = load_run(resume)
        saved = previous.header.get("config")
        if not isinstance(saved, dict):
            raise InputError(f"{resume}: the run header holds no config to resume from")
        try:
            config = Config.model_validate(saved)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InputError(
                f"{resume}: the run's saved config is not valid: {where}: {err['msg']}"
            ) from None
    elif config is None:
        config = load_config(config_path, overrides=overrides or {})

    models = load_models(list(config.models))
    check_binaries(dict(config.binaries))  # a wrong build is refused before anything is pushed
    if options is None:
        options = RunnerOptions(run_deadline_s=float(config.run_deadline_s), grace_s=grace_s)
    # The header keeps the resolved model paths so --resume works from any folder.
    config = config.model_copy(update={"models": [str(m.path.resolve()) for m in models]})

    if options.on_phase is not None:
        options.on_phase("", "discovery", None)
    found = discover_settled(
        list(config.adb_servers),
        wanted=config.devices.matches,
        wait_s=min(options.grace_s, DISCOVERY_WAIT_S),
        timeout=options.command_timeout_s,
    )
    warnings = list(found.warnings)
    for text in warnings:
        warn(text)
    matched = [d for d in found.devices if config.devices.matches(d)]
    if resume is not None:  # only the devices of the run being resumed
        planned = {c["serial"] for c in previous.header["plan"].get("cells", [])}
        matched = [d for d in matched if d.serial in planned]
    devices = [d for d in matched if d.online]
    if not devices:
        seen = ", ".join(f"{d.serial} ({d.state})" for d in found.devices) or "none"
        raise NoDeviceError(
            f"no online device matches {config.devices.describe()} on "
            f"{', '.join(config.adb_servers)} (devices seen: {seen})"
        )

    plan = make_plan(matched, models, config)
    by_serial = {d.serial: d for d in matched}

    if resume is not None:
        journal, done_keys = Journal.open_resume(resume)
        run_dir = resume
        run_id = resume.name
        seen_keys = {c["key"] for c in previous.cells}
        here = {d.serial for d in devices}
        for serial in sorted({c["serial"] for c in previous.header["plan"].get("cells", [])}):
            if serial not in here:
                warn(f"{serial} of this run is not online; its cells keep their last status")
    else:
        run_id, run_dir = new_run_dir(config.output)
        header = schema.header(
            plan=plan.to_dict(),
            config=config.model_dump(mode="json"),
            run_id=run_id,
        )
        journal = Journal.create(run_dir, header)
        seen_keys = set()
        for d in matched:
            if not d.online:
                warn(f"{d.serial} on {d.server} is {d.state}: its cells are recorded device_lost")

    pending = [(c, r) for c, r in plan.unsupported if c.key not in done_keys]
    for line in unsupported_lines(pending, by_serial):
        journal.append(line)
    absent = [(c, r) for c, r in plan.unavailable if c.key not in seen_keys]
    for line in unsupported_lines(absent, by_serial, status="device_lost"):
        journal.append(line)
    jobs = [
        DeviceJob(info=d, cells=[c for c in plan.cells_for(d.serial) if c.key not in done_keys])
        for d in devices
    ]
    runner = Runner(
        jobs,
        config=config,
        journal=journal,
        run_dir=run_dir,
        run_id=run_id,
        options=options,
        progress=progress,
    )
    with _sigterm_as_interrupt(), _run_log(run_dir):
        outcome = runner.run()
    if runner.output_error is not None:
        journal.close()
        raise OutputError(
            f"{runner.output_error}; the run stopped, finished cells are kept "
            f"(free space, then: farm run --resume {run_dir})"
        )

    counts = Counter({s: 0 for s in schema.STATUSES})
    data = load_run(run_dir)
    for cell in data.cells:
        counts[cell["status"]] += 1
    summary = schema.summary(
        counts=dict(counts),
        bytes_pushed=outcome.bytes_pushed,
        interrupted=outcome.interrupted,
        missing=_missing(plan, data.cells),
    )
    from farm.report import write_outputs

    try:
        journal.finish(summary)
        write_outputs(run_dir, data.cells)
    except OSError as exc:
        raise OutputError(f"{run_dir}: cannot write the report: {exc.strerror or exc}") from None
    exit_code = 130 if outcome.interrupted else schema.exit_code_for(counts)
    return RunResult(
        run_dir=run_dir,
        counts=counts,
        bytes_pushed=outcome.bytes_pushed,
        exit_code=exit_code,
        interrupted=outcome.interrupted,
        cells=data.cells,
        warnings=warnings + list(data.warnings),
    )


def _missing(plan: Any, cells: list[dict[str, Any]]) -> int:
    """Planned cells with no line in the journal (a stopped run)."""
    done = {c.get("key") for c in cells}
    planned = [c.key for c in plan.all_cells()]
    return sum(1 for k in planned if k not in done)


@contextmanager
def _run_log(run_dir: Path) -> Iterator[None]:
    """Keep a DEBUG log of the run (every adb call with its outcome and duration) in farm.log."""
    handler = _QuietFileHandler(run_dir / "farm.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s")
    )
    logger = logging.getLogger("farm")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


class _QuietFileHandler(logging.FileHandler):
    """A FileHandler that stops writing, without a word, once its disk refuses (disk full)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.setLevel(logging.CRITICAL + 1)

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            pass


class _sigterm_as_interrupt:
    """Inside the block, SIGTERM stops the run like Ctrl-C (main thread only)."""

    def __enter__(self) -> None:
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, _raise_interrupt)

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
