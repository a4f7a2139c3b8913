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
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from farm.android.discovery import Discovery, discover
from farm.android.info import DeviceInfo
from farm.bench import accuracy
from farm.bench.binaries import check_binaries
from farm.bench.devices import read_inventories
from farm.bench.plan import ModelRef, Plan, make_plan
from farm.bench.runner import DeviceJob, ProgressMode, Runner, RunnerOptions, set_aside
from farm.config import Config, load_config
from farm.errors import ConfigError, InputError, NoDeviceError, OutputError
from farm.models import check_file, validate_model
from farm.report import append_step_summary, write_outputs
from farm.results.journal import Journal, load_run
from farm.results.model import (
    CellResult,
    RunHeader,
    RunOutcome,
    RunSummary,
    Status,
    count_statuses,
)

if TYPE_CHECKING:  # the history and statistics load only when a run asks for them
    from farm.history.gate import Nightly

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")
# Longest wait at discovery for selected devices that are offline or do not answer yet.
DISCOVERY_WAIT_S = 10.0


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


def load_models(patterns: list[str]) -> list[ModelRef]:
    """Expand, validate and hash the models: a list of plan ModelRef."""
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
    wanted: Callable[[DeviceInfo], bool],
    wait_s: float,
    timeout: float,
) -> Discovery:
    """Discover devices; wait up to `wait_s` for wanted ones that are offline or unreadable.

    A phone seen mid-reconnect (a USB blip, a reboot) is given that long to come back; one
    still away after it is reported as discovery found it.
    """
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
    config: Config | None = None,
    overrides: dict[str, Any] | None = None,
    resume: Path | None = None,
    progress: bool | ProgressMode = True,
    grace_s: float = 60.0,
    warn: Callable[[str], None] | None = None,
    options: RunnerOptions | None = None,
    nightly: Nightly | None = None,
) -> RunOutcome:
    """Run a benchmark matrix (or the cells of `resume` that have no result yet) and write the
    run folder.

    The matrix comes from `config` (a ready Config) or from `config_path` with `overrides`.
    `options` (deadlines, quarantine, phase hook) replaces the runner's settings whole: with
    it, `grace_s` and the config's `run_deadline_s` are not used. `nightly` records the run
    in the history and compares it with a baseline (resolved before anything runs).
    """
    say = warn or (lambda text: log.warning("%s", text))
    previous = None
    if resume is not None:
        resume = Path(resume)
        if resume.is_file():
            resume = resume.parent
        previous = load_run(resume)
        config = _saved_config(resume, previous.header)
    elif config is None:
        config = load_config(config_path, overrides=overrides or {})
    if config.seed is None:  # a new seed per run, kept in the header's config
        config = config.model_copy(update={"seed": secrets.randbelow(1 << 31)})

    baseline = nightly.baseline_run() if nightly is not None else None
    models = load_models(list(config.models))
    check_binaries(dict(config.binaries))  # a wrong build is refused before anything is pushed
    if config.accuracy.enabled:
        accuracy.check_inputs(models, config.accuracy)
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
        say(text)
    matched = [d for d in found.devices if config.devices.matches(d)]
    if previous is not None:  # every device of the run being resumed, and only those
        planned = set(previous.header.plan.serials)
        matched = [d for d in matched if d.serial in planned]
    devices = [d for d in matched if d.online]
    if not devices:
        seen = ", ".join(f"{d.serial} ({d.state})" for d in found.devices) or "none"
        raise NoDeviceError(
            f"no online device matches {config.devices.describe()} on "
            f"{', '.join(config.adb_servers)} (devices seen: {seen})"
        )

    # What each device says it is and has, read before planning (a resumed run keeps its own);
    # benchmark_model is asked for NNAPI accelerators only when the run has an NNAPI delegate.
    inventories = (
        dict(previous.header.inventories)
        if previous is not None
        else read_inventories(
            found,
            devices,
            binaries=dict(config.binaries),
            probe=any(spec.kind == "nnapi" for spec in config.delegates),
            no_probe_reason="not probed: the run has no NNAPI delegate",
        )
    )
    plan = make_plan(
        matched,
        models,
        config,
        accelerators={s: inv.nnapi_accelerators for s, inv in inventories.items()},
    )
    by_serial = {d.serial: d for d in matched}

    done_keys: set[str] = set()
    seen_keys: set[str] = set()
    if resume is not None and previous is not None:
        journal, previous = Journal.open_resume(resume)
        done_keys = previous.done_keys
        seen_keys = {c.key for c in previous.cells}
        run_dir, run_id = resume, resume.name
        here = {d.serial for d in devices}
        for serial in previous.header.plan.serials:
            if serial not in here:
                say(f"{serial} of this run is not online; its cells keep their last status")
    else:
        run_id, run_dir = new_run_dir(config.output)
        header = RunHeader(
            run_id=run_id,
            plan=plan.record(),
            config=config.model_dump(mode="json"),
            inventories=inventories,
            labels=dict(config.labels),
        )
        journal = Journal.create(run_dir, header)
        for d in matched:
            if not d.online:
                say(f"{d.serial} on {d.server} is {d.state}: its cells are recorded device_lost")

    if config.accuracy.enabled:
        try:
            accuracy.prepare(run_dir, models, config.accuracy)
        except OSError as exc:
            raise OutputError(f"{run_dir}: cannot write the accuracy inputs: {exc}") from None
    pending = [(c, r) for c, r in plan.unsupported if c.key not in done_keys]
    for result in set_aside(pending, by_serial):
        journal.append(result)
    absent = [(c, r) for c, r in plan.unavailable if c.key not in seen_keys]
    for result in set_aside(absent, by_serial, Status.DEVICE_LOST):
        journal.append(result)
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
    for text in outcome.warnings:
        say(text)

    data = load_run(run_dir)
    counts = count_statuses(data.cells)
    summary = RunSummary(
        counts=counts,
        bytes_pushed=outcome.bytes_pushed,
        interrupted=outcome.interrupted,
        missing=_missing(plan, data.cells),
    )
    try:
        journal.finish(summary)
        paths = write_outputs(run_dir, data.cells, header=data.header)
    except OSError as exc:
        raise OutputError(f"{run_dir}: cannot write the report: {exc.strerror or exc}") from None
    _step_summary(paths)
    finished = RunOutcome(
        run_dir=run_dir,
        counts=Counter(counts),
        bytes_pushed=outcome.bytes_pushed,
        interrupted=outcome.interrupted,
        cells=list(data.cells),
        warnings=warnings + outcome.warnings + list(data.warnings),
        seed=config.seed,
    )
    if nightly is None:
        return finished
    finished = nightly.finish(data, finished, baseline)
    if finished.comparison is not None or (nightly.record and not finished.interrupted):
        # the report shows them: regressions first, JUnit failures, the history's trends
        from farm.report.baseline import (
            comparison_section,
            history_trends,
            regressions_of,
            with_trends,
        )

        cmp = finished.comparison
        section = comparison_section(cmp) if cmp is not None else None
        if nightly.record:
            section = with_trends(section, history_trends(nightly.history_url, data.cells))
        try:
            write_outputs(
                run_dir,
                data.cells,
                header=data.header,
                formats=("html", "junit"),
                comparison=section,
                regressions=regressions_of(cmp) if cmp is not None else None,
                fail_on=_junit_fail_on(finished.fail_on),
            )
        except OSError as exc:
            raise OutputError(
                f"{run_dir}: cannot write the report: {exc.strerror or exc}"
            ) from None
    return finished


def _junit_fail_on(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The gate's --fail-on kinds that junit.xml knows, with `failed` always in."""
    from farm.report.junit import FAIL_KINDS

    return tuple(dict.fromkeys(["failed", *(k for k in kinds if k in FAIL_KINDS)]))


def _step_summary(paths: dict[str, Path]) -> None:
    """In a CI job with $GITHUB_STEP_SUMMARY, append the Markdown report there."""
    if "report.md" not in paths:
        return
    try:
        append_step_summary(paths["report.md"])
    except OSError as exc:
        where = os.environ.get("GITHUB_STEP_SUMMARY", "")
        raise OutputError(
            f"{where}: cannot append the job summary: {exc.strerror or exc}"
        ) from None


def _saved_config(run_dir: Path, header: RunHeader) -> Config:
    """The config a run was started with, from its header."""
    if header.config is None:
        raise InputError(f"{run_dir}: the run header holds no config to resume from")
    try:
        config = Config.model_validate(dict(header.config))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(
            f"{run_dir}: the run's saved config is not valid: {where}: {err['msg']}"
        ) from None
    return _as_planned(config, header)


def _as_planned(config: Config, header: RunHeader) -> Config:
    """The config with each delegate as the header's plan has it, so a run started by an older
    farm resumes the very cells it planned: the labels of schemas before 3 (the kind, or
    external:<name>) and the thread counts each delegate ran with."""
    threads: dict[str, set[int]] = {}
    for cell in header.plan.all_cells():
        threads.setdefault(cell.delegate, set()).add(cell.threads)
    specs = []
    for spec in config.delegates:
        update: dict[str, Any] = {}
        if header.schema_version < 3:
            update["label"] = f"external:{spec.name}" if spec.kind == "external" else spec.kind
        label = update.get("label", spec.label)
        if spec.threads is None and label in threads:
            update["threads"] = sorted(threads[label])
        specs.append(spec.model_copy(update=update) if update else spec)
    return config.model_copy(update={"delegates": specs})


def _missing(plan: Plan, cells: tuple[CellResult, ...]) -> int:
    """Planned cells with no line in the journal (a stopped run)."""
    done = {c.key for c in cells}
    return sum(1 for c in plan.all_cells() if c.key not in done)


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
