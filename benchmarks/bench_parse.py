"""Speed and memory of the benchmark_model log parser.

1. Throughput on typical logs: the 26 real logs of tests/corpus parsed over and over on one core.
2. Time (wall and CPU) and peak memory (ru_maxrss of a fresh process) on generated 100 MB logs:
   - ``logcat``: an ``adb logcat`` capture, mostly other apps' lines, with 200 benchmark runs
     (op profiling on) in logcat threadtime form;
   - ``runs``: the corpus logs concatenated until 100 MB (~50,000 invocations), parsed into a
     list (all results kept) and streamed with ``iter_file`` (memory independent of the runs).

Targets: >= 2,000 typical logs/s on one core; 100 MB in < 10 s and < 200 MB peak.
Run: ``.venv/bin/python benchmarks/bench_parse.py [--size-mb 100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"

NOISE = [
    "D ConnectivityService: NetworkAgentInfo [WIFI () - {n}] validation passed",
    "I ActivityManager: Start proc {n}:com.example.app/u0a{n} for service",
    "W PackageManager: Failed to resolve uid for com.vendor.pkg{n}",
    "E ThermalEngine: sensor cpu{n} read failed, retrying",
    "D WifiHAL: RSSI -{n} dBm, link speed 866 Mbps, frequency 5180",
    "I chatty  : uid=1000(system) Binder:{n}_2 expire 14 lines",
    "V AudioFlinger: mixer(0x7a{n}) throttle end: throttle time(3)",
]


def _logcat_line(i: int, pid: int, body: str) -> str:
    ms = i % 1000
    sec = (i // 1000) % 60
    return f"11-27 22:{(i // 60000) % 60:02d}:{sec:02d}.{ms:03d}  {pid:5d}  {pid + 7:5d} {body}"


def _as_logcat(text: str, start: int) -> list[str]:
    """A tool log as the tflite tag shows it in `adb logcat -v threadtime`."""
    out = []
    for j, line in enumerate(text.splitlines()):
        msg = line.removeprefix("INFO: ")
        out.append(_logcat_line(start + j, 6794, f"I tflite  : {msg}"))
    return out


def make_logcat_log(path: Path, size_mb: int, runs: int = 200) -> int:
    """Write a logcat capture of about size_mb MB holding `runs` benchmark runs."""
    rng = random.Random(7)
    run_text = (CORPUS / "004_imx8mp_tf2.6_cpu_default_op_profiling.log").read_text()
    target = size_mb * 1_000_000
    every = target // runs
    written, i, since = 0, 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while written < target:
            if since >= every:
                lines = _as_logcat(run_text, i)
                since = 0
            else:
                body = rng.choice(NOISE).format(n=rng.randrange(10, 9999))
                lines = [_logcat_line(i, rng.randrange(100, 32000), body)]
            for line in lines:
                fh.write(line + "\n")
                written += len(line) + 1
                since += len(line) + 1
                i += 1
    return written


def make_runs_log(path: Path, size_mb: int) -> int:
    """Write the corpus logs one after another until about size_mb MB."""
    texts = [
        p.read_text(encoding="utf-8")
        for p in sorted(CORPUS.glob("*.log"))
        if not p.name.startswith("039")  # a bare memory tail would merge with its neighbour
    ]
    target = size_mb * 1_000_000
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < target:
            for text in texts:
                fh.write(text + "\n")
                written += len(text) + 1
    return written


def throughput(seconds: float = 3.0) -> tuple[float, int]:
    """Typical logs parsed per second (text already in memory), and how many were parsed."""
    from farm.bench.parse import parse_text

    texts = [p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.log"))]
    for text in texts:  # warm up
        parse_text(text)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for text in texts:
            parse_text(text)
        n += len(texts)
    return n / (time.perf_counter() - start), n


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from farm.bench.parse import iter_file, parse_file
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t, cpu = time.perf_counter(), time.process_time()
if sys.argv[2] == "list":
    runs = len(parse_file(Path(sys.argv[1])))
else:
    runs = sum(1 for _ in iter_file(Path(sys.argv[1])))
elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "cpu": cpu, "peak_kb": peak, "base_kb": base, "runs": runs}))
"""


def big_log(path: Path, mode: str, cpu: int | None) -> dict:
    """Parse `path` in a fresh process (mode "list" or "iter"): time, peak RSS, runs found."""
    cmd = [sys.executable, "-c", _CHILD, str(path), mode]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=ROOT)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=3.0, help="throughput measuring time")
    args = ap.parse_args()

    cpu = None
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})  # one core

    t0 = time.process_time()
    rate, n = throughput(args.seconds)
    cpu_rate = n / (time.process_time() - t0)
    rows = [
        ("typical logs, 26 real ones", f"{rate:,.0f} logs/s", f"cpu {cpu_rate:,.0f}/s", "", ""),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, modes in (
            ("logcat", make_logcat_log, ("list",)),
            ("runs", make_runs_log, ("list", "iter")),
        ):
            path = Path(tmp) / f"{name}.log"
            size = make(path, args.size_mb)
            for mode in modes:
                r = big_log(path, mode, cpu)
                api = "parse_file" if mode == "list" else "iter_file"
                rows.append(
                    (
                        f"{size / 1e6:.0f} MB {name} log, {api}",
                        f"{r['seconds']:.2f} s",
                        f"cpu {r['cpu']:.2f} s",
                        f"peak {r['peak_kb'] / 1024:.0f} MB (at start {r['base_kb'] / 1024:.0f})",
                        f"{r['runs']} runs",
                    )
                )
            path.unlink()

    width = [max(len(row[i]) for row in rows) for i in range(5)]
    print("parse benchmark, one core; targets: >= 2,000 logs/s, 100 MB in < 10 s and < 200 MB")
    print(f"  (load average {os.getloadavg()[0]:.1f}: wall times include waiting for a busy core)")
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)))


if __name__ == "__main__":
    main()
