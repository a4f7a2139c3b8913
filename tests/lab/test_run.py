"""`farm run` end to end: the real adb server, virtual phones, the CLI as a user runs it."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from farm.report.text import md_text
from farm.results.journal import load_run
from farm.results.model import CellResult, Status
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, benchmarks_on, set_time_scale, wait_until

# Every test here runs benchmarks on the phones: the phone OS must be the confined one.
pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"
CUMSUM = MODELS / "tiny_cnn_cumsum_float.tflite"
INT8 = MODELS / "mobilenet_v1_0.25_128_int8.tflite"


def by_profile(cells: Iterable[CellResult]) -> dict[str | None, list[CellResult]]:
    out: dict[str | None, list[CellResult]] = {}
    for cell in cells:
        out.setdefault(cell.device.profile, []).append(cell)
    return out


def pick(cells: Iterable[CellResult], **want: Any) -> list[CellResult]:
    return [c for c in cells if all(getattr(c, k) == v for k, v in want.items())]


# ------------------------------------------------------------------------------------------


def test_flagship_midrange_emulator_full_matrix_and_report(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    start_lab(["pixel_7", "galaxy_a54", "emulator_x86_64"], time_scale=0)
    config = run_config(models=[str(FLOAT), str(CUMSUM)])
    args = ["run", "--config", config, "--delegate", "cpu,gpu,nnapi", "--threads", "1,2,4"]

    first = farm_cli(*args, "--no-progress")
    assert first.returncode == 0, first.stderr
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    data = load_run(run_dir)
    assert data.summary is not None and data.summary.bytes_pushed > 0
    # devices × models × (cpu × 3 thread counts + gpu + nnapi, which ignore threads)
    assert len(data.cells) == 3 * 2 * (3 + 1 + 1)
    assert set(Counter(c.status for c in data.cells)) <= {"ok", "failed", "unsupported"}
    assert {c.server for c in data.cells} == {adb_server.address}
    cells = by_profile(data.cells)
    # The header keeps what each phone reported of itself when the run began.
    inventories = data.header.inventories
    assert set(inventories) == {c.serial for c in data.cells}
    pixel = inventories[cells["pixel_7"][0].serial]
    assert pixel.gpu is not None and pixel.gpu.renderer == "Mali-G710" and pixel.has_gpu
    assert pixel.nnapi_accelerators == ("google-edgetpu", "nnapi-reference")
    assert inventories[cells["emulator_x86_64"][0].serial].has_gpu is False  # SwiftShader

    # Full delegation on the flagship's GPU, partial where the GPU lacks an op (CUMSUM).
    flagship = cells["pixel_7"]
    for cell in pick(flagship, model=FLOAT.stem, delegate="gpu"):
        assert cell.status == "ok", cell.reason
        assert cell.delegation.nodes_delegated == cell.delegation.nodes_total
        assert cell.metrics.inference_avg_us > 0
    for cell in pick(flagship, model=CUMSUM.stem, delegate="gpu"):
        assert cell.status == "ok", cell.reason
        d = cell.delegation
        assert 0 < d.nodes_delegated < d.nodes_total
    # The emulator has no OpenCL and too old an OpenGL ES: the tool says the delegate failed,
    # and the cell says so in the tool's words (the plan judges from the device, not a file).
    for cell in pick(cells["emulator_x86_64"], delegate="gpu"):
        assert cell.status == "failed"
        assert cell.reason.startswith("delegate_failed: Can not open OpenCL library"), cell.reason
    # The flagship's NNAPI accelerator takes no float model: the report says so, never a number
    # passed off as NNAPI's (failed with the tool's words, or ran with nothing delegated).
    for cell in pick(flagship, model=FLOAT.stem, delegate="nnapi"):
        if cell.status == "failed":
            assert cell.reason and "ANEURALNETWORKS" in (run_dir / cell.log).read_text()
        else:
            assert cell.delegation.coverage == "none" and cell.fallback

    for cell in pick(data.cells, status="ok"):
        assert cell.simulated is True
        assert (run_dir / cell.log).is_file()
        assert f"--num_threads={cell.threads}" in cell.command
        assert cell.binary_sha256 and len(cell.binary_sha256) == 64
    for cell in pick(data.cells, delegate="gpu", status="ok"):
        assert "--use_gpu=true" in cell.command

    report = (run_dir / "report.md").read_text()
    models = {c.device.model for c in data.cells}
    assert len(models) == 3
    wanted = ("simulated", "Can not open OpenCL library", "GPU 6/7 nodes", "GPU 31/31 nodes")
    for text in (*map(md_text, models), *wanted):
        assert text in report
    for name in ("results.csv", "results.json"):
        assert (run_dir / name).stat().st_size > 0
    assert all(m in first.stdout for m in models) and str(run_dir) in first.stdout


def test_run_past_its_deadline_is_killed_on_the_phone(
    start_lab: Callable[..., Lab], run_config: Callable[..., Path], farm_cli: Callable[..., Any]
) -> None:
    (phone,) = start_lab(["galaxy_a54"]).phones
    # 30 s of timed runs against a 5 s deadline (time for the tool to start on a busy host).
    config = run_config(min_secs=30, max_secs=60, run_deadline_s=5)
    result = farm_cli("run", "--config", config, "--json")
    assert result.returncode == 1, result.stderr
    data = load_run(json.loads(result.stdout)["run_dir"])
    (cell,) = data.cells
    assert cell.status == "timeout" and "deadline" in cell.reason
    assert 5 <= cell.duration_s < 25
    assert "STARTING!" in (data.run_dir / cell.log).read_text()  # the partial log is kept
    assert benchmarks_on(phone.serial) == []


def test_benchmark_crash_is_failed_not_retried(
    start_lab: Callable[..., Lab], run_config: Callable[..., Path], farm_cli: Callable[..., Any]
) -> None:
    lab = start_lab(["emulator_x86_64"], time_scale=0)
    lab.fault(lab.phones[0].serial, "benchmark_crash", signal=11)
    config = run_config(threads=[1, 2])
    result = farm_cli("run", "--config", config, "--json")
    assert result.returncode == 0, result.stderr  # the tool gave a result: it crashed
    data = load_run(json.loads(result.stdout)["run_dir"])
    assert [c.status for c in data.cells] == ["failed", "failed"]
    assert all(c.reason.startswith("crashed") for c in data.cells)
    assert data.superseded == 0


def test_two_adb_servers_in_one_run_and_second_run_pushes_nothing(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    second_server: AdbServer,
    start_second_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
) -> None:
    lab_a = start_lab(["pixel_7"], time_scale=0)
    lab_b = start_second_lab(["emulator_x86_64"], time_scale=0)
    servers = [adb_server.address, second_server.address]
    config = run_config(servers, models=[str(FLOAT), str(INT8)])
    result = farm_cli("run", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    data = load_run(outcome["run_dir"])
    servers = {c.serial: c.server for c in data.cells}
    assert servers == {
        lab_a.phones[0].serial: adb_server.address,
        lab_b.phones[0].serial: second_server.address,
    }
    assert len(data.cells) == 4 and all(c.status == "ok" for c in data.cells)
    assert outcome["bytes_pushed"] == 2 * (FLOAT.stat().st_size + INT8.stat().st_size)

    # A second identical run finds every file in place on the phones.
    second = farm_cli("run", "--config", config, "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["run_dir"] != outcome["run_dir"]
    assert again["bytes_pushed"] == 0
    assert load_run(again["run_dir"]).summary.bytes_pushed == 0
    assert Counter(c.status for c in load_run(again["run_dir"]).cells) == Counter(ok=4)


def test_killed_phone_others_finish_and_finished_cells_stay(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    background_run: Callable[..., Any],
) -> None:
    lab = start_lab(["pixel_7", "galaxy_a54"], per_process=True, time_scale=0)
    keep, victim = (p.serial for p in lab.phones)
    config = run_config(threads=[1, 2], repeats=3)
    with background_run("run", "--config", config, "--grace", "2", "--json") as run:
        run_dir = run.run_dir()
        run.wait_cells(1, timeout=60, serial=victim)
        lab.kill(victim)
        result = run.finish(timeout=120)
    assert result.returncode == 1, result.stderr
    data = load_run(run_dir)
    status = {
        serial: Counter(c.status for c in data.cells if c.serial == serial)
        for serial in (keep, victim)
    }
    assert status[keep] == Counter(ok=6)
    assert status[victim]["ok"] >= 1 and status[victim]["device_lost"] >= 1
    assert sum(status[victim].values()) == 6
    assert data.summary.counts[Status.DEVICE_LOST] == status[victim]["device_lost"]
    lost = pick(data.cells, serial=victim, status="device_lost")
    assert all("unreachable" in c.reason for c in lost)
    assert (run_dir / "farm.log").stat().st_size > 0

    # Resuming while the phone is still gone runs nothing again and says why.
    again = farm_cli("run", "--resume", run_dir, "--json", "--grace", "1")
    assert again.returncode == 1, again.stderr
    assert f"{victim} of this run is not online" in again.stderr
    after = load_run(run_dir)
    assert after.superseded == 0 and after.cells == data.cells

    # The phone comes back as after a reboot (same serial, its files still there): the resumed
    # run completes the lost cells and runs no finished cell again.
    set_time_scale(lab, 0)
    lab.restart(victim)
    done = {c.key: c.started_at for c in data.cells if c.status == "ok"}
    lost = {c.key for c in data.cells if c.status == "device_lost"}
    resumed = farm_cli("run", "--resume", run_dir, "--json", "--grace", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["bytes_pushed"] == 0
    final = load_run(run_dir)
    assert len(final.cells) == 12 and all(c.status == "ok" for c in final.cells)
    assert {c.key for c in final.cells} == lost | set(done)
    assert {c.key: c.started_at for c in final.cells if c.key in done} == done
    assert final.superseded == len(lost)


def test_dropped_connection_is_retried_and_the_run_completes(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
) -> None:
    lab = start_lab(["pixel_7"], time_scale=0)
    serial = lab.phones[0].serial
    config = run_config(repeats=4, min_secs=0.5)
    with background_run("run", "--config", config, "--grace", "30", "--json") as run:
        run_dir = run.run_dir()
        run.wait_cells(1, timeout=60)
        wait_until(lambda: benchmarks_on(serial), 30, "a running benchmark")
        lab.fault(serial, "drop")
        result = run.finish(timeout=120)
    assert result.returncode == 0, result.stderr
    data = load_run(run_dir)
    assert [c.status for c in data.cells] == ["ok"] * 4
    assert "retrying" in (run_dir / "farm.log").read_text()


def test_phone_gone_then_back_resume_runs_only_the_rest(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    background_run: Callable[..., Any],
) -> None:
    lab = start_lab(["pixel_7", "galaxy_a54"], time_scale=0)
    victim = lab.phones[1].serial
    config = run_config(threads=[1, 2], repeats=3)
    with background_run("run", "--config", config, "--grace", "1", "--json") as run:
        run_dir = run.run_dir()
        run.wait_cells(1, timeout=60, serial=victim)
        lab.fault(victim, "offline", seconds=4)
        result = run.finish(timeout=120)
    assert result.returncode == 1, result.stderr
    before = load_run(run_dir)
    lost = {c.key for c in before.cells if c.status == "device_lost"}
    done = {c.key: c.started_at for c in before.cells if c.status == "ok"}
    assert lost and done

    lab.wait_state(victim, "device", timeout=40)
    again = farm_cli("run", "--resume", run_dir, "--json")
    assert again.returncode == 0, again.stderr
    after = load_run(run_dir)
    assert len(after.cells) == 12
    assert all(c.status == "ok" for c in after.cells)
    assert {c.key for c in after.cells} == lost | set(done)
    # Finished cells were not run again; only the lost ones got new lines.
    assert {c.key: c.started_at for c in after.cells if c.key in done} == done
    assert after.superseded == len(lost)


def test_ctrl_c_stops_device_processes_and_keeps_finished_cells(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
) -> None:
    (phone,) = start_lab(["galaxy_s23"]).phones
    # Long enough runs that Ctrl-C lands while a benchmark is running on the phone.
    config = run_config(repeats=20, min_secs=1.5)
    with background_run("run", "--config", config, "--json") as run:
        run_dir = run.run_dir()
        run.wait_cells(1, timeout=60)
        wait_until(lambda: benchmarks_on(phone.serial), 30, "a running benchmark")
        run.signal(signal.SIGINT)
        result = run.finish(timeout=60)
    assert result.returncode == 130, result.stderr
    assert json.loads(result.stdout)["interrupted"] is True
    data = load_run(run_dir)
    assert data.summary is not None and data.summary.interrupted is True
    assert 1 <= len(data.cells) < 20
    assert all(c.status == "ok" for c in data.cells)
    assert benchmarks_on(phone.serial) == []
