"""`farm run` end to end: the real adb server, virtual phones, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.report.text import md_text
from farm.results.journal import load_run
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, bundled_adb, processes_with
from tests.lab.conftest import lab_starter

pytestmark = pytest.mark.lab

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"
CUMSUM = MODELS / "tiny_cnn_cumsum_float.tflite"
INT8 = MODELS / "mobilenet_v1_0.25_128_int8.tflite"


def farm(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the farm CLI as a user would (one line of error, exit codes)."""
    return subprocess.run(
        [sys.executable, "-m", "farm.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def farm_bg(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "farm.cli.main", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def write_config(tmp_path: Path, servers: list[str], **extra: Any) -> Path:
    """A farm.yaml with short runs; `extra` keys override."""
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
        "adb_servers": servers,
        "output": str(tmp_path / "out"),
    }
    data.update(extra)
    path = tmp_path / "farm.yaml"
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    return path


def run_dirs(tmp_path: Path) -> list[Path]:
    out = tmp_path / "out"
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []


def server_of(server: AdbServer) -> str:
    return f"127.0.0.1:{server.port}"


def by_profile(cells: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        out.setdefault(cell["device"]["profile"], []).append(cell)
    return out


def pick(cells: list[dict[str, Any]], **want: Any) -> list[dict[str, Any]]:
    return [c for c in cells if all(c.get(k) == v for k, v in want.items())]


def cell_lines(run_dir: Path) -> list[dict[str, Any]]:
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


def benchmarks_on(serial: str) -> list[int]:
    """Host pids of benchmark_model stand-ins running on this virtual phone."""
    found = []
    for pid in processes_with("farm.sim.benchmark_model"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"FARM_SIM_SERIAL={serial}".encode() in environ:
            found.append(pid)
    return found


def fast(lab: Lab, scale: float = 0.0) -> Lab:
    """Let the stand-in skip the sleeps of simulated time (its numbers stay the same)."""
    for phone in lab.phones:
        (Path(phone.root) / "state" / "time_scale").write_text(f"{scale}\n")
    return lab


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------


def test_flagship_midrange_emulator_full_matrix_and_report(
    start_lab: Callable[..., Lab], adb_server: AdbServer, tmp_path: Path
) -> None:
    fast(start_lab(["pixel_7", "galaxy_a54", "emulator_x86_64"]))
    config = write_config(tmp_path, [server_of(adb_server)], models=[str(FLOAT), str(CUMSUM)])
    args = ["run", "--config", config, "--delegate", "cpu,gpu,nnapi", "--threads", "1,2,4"]

    first = farm(*args, "--no-progress")
    assert first.returncode == 0, first.stderr
    (run_dir,) = run_dirs(tmp_path)
    data = load_run(run_dir)
    assert data.summary is not None and data.summary["bytes_pushed"] > 0
    assert len(data.cells) == 3 * 2 * 3 * 3  # devices × models × delegates × threads
    assert set(Counter(c["status"] for c in data.cells)) <= {"ok", "failed", "unsupported"}
    assert {c["server"] for c in data.cells} == {server_of(adb_server)}
    cells = by_profile(data.cells)

    # Full delegation on the flagship's GPU, partial where the GPU lacks an op (CUMSUM).
    flagship = cells["pixel_7"]
    for cell in pick(flagship, model=FLOAT.stem, delegate="gpu"):
        assert cell["status"] == "ok", cell["reason"]
        assert cell["delegation"]["nodes_delegated"] == cell["delegation"]["nodes_total"]
        assert cell["metrics"]["inference_avg_us"] > 0
    for cell in pick(flagship, model=CUMSUM.stem, delegate="gpu"):
        assert cell["status"] == "ok", cell["reason"]
        d = cell["delegation"]
        assert 0 < d["nodes_delegated"] < d["nodes_total"]
    # The emulator has no GPU delegate: unsupported with the reason, not a crash.
    for cell in pick(cells["emulator_x86_64"], delegate="gpu"):
        assert cell["status"] == "unsupported"
        assert "GPU" in cell["reason"]
    # The flagship's NNAPI accelerator takes no float model: the report says so, never a number
    # passed off as NNAPI's (failed with the tool's words, or ran with nothing delegated).
    for cell in pick(flagship, model=FLOAT.stem, delegate="nnapi"):
        if cell["status"] == "failed":
            assert cell["reason"] and "ANEURALNETWORKS" in (run_dir / cell["log"]).read_text()
        else:
            assert cell["delegation"]["coverage"] == "none"

    for cell in pick(data.cells, status="ok"):
        assert cell["simulated"] is True
        assert (run_dir / cell["log"]).is_file()
        assert f"--num_threads={cell['threads']}" in cell["command"]
        assert cell["binary_sha256"] and len(cell["binary_sha256"]) == 64
    for cell in pick(data.cells, delegate="gpu", status="ok"):
        assert "--use_gpu=true" in cell["command"]

    report = (run_dir / "report.md").read_text()
    models = {c["device"]["model"] for c in data.cells}
    assert len(models) == 3
    wanted = ("simulated", "no GPU delegate", "GPU 6/7 nodes", "GPU 31/31 nodes")
    for text in (*map(md_text, models), *wanted):
        assert text in report
    for name in ("results.csv", "results.json"):
        assert (run_dir / name).stat().st_size > 0
    assert all(m in first.stdout for m in models) and str(run_dir) in first.stdout


def test_run_past_its_deadline_is_killed_on_the_phone(
    start_lab: Callable[..., Lab], adb_server: AdbServer, tmp_path: Path
) -> None:
    (phone,) = start_lab(["galaxy_a54"]).phones
    # 30 s of timed runs against a 2 s deadline.
    config = write_config(
        tmp_path, [server_of(adb_server)], min_secs=30, max_secs=60, run_deadline_s=2
    )
    result = farm("run", "--config", config, "--json")
    assert result.returncode == 1, result.stderr
    data = load_run(json.loads(result.stdout)["run_dir"])
    (cell,) = data.cells
    assert cell["status"] == "timeout" and "deadline" in cell["reason"]
    assert 2 <= cell["duration_s"] < 20
    assert "STARTING!" in (data.run_dir / cell["log"]).read_text()  # the partial log is kept
    assert benchmarks_on(phone.serial) == []


def test_benchmark_crash_is_failed_not_retried(
    start_lab: Callable[..., Lab], adb_server: AdbServer, tmp_path: Path
) -> None:
    lab = fast(start_lab(["emulator_x86_64"]))
    lab.fault(lab.phones[0].serial, "benchmark_crash", signal=11)
    config = write_config(tmp_path, [server_of(adb_server)], threads=[1, 2])
    result = farm("run", "--config", config, "--json")
    assert result.returncode == 0, result.stderr  # the tool gave a result: it crashed
    data = load_run(json.loads(result.stdout)["run_dir"])
    assert [c["status"] for c in data.cells] == ["failed", "failed"]
    assert all(c["reason"].startswith("crashed") for c in data.cells)
    assert data.superseded == 0


@pytest.fixture
def second_server(tmp_path: Path) -> Iterator[tuple[AdbServer, Callable[..., Lab]]]:
    server = AdbServer(bundled_adb()).start()
    start, labs = lab_starter(server, tmp_path / "second")
    try:
        yield server, start
    finally:
        for lab in labs:
            lab.down()
        server.stop()


def test_two_adb_servers_in_one_run_and_second_run_pushes_nothing(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    second_server: tuple[AdbServer, Callable[..., Lab]],
    tmp_path: Path,
) -> None:
    other, start_other = second_server
    lab_a = fast(start_lab(["pixel_7"]))
    lab_b = fast(start_other(["emulator_x86_64"]))
    config = write_config(
        tmp_path, [server_of(adb_server), server_of(other)], models=[str(FLOAT), str(INT8)]
    )
    result = farm("run", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    data = load_run(outcome["run_dir"])
    servers = {c["serial"]: c["server"] for c in data.cells}
    assert servers == {
        lab_a.phones[0].serial: server_of(adb_server),
        lab_b.phones[0].serial: server_of(other),
    }
    assert len(data.cells) == 4 and all(c["status"] == "ok" for c in data.cells)
    assert outcome["bytes_pushed"] == 2 * (FLOAT.stat().st_size + INT8.stat().st_size)

    # A second identical run finds every file in place on the phones.
    second = farm("run", "--config", config, "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["run_dir"] != outcome["run_dir"]
    assert again["bytes_pushed"] == 0
    assert load_run(again["run_dir"]).summary["bytes_pushed"] == 0
    assert Counter(c["status"] for c in load_run(again["run_dir"]).cells) == Counter(ok=4)


def test_killed_phone_others_finish_and_finished_cells_stay(
    start_lab: Callable[..., Lab], adb_server: AdbServer, tmp_path: Path
) -> None:
    lab = fast(start_lab(["pixel_7", "galaxy_a54"], per_process=True))
    keep, victim = (p.serial for p in lab.phones)
    config = write_config(tmp_path, [server_of(adb_server)], threads=[1, 2], repeats=3)
    proc = farm_bg("run", "--config", config, "--grace", "2", "--json")
    try:
        wait_for(lambda: len(run_dirs(tmp_path)) == 1, 60, "the run folder")
        (run_dir,) = run_dirs(tmp_path)
        wait_for(
            lambda: any(c["serial"] == victim for c in cell_lines(run_dir)), 60, "a first cell"
        )
        lab.kill(victim)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    data = load_run(run_dir)
    status = {
        serial: Counter(c["status"] for c in data.cells if c["serial"] == serial)
        for serial in (keep, victim)
    }
    assert status[keep] == Counter(ok=6)
    assert status[victim]["ok"] >= 1 and status[victim]["device_lost"] >= 1
    assert sum(status[victim].values()) == 6
    assert data.summary["counts"]["device_lost"] == status[victim]["device_lost"]
    lost = pick(data.cells, serial=victim, status="device_lost")
    assert all("unreachable" in c["reason"] for c in lost)
    assert (run_dir / "farm.log").stat().st_size > 0

    # Resuming while the phone is still gone runs nothing again and says why.
    again = farm("run", "--resume", run_dir, "--json", "--grace", "1")
    assert again.returncode == 1, again.stderr
    assert f"{victim} of this run is not online" in again.stderr
    after = load_run(run_dir)
    assert after.superseded == 0 and after.cells == data.cells

    # The phone comes back as after a reboot (same serial, its files still there): the resumed
    # run completes the lost cells and runs no finished cell again.
    fast(lab)
    lab.restart(victim)
    done = {c["key"]: c["started_at"] for c in data.cells if c["status"] == "ok"}
    lost = {c["key"] for c in data.cells if c["status"] == "device_lost"}
    resumed = farm("run", "--resume", run_dir, "--json", "--grace", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["bytes_pushed"] == 0
    final = load_run(run_dir)
    assert len(final.cells) == 12 and all(c["status"] == "ok" for c in final.cells)
    assert {c["key"] for c in final.cells} == lost | set(done)
    assert {c["key"]: c["started_at"] for c in final.cells if c["key"] in done} == done
    assert final.superseded == len(lost)


def test_dropped_connection_is_retried_and_the_run_completes(
    start_lab: Callable[..., Lab], adb_server: AdbServer, tmp_path: Path
) -> None:
    lab = fast(start_lab(["pixel_7"]))
    serial = lab.phones[0].serial
    config = write_config(tmp_path, [server_of(adb_server)], repeats=4, min_secs=0.5)
    proc = farm_bg("run", "--config", config, "--grace", "30", "--json")
    try:
        wait_for(lambda: len(run_dirs(tmp_path)) == 1, 60, "the run folder")
        (run_dir,) = run_dirs(tmp_path)
        wait_for(lambda: len(cell_lines(run_dir)) >= 1, 60, "a first cell")
        wait_for(lambda: bool(benchmarks_on(serial)), 30, "a running benchmark")
        lab.fault(serial, "drop")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    data = load_run(run_dir)
    assert [c["status"] for c in data.cells] == ["ok"] * 4
    assert "retrying" in (run_dir / "farm.log").read_text()


def test_phone_gone_then_back_resume_runs_only_the_rest(
    start_lab: Callable[..., Lab], adb_server: AdbServer, tmp_path: Path
) -> None:
    lab = fast(start_lab(["pixel_7", "galaxy_a54"]))
    victim = lab.phones[1].serial
    config = write_config(tmp_path, [server_of(adb_server)], threads=[1, 2], repeats=3)
    proc = farm_bg("run", "--config", config, "--grace", "1", "--json")
    try:
        wait_for(lambda: len(run_dirs(tmp_path)) == 1, 60, "the run folder")
        (run_dir,) = run_dirs(tmp_path)
        wait_for(
            lambda: any(c["serial"] == victim for c in cell_lines(run_dir)), 60, "a first cell"
        )
        lab.fault(victim, "offline", seconds=4)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    before = load_run(run_dir)
    lost = {c["key"] for c in before.cells if c["status"] == "device_lost"}
    done = {c["key"]: c["started_at"] for c in before.cells if c["status"] == "ok"}
    assert lost and done

    lab.wait_state(victim, "device", timeout=40)
    again = farm("run", "--resume", run_dir, "--json")
    assert again.returncode == 0, again.stderr
    after = load_run(run_dir)
    assert len(after.cells) == 12
    assert all(c["status"] == "ok" for c in after.cells)
    assert {c["key"] for c in after.cells} == lost | set(done)
    # Finished cells were not run again; only the lost ones got new lines.
    assert {c["key"]: c["started_at"] for c in after.cells if c["key"] in done} == done
    assert after.superseded == len(lost)


def test_ctrl_c_stops_device_processes_and_keeps_finished_cells(
    start_lab: Callable[..., Lab], adb_server: AdbServer, tmp_path: Path
) -> None:
    (phone,) = start_lab(["galaxy_s23"]).phones
    # Long enough runs that Ctrl-C lands while a benchmark is running on the phone.
    config = write_config(tmp_path, [server_of(adb_server)], repeats=20, min_secs=1.5)
    proc = farm_bg("run", "--config", config, "--json")
    try:
        wait_for(lambda: len(run_dirs(tmp_path)) == 1, 60, "the run folder")
        (run_dir,) = run_dirs(tmp_path)
        wait_for(lambda: len(cell_lines(run_dir)) >= 1, 60, "a first cell")
        wait_for(lambda: bool(benchmarks_on(phone.serial)), 30, "a running benchmark")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert json.loads(out)["interrupted"] is True
    data = load_run(run_dir)
    assert data.summary is not None and data.summary["interrupted"] is True
    assert 1 <= len(data.cells) < 20
    assert all(c["status"] == "ok" for c in data.cells)
    assert benchmarks_on(phone.serial) == []
