"""Runs that meet what a lab meets: phones away at the start, benchmarks left by a killed run,
a disk full for a few seconds, run folders that must copy anywhere, and a run folder of the
previous farm."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from farm.android import jobs, paths
from farm.android.adb import AdbServer as FarmServer
from farm.android.adb import join_command
from farm.bench.cell import RunnerOptions
from farm.bench.deploy import ensure_model, sha256_file
from farm.bench.plan import Cell
from farm.bench.service import run
from farm.config import load_config
from farm.results.journal import load_run
from farm.results.model import SCHEMA_VERSION, Status
from farm.sim.testing import AdbServer

pytestmark = pytest.mark.lab

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"
INT8 = MODELS / "mobilenet_v1_0.25_128_int8.tflite"
CUMSUM = MODELS / "tiny_cnn_cumsum_float.tflite"
PORTABLE = re.compile(r"^[A-Za-z0-9._-]+$")


def test_resume_runs_the_cells_of_a_phone_that_was_away_when_the_run_began(
    start_lab, run_config: Callable[..., Path]
) -> None:
    lab = start_lab(["pixel_7", "galaxy_a54"])
    here, away = (p.serial for p in lab.phones)
    lab.fault(away, "unauthorized")
    lab.wait_state(away, "unauthorized")
    first = run(config=load_config(run_config(threads=[1, 2])), progress=False)
    statuses = {c.key: (c.serial, c.status) for c in first.cells}
    assert [s for serial, s in statuses.values() if serial == here] == [Status.OK] * 2
    assert [s for serial, s in statuses.values() if serial == away] == [Status.DEVICE_LOST] * 2
    assert first.exit_code == 1

    lab.fault(away, "clear")
    lab.wait_state(away, "device")
    again = run(resume=first.run_dir, progress=False)
    assert again.exit_code == 0, [(c.serial, c.status, c.reason) for c in again.cells]
    final = load_run(first.run_dir)
    assert {c.serial: c.status for c in final.cells if c.serial == away} == {away: Status.OK}
    assert len(final.cells) == 4 and final.superseded == 2


def test_a_run_first_stops_benchmarks_an_earlier_run_left_and_says_so(
    start_lab, adb_server: AdbServer, run_config: Callable[..., Path]
) -> None:
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    device = FarmServer("127.0.0.1", adb_server.port).device(serial)
    binary = device.getprops()["debug.farm.benchmark_model"]
    model = ensure_model(device, FLOAT, sha256_file(FLOAT)).remote_path
    # What a farm killed with -9 last night leaves: a long benchmark and its pid file.
    command = join_command(
        [binary, f"--graph={model}", "--num_runs=1000000", "--min_secs=600", "--max_secs=600"]
    )
    orphan = jobs.launch(
        device,
        command,
        log=paths.log_path("20250101-000000-dead00-orphan.log"),
        binary=binary,
        timeout=30,
        grace_s=2,
    )
    assert orphan is not None
    assert jobs.wait(device, orphan, chunk_s=0.3, timeout=10).running

    result = run(config=load_config(run_config()), progress=False)
    assert [c.status for c in result.cells] == [Status.OK]
    assert not jobs.wait(device, orphan, chunk_s=0.3, timeout=10).running
    said = [w for w in result.warnings if "left running by an earlier run" in w]
    assert said == [f"{serial}: stopped 1 farm benchmark(s) left running by an earlier run "
                    f"(pid {orphan.pid})"]  # fmt: skip


def test_every_file_name_in_a_run_folder_is_portable(
    start_lab, run_config: Callable[..., Path]
) -> None:
    lab = start_lab(["pixel_7"])
    delegates = ["cpu", {"kind": "external", "name": "qnn", "path": "/data/local/tmp/libQnn.so"}]
    result = run(config=load_config(run_config(delegates=delegates)), progress=False)
    assert ":" in lab.phones[0].serial and len(result.cells) == 2
    names = [p.relative_to(result.run_dir) for p in result.run_dir.rglob("*")]
    logs = [n for n in names if n.suffix == ".log" and n.parts[0] == "logs"]
    assert len(logs) == 2 and any("external_qnn" in n.name for n in logs)
    bad = [n for n in names if not all(PORTABLE.match(part) for part in n.parts)]
    assert not bad, bad
    for cell in result.cells:
        assert cell.log is not None and (result.run_dir / cell.log).is_file()


def test_a_disk_full_for_seconds_costs_no_cell_and_no_quarantine(
    start_lab, run_config: Callable[..., Path]
) -> None:
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    hit: list[str] = []

    def on_phase(_serial: str, phase: str, cell: Cell | None) -> None:
        # The disk fills as the second model is about to be pushed, and is freed 4 s later.
        if phase == "push" and cell is not None and cell.model_path == INT8 and not hit:
            hit.append(cell.key)
            lab.fault(serial, "disk_full", free=0)
            threading.Timer(4.0, lab.fault, (serial, "clear")).start()

    options = RunnerOptions(
        run_deadline_s=60, grace_s=30, quarantine_after=3, storage_wait_s=20, on_phase=on_phase
    )
    matrix = load_config(run_config(models=[str(FLOAT), str(INT8), str(CUMSUM)], threads=[1, 2]))
    result = run(config=matrix, progress=False, options=options)
    assert hit, "the push of the second model never began"
    assert [c.status for c in result.cells] == [Status.OK] * 6, [c.reason for c in result.cells]
    pushed = next(c for c in result.cells if c.key == hit[0])
    assert pushed.retries.get("model push", 0) >= 1  # it waited for space, and said so


V1_RUN = Path(__file__).resolve().parents[1] / "corpus" / "results_v1" / "results.jsonl"


def test_a_run_folder_of_the_previous_farm_resumes_and_reports(
    start_lab, adb_server: AdbServer, tmp_path: Path
) -> None:
    """results.jsonl written by farm before schema 2, moved onto this lab's serials and paths."""
    lab = start_lab(["pixel_7", "emulator_x86_64"], time_scale=0)
    pixel, emulator = (p.serial for p in lab.phones)
    text = (
        V1_RUN.read_text()
        .replace("127.0.0.1:35133", pixel)
        .replace("127.0.0.1:41177", emulator)
        .replace("127.0.0.1:5047", f"127.0.0.1:{adb_server.port}")
        .replace("/tmp/v1/models/", f"{MODELS}/")
    )
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["schema_version"] == 1
    cut = {r["key"] for r in records if r["type"] == "cell" and r["serial"] == pixel}
    assert len(cut) == 6
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    kept = [r for r in records if r["type"] != "summary" and r.get("key") not in cut]
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))

    result = run(resume=run_dir, progress=False)
    assert result.exit_code == 0, [(c.key, c.status, c.reason) for c in result.cells]
    data = load_run(run_dir)
    assert data.header.schema_version == 1 and [m.schema_version for m in data.resumes] == [
        SCHEMA_VERSION
    ]
    assert data.warnings == () and len(data.cells) == 12
    again = {c.key: c for c in data.cells if c.key in cut}
    assert set(again) == cut and all(c.status == Status.OK for c in again.values())
    assert all(c.log and (run_dir / c.log).is_file() for c in again.values())
    kept_cells = [c for c in data.cells if c.key not in cut]
    assert {c.status for c in kept_cells} == {Status.OK, Status.UNSUPPORTED}
    report = (run_dir / "report.md").read_text()
    assert "Pixel 7" in report and "sdk\\_gphone64\\_x86\\_64" in report
