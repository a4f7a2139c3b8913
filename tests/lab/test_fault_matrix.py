"""The fault matrix on the virtual lab: each fault injected exactly when a phase begins.

One run per phase: one phone per meaningful row of that phase (farm/sim/fault_matrix.py), plus
a phone with no fault. Faults land through the runner's `on_phase` hook (discovery: the
service's), so they hit the phase they name, through the real adb server. Each row's phone must
end as the table says; the control phone is untouched; no finished cell is lost; no benchmark
is left running on any phone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farm.bench.runner import PHASES, RunnerOptions
from farm.bench.service import run
from farm.config import load_config
from farm.errors import LabError
from farm.results.model import CellResult
from farm.sim.fault_matrix import SUITE, Row, rows_for
from farm.sim.faults import parse_size
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, benchmarks_on, random_file, set_time_scale, wait_until

# Every test here runs benchmarks on the phones: the phone OS must be the confined one.
pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

INT8 = Path(__file__).resolve().parents[2] / "models" / "mobilenet_v1_0.25_128_int8.tflite"

# Faults a phone carries from its start when they hit discovery (the others land on the hook).
START_FAULTS = {"unauthorized", "slow"}
CELLS_PER_PHONE = 3
PROBE_BYTES = 256 * 1024  # pushed through a slow row's link after the run


class Injector:
    """The on_phase hook: injects each row's fault once, when its phase begins for its cell."""

    def __init__(self, lab: Lab, rows: dict[str, Row], phase: str) -> None:
        self.lab = lab
        self.rows = rows
        self.phase = phase
        self.hit_index = 0 if phase in ("discovery", "push") else 1
        self.seen: dict[str, list[str]] = {}
        self.hit: dict[str, str | None] = {}
        self.began: dict[str, list[tuple[str, str | None, float]]] = {}  # (phase, key, time)
        self.lock = threading.Lock()

    def __call__(self, serial: str, phase: str, cell: Any) -> None:
        with self.lock:
            key = None if cell is None else cell.key
            self.began.setdefault(serial, []).append((phase, key, time.monotonic()))
        if phase != self.phase:
            return
        if phase == "discovery":
            self._discovery()
            return
        row = self.rows.get(serial)
        if row is None or cell is None:
            return
        with self.lock:
            keys = self.seen.setdefault(serial, [])
            if cell.key not in keys:
                keys.append(cell.key)
            if serial in self.hit or keys.index(cell.key) != self.hit_index:
                return
            self.hit[serial] = cell.key
        self.lab.fault(serial, row.fault, **row.options)

    def took(self, serial: str, phase: str, key: str | None) -> float:
        """Seconds from the start of `phase` of cell `key` to the next phase on that phone."""
        began = self.began[serial]
        index = next(i for i, (p, k, _) in enumerate(began) if (p, k) == (phase, key))
        return began[index + 1][2] - began[index][2]

    def _discovery(self) -> None:
        for serial, row in self.rows.items():
            self.hit[serial] = None
            if row.fault in START_FAULTS:
                continue
            self.lab.fault(serial, row.fault, **row.options)
            if row.fault in ("offline", "reboot"):
                try:  # make sure discovery meets the phone away
                    self.lab.wait_state(serial, "offline", timeout=5)
                except LabError:
                    pass


def _check_slow(row: Row, serial: str, injector: Injector, server: AdbServer, folder: Path) -> None:
    """The link of a `slow` row's phone really was capped (so the row shows something)."""
    label = f"{row.label} at {row.phase}"
    rate = parse_size(row.options["rate"])
    if row.phase == "push":  # the hit cell's push moved the whole model through the cap
        took = injector.took(serial, "push", injector.hit[serial])
        assert took >= 0.9 * INT8.stat().st_size / rate, (label, took)
    # A fault stays until cleared: still capped after the run, so it was while the phase ran.
    probe = random_file(folder / "probe.bin", PROBE_BYTES)
    started = time.monotonic()
    push = server.adb("-s", serial, "push", str(probe), "/data/local/tmp/probe.bin")
    took = time.monotonic() - started
    assert push.returncode == 0, push.stderr
    assert took >= 0.9 * PROBE_BYTES / rate, (label, "probe push", took)


def _check_row(row: Row, cells: list[dict[str, Any]], hit_key: str | None) -> None:
    label = f"{row.label} at {row.phase}"
    assert len(cells) == CELLS_PER_PHONE, (label, [c.status for c in cells])
    assert len({c.key for c in cells}) == CELLS_PER_PHONE, label
    index = 0 if hit_key is None else [c.key for c in cells].index(hit_key)
    before, hit, after = cells[:index], cells[index], cells[index + 1 :]
    for cell in before:  # finished before the fault: kept, untouched
        assert cell.status == "ok", (label, cell.reason)
    assert hit.status == row.hit, (label, hit.status, hit.reason)
    if row.reason:
        assert row.reason in (hit.reason or ""), (label, hit.reason)
    for cell in after:
        assert cell.status == row.after, (label, cell.status, cell.reason)
    retries = hit.retries
    for step in row.retried:
        assert retries.get(step, 0) >= 1, (label, step, retries)
    assert retries.get("rerun", 0) == row.reruns, (label, retries)
    if row.exit_status is not None:
        assert hit.exit_status == row.exit_status, (label, hit.exit_status)
    if row.hit == "ok":
        assert hit.exit_status == 0 and hit.metrics.inference_avg_us > 0, label
    if row.fault == "disk_full":
        assert "MiB free on /data (df)" in hit.reason, hit.reason
        assert "quarantined after 2 incomplete cells" in cells[-1].reason, cells[-1].reason


@pytest.mark.parametrize("phase", PHASES)
def test_fault_matrix(
    phase: str,
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    run_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    rows = rows_for(phase)
    profiles = ["pixel_7"] * (len(rows) + 1)  # the last phone has no fault
    start_faults = {
        i: [(r.fault, dict(r.options))]
        for i, r in enumerate(rows)
        if phase == "discovery" and r.fault in START_FAULTS
    }
    lab = start_lab(profiles, faults=start_faults)
    # While-running faults need a benchmark that is still running when they land.
    set_time_scale(lab, 1.0 if phase == "run" else 0.0)
    by_serial = {lab.phones[i].serial: r for i, r in enumerate(rows)}
    control = lab.phones[-1].serial
    injector = Injector(lab, by_serial, phase)
    config = load_config(
        run_config(
            models=[str(INT8)],
            threads=[1],
            repeats=CELLS_PER_PHONE,
            min_secs=1.0 if phase == "run" else 0,
        )
    )
    options = RunnerOptions(run_deadline_s=60, on_phase=injector, **SUITE)
    result = run(config=config, progress=False, options=options, warn=lambda text: None)

    assert set(injector.hit) == set(by_serial), "every fault landed at its phase"
    cells: dict[str, list[CellResult]] = {}
    for cell in result.cells:
        cells.setdefault(cell.serial, []).append(cell)
    for serial, row in by_serial.items():
        _check_row(row, cells.get(serial, []), injector.hit[serial])
        if row.fault == "slow":
            _check_slow(row, serial, injector, adb_server, tmp_path)
    assert [c.status for c in cells[control]] == ["ok"] * CELLS_PER_PHONE
    assert all(not c.retries.get("rerun") for c in cells[control])
    incomplete = any(r.hit not in ("ok", "failed") or r.after not in ("ok", "failed") for r in rows)
    assert result.exit_code == (1 if incomplete else 0)
    assert sum(result.counts.values()) == CELLS_PER_PHONE * len(profiles)
    for phone in lab.phones:
        wait_until(lambda s=phone.serial: not benchmarks_on(s), 15, f"{phone.serial} to be idle")
