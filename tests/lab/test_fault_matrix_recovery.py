"""Recovery beyond the matrix: a phone hung for good beside a healthy one; a new adb server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farm.bench.runner import RunnerOptions
from farm.bench.service import run
from farm.config import load_config
from farm.results.model import CellResult
from farm.sim.fault_matrix import SUITE
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer

# Every test here runs benchmarks on the phones: the phone OS must be the confined one.
pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

INT8 = Path(__file__).resolve().parents[2] / "models" / "mobilenet_v1_0.25_128_int8.tflite"


@pytest.fixture
def config(run_config: Callable[..., Path]) -> Callable[[int], Any]:
    """config(repeats) -> a loaded config: the int8 model, 1 s timed runs, `repeats` cells."""
    return lambda repeats: load_config(
        run_config(models=[str(INT8)], repeats=repeats, min_secs=1.0)
    )


def _by_serial(cells: list[CellResult]) -> dict[str, list[CellResult]]:
    out: dict[str, list[CellResult]] = {}
    for cell in cells:
        out.setdefault(cell.serial, []).append(cell)
    return out


def test_a_phone_hung_for_good_never_holds_up_the_others(
    start_lab: Callable[..., Lab], config: Callable[[int], Any]
) -> None:
    lab = start_lab(["pixel_7", "galaxy_s23"], time_scale=1.0)
    hung, healthy = (p.serial for p in lab.phones)
    hit: list[str] = []

    def on_phase(serial: str, phase: str, cell: Any) -> None:
        if serial == hung and phase == "run" and not hit:
            hit.append(cell.key)
            lab.fault(serial, "hang")  # until cleared: never

    options = RunnerOptions(run_deadline_s=60, on_phase=on_phase, **SUITE)
    result = run(config=config(3), progress=False, options=options)

    cells = _by_serial(result.cells)
    assert hit
    assert [c.status for c in cells[healthy]] == ["ok"] * 3
    assert [c.status for c in cells[hung]] == ["device_lost"] * 3
    assert all("unreachable" in c.reason for c in cells[hung])
    assert result.exit_code == 1


def test_adb_server_killed_mid_run_and_started_again(
    start_lab: Callable[..., Lab], adb_server: AdbServer, config: Callable[[int], Any]
) -> None:
    lab = start_lab(["pixel_7"], time_scale=1.0)
    serial = lab.phones[0].serial
    seen: list[str] = []
    restarted = threading.Event()

    port = adb_server.port

    done = threading.Event()

    def restart_later() -> None:
        time.sleep(1.0)  # the run meets a dead server for a while
        adb_server.start()
        restarted.set()
        done.wait(120)  # the server dies with the thread that started it

    def on_phase(s: str, phase: str, cell: Any) -> None:
        if phase != "run":
            return
        seen.append(cell.key)
        if len(seen) == 2:
            adb_server._kill()
            threading.Thread(target=restart_later, daemon=True).start()

    settings = {**SUITE, "grace_s": 20.0, "restart_adb_server": False}  # waited for
    options = RunnerOptions(run_deadline_s=60, on_phase=on_phase, **settings)
    try:
        result = run(config=config(4), progress=False, options=options)
    finally:
        restarted.wait(10)
        lab.down()  # while a server runs: an adb command meeting none would start one
        done.set()

    assert restarted.is_set() and adb_server.port == port
    assert [c.status for c in result.cells] == ["ok"] * 4, [c.reason for c in result.cells]
    hit = next(c for c in result.cells if c.key == seen[1])
    assert hit.retries.get("wait", 0) >= 1
    assert hit.retries.get("rerun", 0) == 0  # the benchmark ran on; its log was pulled
    assert result.exit_code == 0
    assert serial in {c.serial for c in result.cells}


def test_adb_server_killed_mid_run_is_started_again_by_farm(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    config: Callable[[int], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = start_lab(["pixel_7"], time_scale=1.0)
    serial = lab.phones[0].serial
    for name, value in adb_server.env.items():  # the new server keeps to the private HOME
        if name != "PATH":
            monkeypatch.setenv(name, value)
    seen: list[str] = []

    def on_phase(s: str, phase: str, cell: Any) -> None:
        if phase == "run":
            seen.append(cell.key)
            if len(seen) == 2:
                adb_server._kill()  # and nobody starts it again but farm

    options = RunnerOptions(run_deadline_s=60, on_phase=on_phase, **{**SUITE, "grace_s": 20.0})
    try:
        result = run(config=config(3), progress=False, options=options)
        assert adb_server.adb("get-state", "-s", serial).stdout.strip() == "device"
    finally:
        lab.down()  # while a server runs: an adb command meeting none would start one
        adb_server.adb("kill-server")  # the server farm started is a daemon of its own

    assert [c.status for c in result.cells] == ["ok"] * 3, [c.reason for c in result.cells]
    hit = next(c for c in result.cells if c.key == seen[1])
    assert hit.retries.get("wait", 0) >= 1 and hit.retries.get("rerun", 0) == 0
    assert "started it again" in (result.run_dir / "farm.log").read_text()
