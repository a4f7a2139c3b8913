"""Soak run: 12 virtual phones, random faults for SOAK_MINUTES while `farm run` works, then checks.

    make soak                         # 10 minutes
    SOAK_MINUTES=2 SOAK_SEED=7 make soak

A private adb server and a lab of 12 phones (model engine, 3 of each profile) are started; one
phone per profile is a control that gets no fault. `farm run` runs a matrix sized to keep every
phone busy for the whole window while faults of every kind the lab offers hit the other phones
at random times (seeded; every injection is printed and logged). Sticky faults (hang, disk
full, slow link, benchmark crash, unauthorized) are cleared after a random while; at the end of
the window every fault is cleared and the run is let finish. Then it checks:

- every planned cell has exactly one line and one terminal status;
- control phones have no device_lost, timeout or error cell and a status per cell that the
  other phones of the profile match unless a fault explains the difference (a fault injected on
  that phone before the cell ended); device_lost only on phones that were sent away, and every
  phone that stayed away longer than the grace period has device_lost cells; a benchmark crash
  that hit a running cell shows as a failed cell around then;
- no benchmark process left on any phone, no file outside farm's folders on the phones;
- after the lab and the adb server are stopped, no process this soak started (or any process in
  the phones' namespaces) is alive, no port is still listening, no temp file is left.

It prints the cells run, faults injected, recoveries (faults after which the phone ran an ok
cell) and the wall time, and exits 1 when a check fails. Output: farm-runs/soak-<stamp>/.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm.results.journal import load_run  # noqa: E402
from farm.results.model import CellResult, Status  # noqa: E402
from farm.sim.faults import FAULTS  # noqa: E402
from farm.sim.lab import Lab  # noqa: E402
from farm.sim.testing import AdbServer, bundled_adb  # noqa: E402

MODELS = [
    REPO / "models" / "mobilenet_v1_0.25_128_float.tflite",
    REPO / "models" / "mobilenet_v1_0.25_128_int8.tflite",
    REPO / "models" / "tiny_cnn_cumsum_float.tflite",
]
PROFILES = ["pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64"]
DELEGATES = ["cpu", "gpu", "nnapi"]
THREADS = [1, 2, 4]
GRACE_S = 15.0  # farm run --grace
MIN_SECS = 3.0  # benchmark_model --min_secs: one cell takes ~4-5 s on a loaded 2-core machine
CELL_S = 4.5  # the estimate that sizes the matrix (long enough to outlast the window)
MEAN_GAP_S = 8.0  # mean time between two fault injections (over all phones)
STICKY = {"hang", "disk_full", "slow", "benchmark_crash", "unauthorized"}
AWAY = {"offline", "reboot", "hang", "unauthorized", "die_after"}  # kinds that take a phone away


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Injection:
    """One fault sent to a phone (wall-clock epoch seconds)."""

    at: float
    serial: str
    kind: str
    options: dict[str, Any]
    until: float | None = None  # when it ends (offline/reboot/hang seconds, or the clear)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": datetime.fromtimestamp(self.at, timezone.utc).isoformat(timespec="milliseconds"),
            "serial": self.serial,
            "kind": self.kind,
            "options": self.options,
            "lasts_s": None if self.until is None else round(self.until - self.at, 1),
            "error": self.error,
        }


@dataclass
class Soak:
    minutes: float
    seed: int
    out: Path
    rng: random.Random = field(init=False)
    injections: list[Injection] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seen_procs: dict[tuple[int, str], str] = field(default_factory=dict)  # (pid, start) -> cmd
    namespaces: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"  PROBLEM: {text}", flush=True)


# -- host processes ----------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, start time, command line) of every live, non-zombie process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] == "Z":
            continue
        table[int(entry)] = (int(fields[1]), fields[19], cmd.decode("utf-8", "replace").strip())
    return table


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def track_processes(soak: Soak) -> None:
    """Remember every process below this one, and the pid namespaces of the phones."""
    table = _proc_table()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    own_ns = _pid_ns(os.getpid())
    stack = [os.getpid()]
    while stack:
        pid = stack.pop()
        for child in children.get(pid, []):
            _, start, cmd = table[child]
            soak.seen_procs[(child, start)] = cmd
            ns = _pid_ns(child)
            if ns and ns != own_ns:
                soak.namespaces.add(ns)
            stack.append(child)


def leaked_processes(soak: Soak) -> list[str]:
    """Processes this soak started, or living in a phone's namespace, that are still alive."""
    left = []
    for pid, (_, start, cmd) in _proc_table().items():
        if pid == os.getpid():
            continue
        if (pid, start) in soak.seen_procs or _pid_ns(pid) in soak.namespaces:
            left.append(f"pid {pid}: {cmd[:160]}")
    return left


# -- the matrix and farm run -------------------------------------------------------------------


def write_config(soak: Soak, server: AdbServer) -> tuple[Path, int]:
    per_repeat = len(MODELS) * len(DELEGATES) * len(THREADS)
    repeats = max(1, round(soak.minutes * 60 / (per_repeat * CELL_S)))
    config = {
        "models": [str(m) for m in MODELS],
        "delegates": DELEGATES,
        "threads": THREADS,
        "repeats": repeats,
        "warmup_runs": 1,
        "warmup_min_secs": 0,
        "num_runs": 5,
        "min_secs": MIN_SECS,
        "max_secs": MIN_SECS + 10,
        "run_deadline_s": 60,
        "adb_servers": [f"127.0.0.1:{server.port}"],
        "output": str(soak.out / "runs"),
    }
    path = soak.out / "farm.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path, repeats


def fault_options(rng: random.Random, kind: str) -> tuple[dict[str, Any], float | None]:
    """Random options for a fault kind and how long it lasts (None: a one-off)."""
    if kind == "drop":
        return {}, None
    if kind == "die_after":
        away = rng.choice([0, 0, 3, 25])
        return {"bytes": rng.choice([100, 2000, 50_000]), "offline": away}, float(away)
    if kind == "offline":
        seconds = rng.choice([2, 5, 10, 30, 45])
        return {"seconds": seconds}, float(seconds)
    if kind == "reboot":
        seconds = rng.choice([1, 3, 8])
        return {"seconds": seconds}, float(seconds)
    if kind == "hang":
        seconds = rng.choice([2, 6, 12, 30])
        return {"seconds": seconds}, float(seconds)
    if kind == "disk_full":
        return {"free": rng.choice([0, 4096])}, rng.uniform(10, 40)
    if kind == "slow":
        return {"rate": rng.choice(["64K", "256K", "1M"])}, rng.uniform(10, 40)
    if kind == "benchmark_crash":
        return {"signal": rng.choice([6, 9, 11])}, rng.uniform(10, 30)
    if kind == "unauthorized":
        return {}, rng.choice([5.0, 10.0, 40.0])
    raise ValueError(kind)


def inject_faults(soak: Soak, lab: Lab, targets: list[str], stop: threading.Event) -> None:
    """Inject random faults on `targets` until `stop` or the end of the window."""
    kinds = [k for k in FAULTS if k != "clear"]
    end = time.time() + soak.minutes * 60
    clears: list[tuple[float, str]] = []  # (when, serial)
    bag: list[str] = []
    next_at = time.time() + soak.rng.expovariate(1 / MEAN_GAP_S)
    while not stop.is_set() and time.time() < end:
        now = time.time()
        for when, serial in sorted(clears):
            if when <= now:
                clears.remove((when, serial))
                _send(soak, lab, serial, "clear", {}, None)
        if now >= next_at:
            serial = soak.rng.choice(targets)
            if not bag:  # every kind once per round, in a random order
                bag = soak.rng.sample(kinds, len(kinds))
            kind = bag.pop()
            options, lasts = fault_options(soak.rng, kind)
            _send(soak, lab, serial, kind, options, lasts)
            if kind in STICKY and lasts is not None:
                if kind == "hang":
                    pass  # ends by itself after `seconds`
                else:
                    clears.append((time.time() + lasts, serial))
            next_at = time.time() + soak.rng.expovariate(1 / MEAN_GAP_S)
        stop.wait(0.2)
    for serial in targets:
        _send(soak, lab, serial, "clear", {}, None)


def _send(
    soak: Soak, lab: Lab, serial: str, kind: str, options: dict[str, Any], lasts: float | None
) -> None:
    at = time.time()
    injection = Injection(at, serial, kind, options, None if lasts is None else at + lasts)
    try:
        lab.fault(serial, kind, **options)
    except Exception as exc:  # noqa: BLE001 - a refused fault is reported, not fatal
        injection.error = f"{type(exc).__name__}: {exc}"
    if kind == "clear":
        for earlier in soak.injections:
            if earlier.serial == serial and earlier.kind in STICKY - {"hang"}:
                if earlier.until is None or earlier.until > at:
                    earlier.until = at
    soak.injections.append(injection)
    opts = " ".join(f"{k}={v}" for k, v in options.items())
    t = at - soak_start
    print(
        f"  [{t:6.1f}s] {serial} {kind} {opts}"
        + (f"  ERROR {injection.error}" if injection.error else ""),
        flush=True,
    )
    with open(soak.out / "faults.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(injection.to_dict()) + "\n")


# -- checks ------------------------------------------------------------------------------------


def phone_files(server: AdbServer, serial: str) -> set[str] | None:
    result = server.adb(
        "-s", serial, "shell", "find /data/local/tmp /sdcard -xdev 2>/dev/null", timeout=60
    )
    if result.returncode != 0:
        return None
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def phone_benchmarks(server: AdbServer, serial: str) -> list[str] | None:
    result = server.adb("-s", serial, "shell", "ps -A -o pid=,args=", timeout=30)
    if result.returncode != 0:
        return None
    return [
        line.strip()
        for line in result.stdout.splitlines()
        if "benchmark_model" in line and "--graph=" in line and "/system/bin/sh" not in line
    ]


def check_cells(soak: Soak, run_dir: Path, lab: Lab, controls: set[str]) -> dict[str, Any]:
    """Every planned cell once, statuses consistent with the injected faults."""
    data = load_run(run_dir)
    planned = [c.key for c in data.header.plan.cells + data.header.plan.unsupported]
    raw = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    lines = Counter(r["key"] for r in raw if r.get("type") == "cell")
    for key in set(planned):
        if lines[key] != 1:
            soak.problem(f"cell {key}: {lines[key]} lines, want exactly 1")
    extra = set(lines) - set(planned)
    if extra:
        soak.problem(f"{len(extra)} cell lines not in the plan, e.g. {sorted(extra)[0]}")
    for cell in data.cells:
        if "internal error" in (cell.reason or ""):
            soak.problem(f"{cell.serial} {cell.key}: {cell.reason}")
    run_log = (run_dir / "farm.log").read_text(errors="replace")
    if "Traceback" in run_log:
        soak.problem(f"a traceback in {run_dir / 'farm.log'}")
    if data.warnings:
        soak.problem(f"results.jsonl warnings: {data.warnings}")

    by_serial: dict[str, list[CellResult]] = defaultdict(list)
    for cell in data.cells:
        by_serial[cell.serial].append(cell)
    profile_of = {p.serial: p.profile for p in lab.phones}
    control_status: dict[tuple[str, str, str, int], Status] = {}
    for serial in controls:
        for cell in by_serial[serial]:
            if not cell.complete:
                soak.problem(f"control {serial}: {cell.key} is {cell.status}: {cell.reason}")
            spot = (profile_of[serial], cell.model, cell.delegate, cell.threads)
            control_status[spot] = cell.status

    faults: dict[str, list[Injection]] = defaultdict(list)
    for inj in soak.injections:
        if inj.kind != "clear" and not inj.error:
            faults[inj.serial].append(inj)
    explained = unexplained = 0
    for serial, cells in by_serial.items():
        if serial in controls:
            continue
        for cell in cells:
            spot = (profile_of[serial], cell.model, cell.delegate, cell.threads)
            want = control_status.get(spot)
            if want is None or cell.status == want:
                continue
            end = _cell_end(cell)
            before = [f for f in faults[serial] if end is None or f.at <= end + 1.0]
            if cell.status == Status.DEVICE_LOST:
                before = [f for f in before if f.kind in AWAY]
            if before:
                explained += 1
            else:
                unexplained += 1
                soak.problem(
                    f"{serial} {cell.key}: {cell.status} (control: {want}) with no fault "
                    f"before it: {cell.reason}"
                )

    # A phone sent away for longer than the grace period, while it still had cells to run,
    # must have device_lost cells.
    for serial, injs in faults.items():
        cells = by_serial[serial]
        run_cells = [c for c in cells if c.started_at]
        last_start = max((parse_iso(c.started_at) for c in run_cells), default=0.0)
        lost = [c for c in cells if c.status == Status.DEVICE_LOST]
        for inj in injs:
            away = (inj.until or inj.at) - inj.at
            long_away = inj.kind in ("offline", "unauthorized") and away > GRACE_S + 5
            if long_away and inj.at < last_start and not lost:
                soak.problem(
                    f"{serial}: {inj.kind} for {away:.0f} s (grace {GRACE_S:g} s) mid-run, "
                    "yet no device_lost cell"
                )
    # A benchmark crash in force while a cell started shows as a failed (or error) cell.
    for serial, injs in faults.items():
        for inj in injs:
            if inj.kind != "benchmark_crash":
                continue
            until = inj.until or inj.at
            hit = [
                c
                for c in by_serial[serial]
                if c.started_at and inj.at + 0.5 < parse_iso(c.started_at) < until - 0.5
            ]
            if hit and not any(c.status in (Status.FAILED, Status.ERROR) for c in hit):
                soak.problem(
                    f"{serial}: benchmark_crash from {inj.to_dict()['at']} for "
                    f"{until - inj.at:.0f} s, yet its {len(hit)} cell(s) then are all "
                    f"{Counter(str(c.status) for c in hit)}"
                )
    # Recoveries: a fault after which the same phone still ran an ok cell.
    recoveries = 0
    for serial, injs in faults.items():
        oks = [parse_iso(c.started_at) for c in by_serial[serial] if c.status == Status.OK]
        recoveries += sum(1 for inj in injs if any(t > inj.at for t in oks))
    counts = Counter(str(c.status) for c in data.cells)
    return {
        "planned": len(set(planned)),
        "counts": dict(counts),
        "explained_deviations": explained,
        "unexplained_deviations": unexplained,
        "recoveries": recoveries,
    }


def _cell_end(cell: CellResult) -> float | None:
    if not cell.started_at:
        return None
    return parse_iso(cell.started_at) + float(cell.duration_s or 0.0)


def check_phones(soak: Soak, server: AdbServer, lab: Lab, before: dict[str, set[str]]) -> None:
    """No benchmark process and no stray file on any phone (waiting out lost phones' runs)."""
    deadline = time.monotonic() + MIN_SECS + 30  # a run a lost phone went on with ends by then
    for phone in lab.phones:
        serial = phone.serial
        while True:
            procs = phone_benchmarks(server, serial)
            if procs == []:
                break
            if time.monotonic() > deadline:
                soak.problem(f"{serial}: benchmark processes left: {procs}")
                break
            time.sleep(1)
        files = phone_files(server, serial)
        if files is None:
            soak.problem(f"{serial}: cannot list files")
            continue
        stray = sorted(
            f
            for f in files - before.get(serial, set())
            if not (f == "/data/local/tmp/farm" or f.startswith("/data/local/tmp/farm/"))
        )
        if stray:
            soak.problem(f"{serial}: files outside farm's folder: {stray[:5]}")


def check_host(soak: Soak, ports: list[int], tmp: Path, lab_dir: Path) -> None:
    """Nothing this soak started still runs, listens or lies around."""
    deadline = time.monotonic() + 10
    while (left := leaked_processes(soak)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for text in left:
        soak.problem(f"host process left: {text}")
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                soak.problem(f"port {port} still listening")
    leftovers = [str(p) for p in tmp.rglob("*")]
    if leftovers:
        soak.problem(f"temp files left: {leftovers[:5]}")
    for name in ("phones", "hosts", "lab.json"):
        if (lab_dir / name).exists():
            soak.problem(f"lab state left: {lab_dir / name}")


# -- main --------------------------------------------------------------------------------------

soak_start = time.time()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    global soak_start
    # Stop cleanly on Ctrl-C and SIGTERM, also when started where SIGINT is ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    minutes = float(os.environ.get("SOAK_MINUTES") or "10")
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1, 10**6))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(os.environ.get("SOAK_OUT") or REPO / "farm-runs" / f"soak-{stamp}-{seed}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    soak = Soak(minutes=minutes, seed=seed, out=out)
    print(f"soak: seed {seed}, {minutes:g} min of faults, 12 phones, output {out}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="farm-soak-"))
    tmp = work / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None
    soak_start = time.time()
    server = AdbServer(bundled_adb(), home=work / "adb")
    lab: Lab | None = None
    proc: subprocess.Popen[str] | None = None
    ports: list[int] = []
    stop = threading.Event()
    summary: dict[str, Any] = {}
    fault_end: float | None = None
    lab_dir = work / "lab"
    try:
        server.start()
        ports.append(server.port)
        profiles = [p for p in PROFILES for _ in range(3)]
        lab = Lab.start(
            profiles,
            engine="model",
            per_process=False,
            adb_port=server.port,
            adb_path=server.adb_path,
            env={**env, **server.env},
            directory=lab_dir,
        )
        ports += [p.port for p in lab.phones]
        controls = {lab.phones[i * 3].serial for i in range(len(PROFILES))}
        targets = [p.serial for p in lab.phones if p.serial not in controls]
        print(f"controls (no faults): {', '.join(sorted(controls))}", flush=True)
        files_before = {p.serial: phone_files(server, p.serial) or set() for p in lab.phones}
        config, repeats = write_config(soak, server)
        print(
            f"matrix: {len(MODELS)} models x {DELEGATES} x threads {THREADS} x {repeats} "
            f"repeats on 12 phones",
            flush=True,
        )
        log = open(out / "farm-run.log", "w", encoding="utf-8")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "farm.cli.main",
                "run",
                "--config",
                str(config),
                "--json",
                "--no-progress",
                "--grace",
                str(GRACE_S),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
            cwd=str(REPO),
        )
        injector = threading.Thread(
            target=inject_faults, args=(soak, lab, targets, stop), daemon=True
        )
        injector.start()
        window_end = time.time() + minutes * 60
        hard_end = window_end + max(300.0, minutes * 60)
        while proc.poll() is None:
            track_processes(soak)
            if time.time() > window_end:
                stop.set()
            if time.time() > hard_end:
                soak.problem("farm run did not finish in time; stopping it")
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(2)
        stop.set()
        injector.join(60)
        stdout, _ = proc.communicate(timeout=300)
        log.close()
        if "Traceback" in (out / "farm-run.log").read_text(errors="replace"):
            soak.problem(f"farm run printed a traceback (see {out / 'farm-run.log'})")
        fault_end = time.time()
        try:
            outcome = json.loads(stdout)
        except json.JSONDecodeError:
            soak.problem(f"farm run printed no outcome (exit {proc.returncode}); see farm-run.log")
            outcome = {}
        run_dir = Path(outcome.get("run_dir", ""))
        print(f"farm run exit {proc.returncode}: {outcome.get('counts')}", flush=True)
        for p in lab.phones:  # every fault is cleared: the phones come back
            try:
                lab.wait_state(p.serial, "device", timeout=90)
            except Exception as exc:  # noqa: BLE001
                soak.problem(f"{p.serial} did not come back after the faults: {exc}")
        if run_dir.is_dir():
            summary = check_cells(soak, run_dir, lab, controls)
        check_phones(soak, server, lab, files_before)
        track_processes(soak)
    except KeyboardInterrupt:
        soak.problem("interrupted")
    except Exception as exc:  # noqa: BLE001 - reported as a failed soak, then cleaned up
        traceback.print_exc()
        soak.problem(f"the soak itself failed: {type(exc).__name__}: {exc}")
    finally:
        stop.set()
        if proc is not None and proc.poll() is None:
            proc.terminate()  # farm run stops its device processes on SIGTERM
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if lab is not None:
            lab.down()
        server.stop()
    check_host(soak, ports, tmp, lab_dir)
    shutil.rmtree(work, ignore_errors=True)
    if work.exists():
        soak.problem(f"work folder left: {work}")

    wall = time.time() - soak_start
    kinds = Counter(i.kind for i in soak.injections if i.kind != "clear" and not i.error)
    refused = sum(1 for i in soak.injections if i.error)
    result = {
        "seed": seed,
        "minutes": minutes,
        "wall_s": round(wall, 1),
        "run_s": None if fault_end is None else round(fault_end - soak_start, 1),
        "faults_injected": sum(kinds.values()),
        "faults_by_kind": dict(sorted(kinds.items())),
        "faults_refused": refused,
        "clears": sum(1 for i in soak.injections if i.kind == "clear"),
        **summary,
        "host_processes_tracked": len(soak.seen_procs),
        "phone_namespaces_tracked": len(soak.namespaces),
        "problems": soak.problems,
        "ok": not soak.problems,
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\nsoak summary")
    print(f"  seed {seed}; wall time {wall:.0f} s")
    print(f"  cells planned {summary.get('planned')}: {summary.get('counts')}")
    print(f"  faults injected {result['faults_injected']}: {result['faults_by_kind']}")
    print(
        f"  recoveries {summary.get('recoveries')}; deviations from the controls explained by "
        f"a fault {summary.get('explained_deviations')}, unexplained "
        f"{summary.get('unexplained_deviations')}"
    )
    print(
        f"  host processes tracked {len(soak.seen_procs)}, phone namespaces {len(soak.namespaces)}"
    )
    print(f"  {'PASS' if not soak.problems else f'FAIL: {len(soak.problems)} problem(s)'}")
    return 0 if not soak.problems else 1


if __name__ == "__main__":
    sys.exit(main())
