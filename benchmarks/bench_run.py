"""Orchestration efficiency of `farm run` on the virtual lab: farm against bare adb shell loops.

For each lab size (default 4, 16 and 64 phones; engine `model`, timings from the device
profiles, the four shipped profiles in turn) one lab is started behind a private adb server
(a free port, never 5037), and on that lab:

1. `farm run` (the CLI, as a subprocess, so this script runs unchanged whatever farm's
   internals are) on a small matrix: the first sample model of models/ (`--models 3` for all
   three), delegate cpu, threads 1 and 2, one repeat, warmup_runs 1, num_runs 5, min_secs 0:
   2 cells per phone. A first run pushes the model; the second run is the one timed, and
   `farm run --json` must say it pushed 0 bytes and that every cell is ok.
2. bare parallel: the exact device command lines of the first run (the `command` of each cell
   line in its results.jsonl), each run with `adb -s SERIAL shell '<command> > /dev/null'` in
   the foreground, one thread per phone, a phone's cells one after another (no detaching, no
   polling, no log pulled). Every command must exit 0.
3. serial: the same commands, one phone after another (what a plain loop over `adb devices`
   does).

It prints one row per lab size: cells, farm's wall time and the part of it outside the cells
(start-up to the first cell plus last cell to exit, from results.jsonl), the bare parallel and
serial wall times, bare/farm (efficiency; 1.0 = farm adds nothing to the device work), farm's
overhead per cell of a phone ((farm - bare) / cells per phone, fixed part included) and the
speed-up of farm over the serial loop, with the load average at start and end; `--json` adds
the same as JSON. The numbers are meant to be compared side by side (ratios within one run, and
before/after a change on the same machine), never as absolute times: on the virtual lab a
cell's device work is mostly the host CPU starting the simulated benchmark_model (~0.4 s of
CPU), so at 64 phones on a small machine every column is bound by the host CPU and farm's own
CPU use shows up directly in the ratio. It is a measurement, not a test: nothing is asserted
about the ratios.

Time on a loaded 2-core machine: about 4 minutes for the 64-phone lab (two farm runs, the bare
loop, a serial loop of 128 commands), 1 minute for 4 and 16 together; `--quick` (the 4-phone
lab only) about 20 s; `--models 3` triples the cell work.

Run: ``.venv/bin/python benchmarks/bench_run.py [--phones 4,16,64] [--models 1] [--quick]
[--json] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from farm.sim.lab import Lab  # noqa: E402
from farm.sim.testing import AdbServer, bundled_adb  # noqa: E402

PROFILES = ["pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64"]
MODELS = sorted(str(p) for p in (ROOT / "models").glob("*.tflite"))
CMD_TIMEOUT_S = 120.0  # one bare command; a phone's cell takes well under a second
RUN_TIMEOUT_S = 900.0  # one `farm run`


class BenchError(Exception):
    """A measurement that cannot be trusted (a failed cell, something pushed, a bad command)."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def farm_cli() -> list[str]:
    """How to start the `farm` CLI: the venv's console script, else the module."""
    script = Path(sys.executable).parent / "farm"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "farm.cli.main"]


def farm_run(config: Path, env: dict[str, str], log: Path) -> tuple[float, float, dict[str, Any]]:
    """Run `farm run --json` once; its wall time, its fixed time and its JSON outcome.

    The fixed time is what the run spends outside its cells: from the start of the process to
    the first cell's start plus from the last cell's end to the exit (from results.jsonl's
    `started_at` and `duration_s`; NaN when the lines do not carry them).
    """
    args = [*farm_cli(), "run", "--config", str(config), "--json", "--no-progress"]
    with open(log, "a", encoding="utf-8") as err:
        started = time.perf_counter()
        launched = time.time()
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=str(ROOT),
        )
        try:
            stdout, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        except BaseException:
            # Ctrl-C or a hang: let farm stop its device processes, then make sure it is gone.
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
        wall = time.perf_counter() - started
        exited = time.time()
    try:
        outcome = json.loads(stdout)
    except json.JSONDecodeError:
        raise BenchError(f"farm run printed no JSON (exit {proc.returncode}); see {log}") from None
    if proc.returncode != 0:
        raise BenchError(f"farm run exited {proc.returncode}: {outcome.get('counts')}; see {log}")
    span = cell_span(Path(outcome["run_dir"]))
    fixed = (span[0] - launched) + (exited - span[1]) if span else float("nan")
    return wall, fixed, outcome


def cell_lines(run_dir: Path) -> list[dict[str, Any]]:
    """The cell lines of a run's results.jsonl."""
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("type") == "cell"]


def cell_span(run_dir: Path) -> tuple[float, float] | None:
    """Epoch seconds of the first cell's start and the last cell's end, if the lines say."""
    starts, ends = [], []
    for cell in cell_lines(run_dir):
        if not cell.get("started_at") or cell.get("duration_s") is None:
            return None
        start = datetime.fromisoformat(cell["started_at"].replace("Z", "+00:00")).timestamp()
        starts.append(start)
        ends.append(start + float(cell["duration_s"]))
    return (min(starts), max(ends)) if starts else None


def read_commands(run_dir: Path) -> dict[str, list[str]]:
    """serial -> the device command lines of its cells, in the order farm ran them."""
    cells = cell_lines(run_dir)
    by_serial: dict[str, list[str]] = defaultdict(list)
    for cell in sorted(cells, key=lambda c: (c.get("started_at") or "", c["key"])):
        if cell.get("status") != "ok" or not cell.get("command"):
            raise BenchError(f"cell {cell['key']}: status {cell.get('status')}, no usable command")
        by_serial[cell["serial"]].append(cell["command"])
    return dict(by_serial)


def bare_cell(server: AdbServer, serial: str, command: str) -> None:
    """One command in the foreground of `adb shell`, output thrown away on the phone."""
    result = server.adb("-s", serial, "shell", f"{command} > /dev/null", timeout=CMD_TIMEOUT_S)
    if result.returncode != 0:
        raise BenchError(
            f"{serial}: exit {result.returncode} from {command!r}: {result.stderr.strip()[-300:]}"
        )


def bare_parallel(
    server: AdbServer, commands: dict[str, list[str]], stop: threading.Event
) -> float:
    """One thread per phone, each running its phone's commands in order; the wall time."""
    errors: list[BaseException] = []

    def work(serial: str, lines: list[str]) -> None:
        try:
            for command in lines:
                if stop.is_set():
                    return
                bare_cell(server, serial, command)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=work, args=(serial, lines), daemon=True)
        for serial, lines in commands.items()
    ]
    started = time.perf_counter()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # a timed join lets Ctrl-C through
                thread.join(0.2)
    except BaseException:
        stop.set()  # the threads start no further command
        raise
    wall = time.perf_counter() - started
    if errors:
        raise BenchError(f"bare parallel loop: {errors[0]}")
    return wall


def serial_loop(server: AdbServer, commands: dict[str, list[str]]) -> float:
    """The same commands, one phone after another; the wall time."""
    started = time.perf_counter()
    for serial, lines in commands.items():
        for command in lines:
            bare_cell(server, serial, command)
    return time.perf_counter() - started


def write_config(path: Path, models: list[str], threads: list[int], port: int, out: Path) -> None:
    config = {
        "models": models,
        "delegates": ["cpu"],
        "threads": threads,
        "repeats": 1,
        "warmup_runs": 1,
        "warmup_min_secs": 0,
        "num_runs": 5,
        "min_secs": 0,
        "max_secs": 5,
        "run_deadline_s": 120,
        "adb_servers": [f"127.0.0.1:{port}"],
        "output": str(out),
    }
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def measure(
    phones: int, models: list[str], threads: list[int], work: Path, stop: threading.Event
) -> dict[str, Any]:
    """Start a lab of `phones`, time farm, bare parallel and serial on it, take it down."""
    here = work / f"lab-{phones}"
    here.mkdir()
    server = AdbServer(bundled_adb(), home=here / "adb")
    lab: Lab | None = None
    try:
        server.start()
        started = time.perf_counter()
        lab = Lab.start(
            [PROFILES[i % len(PROFILES)] for i in range(phones)],
            engine="model",
            adb_port=server.port,
            adb_path=server.adb_path,
            env={**os.environ, **server.env},
            directory=here / "lab",
            timeout=300,
        )
        up_s = time.perf_counter() - started
        print(f"  {phones} phones up in {up_s:.1f} s", flush=True)
        config = here / "farm.yaml"
        write_config(config, models, threads, server.port, here / "runs")
        env = {
            **os.environ,
            "ANDROID_ADB_SERVER_PORT": str(server.port),
            "ADBUTILS_ADB_PATH": server.adb_path,
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        log = here / "farm-run.log"

        first_s, _, first = farm_run(config, env, log)
        commands = read_commands(Path(first["run_dir"]))
        if sorted(commands) != sorted(p.serial for p in lab.phones):
            raise BenchError(f"first run ran on {len(commands)} of {phones} phones")
        per_phone = {len(lines) for lines in commands.values()}
        if len(per_phone) != 1:
            raise BenchError(f"phones ran different numbers of cells: {sorted(per_phone)}")
        cells_per_phone = per_phone.pop()
        cells = cells_per_phone * phones
        print(
            f"  warm-up farm run: {first_s:.1f} s, {first.get('bytes_pushed')} bytes pushed",
            flush=True,
        )

        farm_s, fixed_s, second = farm_run(config, env, log)
        if second.get("bytes_pushed") != 0:
            raise BenchError(f"the timed farm run pushed {second.get('bytes_pushed')} bytes")
        if second.get("cells") != cells or (second.get("counts") or {}).get("ok") != cells:
            raise BenchError(f"the timed farm run: {second.get('counts')}, want {cells} ok")
        again = read_commands(Path(second["run_dir"]))
        if {s: sorted(c) for s, c in again.items()} != {s: sorted(c) for s, c in commands.items()}:
            raise BenchError("the timed farm run ran other command lines than the first")
        print(f"  farm run: {farm_s:.1f} s ({fixed_s:.1f} s outside its cells)", flush=True)

        bare_s = bare_parallel(server, commands, stop)
        print(f"  bare parallel: {bare_s:.1f} s", flush=True)
        serial_s = serial_loop(server, commands)
        print(f"  serial: {serial_s:.1f} s", flush=True)
    finally:
        if lab is not None:
            lab.down()
        server.stop()
    return {
        "phones": phones,
        "cells": cells,
        "cells_per_phone": cells_per_phone,
        "lab_up_s": round(up_s, 2),
        "farm_first_s": round(first_s, 2),
        "farm_s": round(farm_s, 2),
        "farm_fixed_s": round(fixed_s, 2),
        "bare_parallel_s": round(bare_s, 2),
        "serial_s": round(serial_s, 2),
        "efficiency": round(bare_s / farm_s, 3),
        "overhead_ms_per_cell": round((farm_s - bare_s) / cells_per_phone * 1000, 1),
        "speedup_vs_serial": round(serial_s / farm_s, 2),
    }


COLUMNS = [
    ("phones", "phones", "{}"),
    ("cells", "cells", "{}"),
    ("farm_s", "farm s", "{:.2f}"),
    ("farm_fixed_s", "(fixed s)", "{:.2f}"),
    ("bare_parallel_s", "bare par. s", "{:.2f}"),
    ("serial_s", "serial s", "{:.2f}"),
    ("efficiency", "bare/farm", "{:.3f}"),
    ("overhead_ms_per_cell", "overhead ms/cell", "{:.1f}"),
    ("speedup_vs_serial", "farm vs serial", "{:.2f}x"),
]


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [
        max(len(title), *(len(c[i]) for c in cells)) for i, (_, title, _) in enumerate(COLUMNS)
    ]
    lines = ["  ".join(title.rjust(w) for (_, title, _), w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", default="4,16,64", help="lab sizes, e.g. 4,16,64")
    parser.add_argument(
        "--models", type=int, default=1, help="how many of the sample models (sorted; 1..3)"
    )
    parser.add_argument("--threads", default="1,2", help="thread counts of the matrix")
    parser.add_argument(
        "--quick", action="store_true", help="smoke setting: only the lab of 4 phones"
    )
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--keep", type=Path, help="keep the labs' run folders and logs here")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    counts = [int(n) for n in args.phones.split(",") if n.strip()]
    models = MODELS[: args.models]
    threads = [int(n) for n in args.threads.split(",") if n.strip()]
    if args.quick:
        counts = [4]
    if not 1 <= args.models <= len(MODELS):
        parser.error(f"--models: 1 to {len(MODELS)} (the sample models in {ROOT / 'models'})")

    work = Path(tempfile.mkdtemp(prefix="farm-bench-run-"))
    stop = threading.Event()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    load_start = os.getloadavg()
    names = ", ".join(Path(m).stem for m in models)
    print(
        f"farm run vs bare adb shell, engine model: [{names}] x cpu x threads {threads} "
        f"on {counts} phones; load average {_load(load_start)}",
        flush=True,
    )
    try:
        for phones in counts:
            print(f"lab of {phones} phones", flush=True)
            rows.append(measure(phones, models, threads, work, stop))
    except KeyboardInterrupt:
        stop.set()
        print("interrupted; the lab is down", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench_run: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep is not None:
            shutil.copytree(work, args.keep, dirs_exist_ok=True, ignore=_skip_lab_state)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(rows))
    load_end = os.getloadavg()
    print(
        f"total {time.perf_counter() - started:.0f} s; load average at start {_load(load_start)}, "
        f"at end {_load(load_end)} ({os.cpu_count()} CPUs)"
    )
    if args.json:
        result = {
            "models": [Path(m).name for m in models],
            "delegates": ["cpu"],
            "threads": threads,
            "cpus": os.cpu_count(),
            "load_start": [round(x, 2) for x in load_start],
            "load_end": [round(x, 2) for x in load_end],
            "rows": rows,
        }
        print(json.dumps(result, indent=2))
    return 0


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def _skip_lab_state(folder: str, names: list[str]) -> list[str]:
    """Phone roots and sockets are not worth keeping."""
    return [n for n in names if n in ("phones", "tmp") or n.endswith(".sock")]


if __name__ == "__main__":
    sys.exit(main())
