"""Crash safety of `farm run`: kill -9 at several moments, then --resume; Ctrl-C.

After each kill the run folder must load (a torn last line ignored with a warning), `--resume`
must finish the run without running a finished cell again (same keys, same started_at), and no
benchmark process may be left on any phone, as the phone's own `ps` shows it through adb.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farm.results.journal import load_run
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, set_time_scale, sha256, wait_until

# Every test here runs benchmarks on the phones: the phone OS must be the confined one.
pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

FLOAT = Path(__file__).resolve().parents[2] / "models" / "mobilenet_v1_0.25_128_float.tflite"


def device_benchmarks(server: AdbServer, serial: str, *, shells: bool = False) -> dict[int, str]:
    """pid -> command line of every benchmark_model process the phone's `ps` lists.

    `shells`: also the shells that wait on one (farm's detached wrapper).
    """
    result = server.adb("-s", serial, "shell", "ps -A -o pid=,args=", timeout=30)
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        args = args.strip()
        shell = args.split(" ", 1)[0].rsplit("/", 1)[-1] == "sh"  # a shell around it
        if "benchmark_model" in args and "--graph=" in args and (shells or not shell):
            found[int(pid)] = args
    return found


def finished(run_dir: Path) -> dict[str, str]:
    """key -> started_at of the cells that reached a result."""
    return {c.key: c.started_at for c in load_run(run_dir).cells if c.status == "ok"}


@pytest.fixture
def resume_and_check(
    adb_server: AdbServer, farm_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> Callable[..., dict[str, Any]]:
    """resume_and_check(run_dir, serials, planned, ok_only=True) -> the resumed run's outcome.

    Resumes the run and checks it completes, keeps its finished cells and leaves no benchmark
    process on the phones `serials`. `ok_only`: every cell ends ok (else: ok, failed or
    unsupported: the emulator's GPU delegate fails).
    """

    def check(
        run_dir: Path, serials: list[str], planned: int, *, ok_only: bool = True
    ) -> dict[str, Any]:
        before = finished(run_dir)
        again = farm_cli("run", "--resume", run_dir, "--json", timeout=240)
        assert again.returncode == 0, again.stderr
        data = load_run(run_dir)
        assert not data.warnings
        assert len(data.cells) == planned
        statuses = Counter(c.status for c in data.cells)
        if ok_only:
            assert statuses == Counter(ok=planned)
        else:
            assert set(statuses) <= {"ok", "failed", "unsupported"} and statuses["ok"] > 0, statuses
        after = {c.key: c.started_at for c in data.cells}
        assert {k: after[k] for k in before} == before  # finished cells were not run again
        assert data.summary is not None and data.summary.missing == 0
        for serial in serials:
            assert device_benchmarks(adb_server, serial, shells=True) == {}
        return json.loads(again.stdout)

    return check


def test_kill9_during_deploy_then_resume(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    resume_and_check: Callable[..., dict[str, Any]],
) -> None:
    lab = start_lab(["pixel_7"], time_scale=0)
    serial = lab.phones[0].serial
    lab.fault(serial, "slow", rate="256K")  # the 1.8 MB model takes ~7 s to push
    size = FLOAT.stat().st_size
    config = run_config(repeats=2)
    with background_run("run", "--config", config, "--json") as run:
        run_dir = run.run_dir()

        def pushing() -> bool:  # the model's bytes are arriving on the phone
            out = adb_server.adb("-s", serial, "shell", "ls -la /data/local/tmp/farm/models/")
            rows = [ln.split() for ln in out.stdout.splitlines()]
            return any(len(r) > 4 and r[4].isdigit() and 0 < int(r[4]) < size for r in rows)

        wait_until(pushing, 60, "the model push under way")
        run.kill9()
    data = load_run(run_dir)
    assert data.cells == () and data.summary is None and not data.warnings

    lab.fault(serial, "clear")
    resume_and_check(run_dir, [serial], planned=2)
    # Whatever the kill left of the push, the model on the phone is whole now.
    model = f"/data/local/tmp/farm/models/{sha256(FLOAT)[:16]}.tflite"
    out = adb_server.adb("-s", serial, "shell", f"sha256sum {model}").stdout.split()
    assert out and out[0] == sha256(FLOAT)


def long_running(server: AdbServer, serials: list[str], age: float = 1.5) -> dict[str, set[int]]:
    """Wait until every phone has a benchmark that has been running for `age` seconds."""
    seen: dict[tuple[str, int], float] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = time.monotonic()
        old = {}
        for serial in serials:
            pids = set(device_benchmarks(server, serial))
            for pid in pids:
                seen.setdefault((serial, pid), now)
            old[serial] = {pid for pid in pids if now - seen[(serial, pid)] >= age}
        if all(old.values()):
            return old
        time.sleep(0.2)
    raise AssertionError("no long-running benchmark on every phone")


def test_kill9_mid_benchmark_resume_stops_the_orphans_first(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    resume_and_check: Callable[..., dict[str, Any]],
) -> None:
    lab = start_lab(["pixel_7", "galaxy_a54"], time_scale=0)
    serials = [p.serial for p in lab.phones]
    config = run_config(repeats=4, min_secs=30, max_secs=40)
    with background_run("run", "--config", config, "--json") as run:
        run_dir = run.run_dir()
        run.wait_cells(2, timeout=90)
        # From now on a benchmark runs ~30 s at real speed: it outlives farm's kill.
        set_time_scale(lab, 1.0)
        long_running(adb_server, serials)
        run.kill9()
    orphans = {s: device_benchmarks(adb_server, s) for s in serials}
    assert all(orphans.values()), orphans  # kill -9 leaves them running on the phones
    data = load_run(run_dir)
    assert not data.warnings and data.summary is None
    assert 2 <= len(data.cells) < 8

    set_time_scale(lab, 0)  # resumed cells run quickly; the orphans keep their 30 s
    resume_and_check(run_dir, serials, planned=8)
    log = (run_dir / "farm.log").read_text()
    for serial in serials:
        assert len(orphans[serial]) == 1, orphans
        (pid,) = orphans[serial]
        assert (
            f"{serial}: stopped 1 farm benchmark(s) left running by an earlier run (pid {pid})"
            in log
        )


def test_kill9_between_cells_then_resume(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    resume_and_check: Callable[..., dict[str, Any]],
) -> None:
    lab = start_lab(["galaxy_s23"], time_scale=0)
    serial = lab.phones[0].serial
    config = run_config(threads=[1, 2], repeats=3)
    with background_run("run", "--config", config, "--json") as run:
        run_dir = run.run_dir()
        # Freeze the run the moment its second cell line is on disk, then kill it there.
        run.wait_cells(2, timeout=90)
        run.signal(signal.SIGSTOP)
        written = len(run.cells())
        run.kill9()
    data = load_run(run_dir)
    assert not data.warnings
    assert len(data.cells) == written < 6
    resume_and_check(run_dir, [serial], planned=6)


def test_kill9_while_writing_a_line_then_resume(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    resume_and_check: Callable[..., dict[str, Any]],
) -> None:
    lab = start_lab(["pixel_7"], time_scale=0)
    serial = lab.phones[0].serial
    config = run_config(repeats=4)
    with background_run("run", "--config", config, "--json") as run:
        run_dir = run.run_dir()
        run.wait_cells(2, timeout=90)
        run.signal(signal.SIGSTOP)
        run.kill9()
    # A kill inside the one write() of a line leaves its first bytes: cut the last line so.
    results = run_dir / "results.jsonl"
    raw = results.read_bytes()
    last_start = raw.rstrip(b"\n").rfind(b"\n") + 1
    torn_key = json.loads(raw[last_start:])["key"]
    results.write_bytes(raw[: last_start + (len(raw) - last_start) // 2])

    data = load_run(run_dir)
    assert len(data.warnings) == 1 and "partial last line ignored" in data.warnings[0]
    assert torn_key not in {c.key for c in data.cells}
    resume_and_check(run_dir, [serial], planned=4)
    for line in results.read_bytes().splitlines():
        json.loads(line)  # every line whole again
    assert torn_key in {c.key for c in load_run(run_dir).cells}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_leaves_no_benchmark_on_any_phone(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    sig: int,
) -> None:
    lab = start_lab(["pixel_7", "galaxy_s23"])
    serials = [p.serial for p in lab.phones]
    config = run_config(repeats=4, min_secs=20, max_secs=30)
    with background_run("run", "--config", config, "--json") as run:
        run_dir = run.run_dir()
        wait_until(
            lambda: all(device_benchmarks(adb_server, s) for s in serials),
            60,
            "benchmarks running on both phones",
        )
        run.signal(sig)
        result = run.finish(timeout=60)
    assert result.returncode == 130, result.stderr
    assert json.loads(result.stdout)["interrupted"] is True
    for serial in serials:
        assert device_benchmarks(adb_server, serial, shells=True) == {}
    data = load_run(run_dir)
    assert data.summary is not None and data.summary.interrupted is True
    assert data.summary.missing == 8 - len(data.cells)


def test_kill9_at_seeded_random_moments_then_resume(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    background_run: Callable[..., Any],
    resume_and_check: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    lab = start_lab(["pixel_7", "emulator_x86_64"], time_scale=0)
    serials = [p.serial for p in lab.phones]
    rng = random.Random(4)
    resumed = []
    for attempt in range(4):
        where = tmp_path / f"try{attempt}"
        where.mkdir()
        config = run_config(folder=where, delegates=["cpu", "gpu"], repeats=2)
        with background_run("run", "--config", config, "--json", out=where / "out") as run:
            time.sleep(rng.uniform(1.0, 8.0))
            run.kill9()
        dirs = run.folders()
        if not dirs or not (dirs[0] / "results.jsonl").exists():
            continue  # killed before the run had a folder: nothing to resume, nothing lost
        (run_dir,) = dirs
        cells = len(load_run(run_dir).cells)  # loads, whatever the moment
        resume_and_check(run_dir, serials, planned=8, ok_only=False)
        resumed.append(cells)
    assert len(resumed) >= 2, resumed  # most kills land inside the run
