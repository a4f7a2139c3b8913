"""Fixtures for tests that cross the real adb server to virtual phones, and run the farm CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, bundled_adb, set_time_scale, wait_until

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"
CLI_ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


# -- virtual phones ------------------------------------------------------------------------------


class LabStarter:
    """start(["pixel_7", ...], engine="model", per_process=False, time_scale=None, **kw) -> Lab.

    Labs on one adb server, each in its own folder; `down()` stops every one it started.
    `time_scale`: set on the new phones (see farm.sim.testing.set_time_scale).
    """

    def __init__(self, server: AdbServer, directory: Path) -> None:
        self.server = server
        self.directory = directory
        self.labs: list[Lab] = []

    def __call__(
        self,
        profiles: list[str],
        *,
        engine: str = "model",
        per_process: bool = False,
        time_scale: float | None = None,
        **kw: Any,
    ) -> Lab:
        lab = Lab.start(
            profiles,
            engine=engine,
            per_process=per_process,
            adb_port=self.server.port,
            adb_path=self.server.adb_path,
            env=self.server.env,
            directory=self.directory / f"lab{len(self.labs)}",
            **kw,
        )
        self.labs.append(lab)
        if time_scale is not None:
            set_time_scale(lab, time_scale)
        return lab

    def down(self) -> None:
        for lab in self.labs:
            lab.down()


@pytest.fixture
def start_lab(adb_server: AdbServer, tmp_path: Path) -> Iterator[LabStarter]:
    """start_lab(["pixel_7", ...]) -> a running Lab on `adb_server`; stopped at teardown."""
    start = LabStarter(adb_server, tmp_path)
    yield start
    start.down()


@pytest.fixture
def start_lab_any(adb_server_any: AdbServer, tmp_path: Path) -> Iterator[LabStarter]:
    """start_lab on a server of each adb build."""
    start = LabStarter(adb_server_any, tmp_path)
    yield start
    start.down()


@pytest.fixture
def second_server() -> Iterator[AdbServer]:
    """A second private adb server (bundled adb), beside `adb_server`."""
    server = AdbServer(bundled_adb()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_second_lab(second_server: AdbServer, tmp_path: Path) -> Iterator[LabStarter]:
    """start_lab on `second_server`."""
    start = LabStarter(second_server, tmp_path / "second")
    yield start
    start.down()


@pytest.fixture(scope="module")
def shared_pixel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AdbServer, Lab]]:
    """One pixel_7 on its own adb server, shared by the tests of a module.

    For tests that leave the phone as they found it (no faults, no lasting changes).
    """
    server = AdbServer(bundled_adb()).start()
    start = LabStarter(server, tmp_path_factory.mktemp("shared"))
    try:
        yield server, start(["pixel_7"])
    finally:
        start.down()
        server.stop()


@pytest.fixture
def on_phone() -> Callable[[Lab, str, str], bool]:
    """on_phone(lab, serial, path): True when `path` exists on the phone (asked through adb)."""

    def exists(lab: Lab, serial: str, path: str) -> bool:
        result = lab.adb("-s", serial, "shell", f"[ -e {path} ] && echo yes || echo no")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip() == "yes"

    return exists


# -- the farm CLI --------------------------------------------------------------------------------


@pytest.fixture
def farm_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """farm_cli(*args, timeout=180, env=None): the farm CLI as a user runs it, output captured.

    `env`: variables added to this process's environment.
    """

    def run(
        *args: Any, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "farm.cli.main", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **CLI_ENV, **(env or {})},
        )

    return run


@pytest.fixture
def one_error_line() -> Callable[[str], str]:
    """one_error_line(stderr) -> the one `farm: error: ...` line the CLI printed (no traceback)."""

    def check(stderr: str) -> str:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("farm: error: ")
        assert "Traceback" not in stderr
        return lines[0]

    return check


@pytest.fixture
def run_config(adb_server: AdbServer, tmp_path: Path) -> Callable[..., Path]:
    """run_config(servers=None, *, folder=None, **extra) -> a farm.yaml for short runs.

    One model (the float MobileNet), cpu, 1 thread, 3 timed runs; on `adb_server` unless
    `servers` (addresses) are given; written to `folder` (default tmp_path) with the output
    folder `folder/out`. `extra` keys override.
    """

    def write(
        servers: list[str] | None = None, *, folder: Path | None = None, **extra: Any
    ) -> Path:
        folder = folder or tmp_path
        data: dict[str, Any] = {
            "models": [str(FLOAT)],
            "delegates": ["cpu"],
            "threads": [1],
            "warmup_runs": 1,
            "warmup_min_secs": 0,
            "num_runs": 3,
            "min_secs": 0,
            "max_secs": 10,
            "run_deadline_s": 60,
            "adb_servers": servers or [adb_server.address],
            "output": str(folder / "out"),
        }
        data.update(extra)
        path = folder / "farm.yaml"
        path.write_text(json.dumps(data, indent=2))  # JSON is YAML
        return path

    return write


def cell_lines(run_dir: Path) -> list[dict[str, Any]]:
    """The cell lines of a run folder's results.jsonl so far (a torn last line is left out)."""
    path = run_dir / "results.jsonl"
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "cell":
            lines.append(record)
    return lines


class BackgroundRun:
    """`farm ARGS` running in the background, and the run folder it writes under `out`."""

    def __init__(self, args: tuple[Any, ...], out: Path, logs: Path) -> None:
        self.out = out
        self._stdout = logs / "stdout"
        self._stderr = logs / "stderr"
        with self._stdout.open("wb") as stdout, self._stderr.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "farm.cli.main", *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **CLI_ENV},
            )

    def folders(self) -> list[Path]:
        """The run folders under `out` so far."""
        return sorted(p for p in self.out.iterdir() if p.is_dir()) if self.out.exists() else []

    def run_dir(self, timeout: float = 60) -> Path:
        """The run's folder, once it is there."""
        wait_until(lambda: len(self.folders()) == 1, timeout, "the run folder")
        (folder,) = self.folders()
        return folder

    def cells(self) -> list[dict[str, Any]]:
        """The cell lines written so far (none while there is no run folder)."""
        folders = self.folders()
        return cell_lines(folders[0]) if len(folders) == 1 else []

    def wait_cells(self, count: int, timeout: float = 90, serial: str | None = None) -> None:
        """Wait until `count` cell lines are written (of `serial`'s cells, when given)."""
        what = f"{count} cell line(s)" + (f" of {serial}" if serial else "")
        wait_until(
            lambda: len([c for c in self.cells() if serial in (None, c["serial"])]) >= count,
            timeout,
            what,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Wait for the run to end; its exit code and output."""
        self.proc.wait(timeout)
        return subprocess.CompletedProcess(
            self.proc.args,
            self.proc.returncode,
            self._stdout.read_text(errors="replace"),
            self._stderr.read_text(errors="replace"),
        )

    def kill9(self) -> None:
        """SIGKILL: no cleanup code of the run gets to run."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def background_run(
    tmp_path: Path,
) -> Callable[..., contextlib.AbstractContextManager[BackgroundRun]]:
    """with background_run(*args, out=tmp_path / "out") as run: `farm ARGS` in the background.

    `run.run_dir()`, `run.wait_cells(n, serial=...)`, `run.signal(sig)`, `run.kill9()`,
    `run.finish()`; a run still going when the block ends is killed.
    """
    count = 0

    @contextlib.contextmanager
    def start(*args: Any, out: Path | None = None) -> Iterator[BackgroundRun]:
        nonlocal count
        count += 1
        logs = tmp_path / f"background-{count}"
        logs.mkdir()
        run = BackgroundRun(args, out or tmp_path / "out", logs)
        try:
            yield run
        finally:
            run.stop()

    return start
