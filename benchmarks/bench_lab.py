"""Virtual lab speed: start time for N phones, push/pull throughput through the real adb stack.

1. Lab start (processes up, `adb connect`, all phones `device`) and `down`, for N phones in one
   process and, for small N, one process per phone.
2. Push and pull of a random file to one phone: adb 36 (adbutils wheel), adb 29 (Debian) and
   adbutils' sync (push and pull), sha256 checked after every round trip.

Each measurement runs against a private adb server. Numbers are printed as a table and as JSON.
Run: ``.venv/bin/python benchmarks/bench_lab.py [--phones 1,10,50] [--size-mb 20]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from farm.sim.lab import Lab  # noqa: E402
from farm.sim.testing import AdbServer, adb_binaries, random_file, sha256  # noqa: E402


def bench_start(counts: list[int], work: Path) -> list[dict]:
    rows = []
    for per_process in (False, True):
        for count in counts:
            if per_process and count > 10:
                continue
            server = AdbServer(adb_binaries()["bundled"]).start()
            try:
                started = time.perf_counter()
                lab = Lab.start(
                    ["pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64"][:1] * count,
                    per_process=per_process,
                    adb_port=server.port,
                    adb_path=server.adb_path,
                    env=server.env,
                    directory=work / f"lab-{count}-{per_process}",
                    timeout=300,
                )
                up = time.perf_counter() - started
                started = time.perf_counter()
                lab.down()
                down = time.perf_counter() - started
            finally:
                server.stop()
            rows.append(
                {
                    "phones": count,
                    "mode": "process per phone" if per_process else "one process",
                    "up_s": round(up, 2),
                    "down_s": round(down, 2),
                }
            )
            print(f"  start {rows[-1]}", flush=True)
    return rows


def bench_transfer(size_mb: int, work: Path, repeats: int) -> list[dict]:
    rows = []
    src = random_file(work / "payload.bin", size_mb * 1024 * 1024)
    digest = sha256(src)
    size = src.stat().st_size
    for build, adb_path in adb_binaries().items():
        server = AdbServer(adb_path).start()
        lab = None
        try:
            lab = Lab.start(
                ["pixel_7"],
                adb_port=server.port,
                adb_path=server.adb_path,
                env=server.env,
                directory=work / f"lab-xfer-{build}",
            )
            ways = _ways(build, server, lab.phones[0].serial, src, work)
            for name, run in ways.items():
                best = float("inf")
                for _ in range(repeats):
                    started = time.perf_counter()
                    result = run()
                    best = min(best, time.perf_counter() - started)
                    if getattr(result, "returncode", 0) != 0:
                        raise SystemExit(f"{name} failed: {result.stderr}")
                    if "pull" in name and sha256(work / "back.bin") != digest:
                        raise SystemExit(f"{name}: sha256 differs after the round trip")
                rows.append({"way": name, "mb_per_s": round(size / best / 1e6, 1)})
                print(f"  transfer {rows[-1]}", flush=True)
        finally:
            if lab is not None:
                lab.down()
            server.stop()
    return rows


def _ways(build: str, server: AdbServer, serial: str, src: Path, work: Path) -> dict:
    """name -> a call doing one transfer."""
    back = str(work / "back.bin")
    ways = {
        f"adb {build} push": lambda: server.adb(
            "-s", serial, "push", str(src), "/data/local/tmp/p.bin"
        ),
        f"adb {build} pull": lambda: server.adb(
            "-s", serial, "pull", "/data/local/tmp/p.bin", back
        ),
    }
    if build == "bundled":
        device = server.client().device(serial)
        ways["adbutils sync.push"] = lambda: device.sync.push(str(src), "/data/local/tmp/p.bin")
        ways["adbutils sync.pull"] = lambda: device.sync.pull("/data/local/tmp/p.bin", back)
    return ways


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", default="1,10,50", help="phone counts for the start time")
    parser.add_argument("--size-mb", type=int, default=20, help="file size for push/pull")
    parser.add_argument("--repeats", type=int, default=3, help="transfers per way (best kept)")
    args = parser.parse_args()
    counts = [int(n) for n in args.phones.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="farm-bench-lab-") as tmp:
        work = Path(tmp)
        print(f"lab start/down, model engine, N = {counts}", flush=True)
        start = bench_start(counts, work)
        print(f"push/pull of {args.size_mb} MB, best of {args.repeats}", flush=True)
        transfer = bench_transfer(args.size_mb, work, args.repeats)
    print(json.dumps({"start": start, "transfer": transfer}, indent=2))


if __name__ == "__main__":
    main()
