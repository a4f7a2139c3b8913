"""Thermal provenance, the cool-down gate, throttling, seeded order and device preparation on
the virtual lab (its heat model: phones heat by their simulated load, cool when idle, and throttle
their big cores above the profile's temperature)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from farm.bench.plan import Cell
from farm.bench.runner import RunnerOptions
from farm.bench.service import run
from farm.results.journal import load_run
from farm.results.model import CellResult, Status
from farm.sim.lab import Lab
from farm.sim.testing import set_time_scale

pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

STAY_ON = "settings get global stay_on_while_plugged_in"


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def serial_of(lab: Lab, profile: str) -> str:
    return next(p.serial for p in lab.phones if p.profile == profile)


def shell(lab: Lab, serial: str, command: str) -> str:
    result = lab.adb("-s", serial, "shell", command)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def heat_before_first_cell(lab: Lab, serial: str, temp_c: float) -> RunnerOptions:
    """Runner options whose phase hook makes `serial` hot as its first model push begins (just
    before its first gate; a fault set earlier could cool off while the run starts)."""
    done: list[bool] = []

    def hook(phone: str, phase: str, cell: Cell | None) -> None:
        if phone == serial and phase == "push" and cell is not None and not done:
            done.append(True)
            lab.fault(serial, "hot", temp_c=temp_c)

    return RunnerOptions(run_deadline_s=60, on_phase=hook)


def test_hot_phone_waits_at_the_gate_while_the_others_run(
    start_lab: Callable[..., Lab], run_config: Callable[..., Path]
) -> None:
    lab = start_lab(["pixel_7", "galaxy_a54"], time_scale=0)
    pixel, a54 = serial_of(lab, "pixel_7"), serial_of(lab, "galaxy_a54")
    gate = {"max_temp_c": 40, "timeout_s": 60, "poll_s": 0.3}
    outcome = run(
        run_config(threads=[1, 2], cooldown=gate),
        progress=False,
        options=heat_before_first_cell(lab, pixel, 55),
    )
    assert outcome.exit_code == 0
    cells = {c.key: c for c in outcome.cells}
    assert len(cells) == 4
    for cell in cells.values():  # every cell carries its provenance
        thermal = cell.thermal
        assert thermal is not None and thermal.before and thermal.after
        for snap in (thermal.before, thermal.after):
            assert snap.hottest_c is not None and snap.thermal_status is not None
            assert snap.battery.level is not None and snap.battery.charging is not None
            assert snap.clusters and all(c.cur_khz and c.max_khz for c in snap.clusters)
        assert thermal.gate == "cool" and thermal.limit_c == 40
        assert thermal.before.hottest_c <= 40
        assert not cell.hot
    first = min((c for c in cells.values() if c.serial == pixel), key=lambda c: at(c.started_at))
    assert first.thermal is not None and first.thermal.waited_s > 0.5
    # The other phone never waited, and ran while the hot one was at its gate.
    others = [c for c in cells.values() if c.serial == a54]
    assert all(c.thermal is not None and c.thermal.waited_s == 0 for c in others)
    gate_end = at(first.started_at).timestamp() + first.thermal.waited_s
    assert min(at(c.started_at).timestamp() for c in others) < gate_end

    # With a short timeout the hot phone runs anyway, flagged hot (and throttled: at 60 °C its
    # big cores are capped).
    short = {"max_temp_c": 40, "timeout_s": 0.3, "poll_s": 0.1}
    outcome = run(
        run_config(threads=[1], cooldown=short, devices={"serials": [pixel]}),
        progress=False,
        options=heat_before_first_cell(lab, pixel, 60),
    )
    (cell,) = [c for c in outcome.cells if c.serial == pixel]
    assert cell.thermal is not None and cell.thermal.gate == "timeout"
    assert cell.hot and cell.throttled
    assert cell.thermal.before is not None and (cell.thermal.before.hottest_c or 0) > 50
    report = (outcome.run_dir / "report.md").read_text()
    assert "hot" in report and "throttled" in report
    csv = (outcome.run_dir / "results.csv").read_text().splitlines()
    assert "hot" in csv[0].split(",") and "throttled" in csv[0].split(",")
    summary = json.loads((outcome.run_dir / "results.json").read_text())["summary"]
    assert summary[0]["hot"] is True and summary[0]["throttled"] is True


def test_a_phone_driven_into_throttling_is_flagged_and_slower(
    start_lab: Callable[..., Lab], run_config: Callable[..., Path]
) -> None:
    lab = start_lab(["pixel_7"])
    set_time_scale(lab, 0.05)  # 60 simulated seconds of load in about 3 s
    config = run_config(threads=[4], num_runs=1, min_secs=60, max_secs=120, thermal_sample_s=0.2)
    outcome = run(config, progress=False)
    (cell,) = outcome.cells
    assert cell.status == Status.OK, cell.reason
    thermal = cell.thermal
    assert thermal is not None and thermal.before is not None and thermal.after is not None
    assert not cell.hot and cell.throttled
    assert thermal.samples > 0
    assert (thermal.after.hottest_c or 0) > (thermal.before.hottest_c or 0) + 10
    assert thermal.after.capped or thermal.capped
    # A cold run of the same cell is faster than the throttled one.
    lab.fault(lab.phones[0].serial, "hot", temp_c=35)
    cold = run(run_config(threads=[4], num_runs=30), progress=False).cells[0]
    assert not cold.throttled, cold.thermal
    assert cold.metrics is not None and cell.metrics is not None
    assert cold.metrics.inference_min_us < cell.metrics.inference_max_us


def test_seeds_choose_the_order_and_the_header_says_which(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    start_lab(["emulator_x86_64"], time_scale=0)
    config = run_config(delegates=["cpu", "xnnpack"], threads=[1, 2, 4])
    orders = {}
    for seed in (1, 2):
        done = farm_cli("run", "--config", config, "--seed", seed, "--json", "--no-progress")
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout)
        assert outcome["seed"] == seed
        data = load_run(Path(outcome["run_dir"]))
        assert data.header.config is not None and data.header.config["seed"] == seed
        assert data.header.config["order"] == "shuffled"
        ran = [c.key for c in data.cells]  # journal order: the order the cells ran in
        assert ran == [c.key for c in data.header.plan.cells]
        assert f"order: shuffled, seed {seed}" in (data.run_dir / "report.md").read_text()
        orders[seed] = ran
    assert sorted(orders[1]) == sorted(orders[2]) and orders[1] != orders[2]


def _check_pinned(cells: list[CellResult]) -> None:
    for cell in cells:
        assert cell.command is not None and cell.command.startswith("taskset f0 "), cell.command


def test_settings_are_restored_after_a_run_and_after_ctrl_c(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    tmp_path: Path,
) -> None:
    lab = start_lab(["pixel_7"], time_scale=0)
    serial = lab.phones[0].serial
    assert shell(lab, serial, STAY_ON) == "0"
    outcome = run(
        run_config(threads=[1, 2], cpu_affinity="big", governor="performance"), progress=False
    )
    assert outcome.exit_code == 0
    _check_pinned(outcome.cells)  # the big cores of the Pixel 7 (4-7), from its cpufreq maxima
    assert any("performance needs root" in w for w in outcome.warnings), outcome.warnings
    assert shell(lab, serial, STAY_ON) == "0"
    assert shell(lab, serial, "ls /data/local/tmp/farm/restore.sh 2>&1 || true").endswith(
        "No such file or directory"
    )

    # Interrupted mid-run: the setting is on while cells run, and back once farm has stopped.
    set_time_scale(lab, 1.0)
    (tmp_path / "bg").mkdir()
    config = run_config(threads=[1, 2, 4], repeats=3, min_secs=1, folder=tmp_path / "bg")
    with background_run("run", "--config", config, "--no-progress", out=tmp_path / "bg/out") as bg:
        bg.wait_cells(1)
        assert shell(lab, serial, STAY_ON) == "7"
        bg.signal(signal.SIGINT)
        done = bg.finish()
    assert done.returncode == 130, done.stderr
    assert shell(lab, serial, STAY_ON) == "0"


def test_a_killed_run_leaves_settings_the_next_run_restores(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    tmp_path: Path,
) -> None:
    lab = start_lab(["pixel_7"], time_scale=1.0)
    serial = lab.phones[0].serial
    shell(lab, serial, "settings put global stay_on_while_plugged_in 2")
    config = run_config(threads=[1, 2], repeats=3, min_secs=1)
    with background_run("run", "--config", config, "--no-progress") as bg:
        bg.wait_cells(1)
        bg.kill9()  # no cleanup code runs
    assert shell(lab, serial, STAY_ON) == "7"
    set_time_scale(lab, 0)
    outcome = run(run_config(stay_awake=False), progress=False)
    assert any("earlier run left changed" in w for w in outcome.warnings), outcome.warnings
    assert shell(lab, serial, STAY_ON) == "2"


def test_low_battery_waits_while_charging_then_skips(
    start_lab: Callable[..., Lab], run_config: Callable[..., Path]
) -> None:
    lab = start_lab(["pixel_7", "galaxy_a54"], time_scale=0)  # 87 % charging; 64 % on battery
    pixel, a54 = serial_of(lab, "pixel_7"), serial_of(lab, "galaxy_a54")
    outcome = run(run_config(min_battery=90, battery_wait_s=1), progress=False)
    cells = {c.serial: c for c in outcome.cells}
    assert cells[a54].status == Status.ERROR
    assert cells[a54].reason == (
        "battery 64 % is below min_battery 90 % and not charging: device skipped"
    )
    assert cells[pixel].status == Status.ERROR
    assert cells[pixel].reason is not None
    assert cells[pixel].reason.startswith("battery 87 % is below min_battery 90 % after")
    outcome = run(run_config(min_battery=60), progress=False)
    assert {c.status for c in outcome.cells} == {Status.OK}
