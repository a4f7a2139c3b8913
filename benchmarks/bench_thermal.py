"""Spread of one configuration across repeats, with and without cool-down + shuffled order.

On the virtual lab's model engine with its heat model (phones heat by their simulated load,
their big cores throttle above the profile's temperature): a Pixel 7 runs the same matrix twice,
`order: fixed` with no gate, then `order: shuffled` with `cooldown:`. For each configuration it
prints the mean latency of every repeat and the spread ((max - min) / median, and the
coefficient of variation) side by side. Results come from virtual phones (simulated).

Usage: .venv/bin/python benchmarks/bench_thermal.py [--repeats 5] [--min-secs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from farm.bench.service import run  # noqa: E402
from farm.config import Config  # noqa: E402
from farm.results.model import RunOutcome  # noqa: E402
from farm.sim.lab import Lab  # noqa: E402
from farm.sim.testing import AdbServer, adb_binaries, set_time_scale  # noqa: E402

MODEL = ROOT / "models" / "mobilenet_v1_0.25_128_float.tflite"
TIME_SCALE = 0.05  # 20 simulated seconds per real second (cooling at the same pace)


def spread(values: list[float]) -> tuple[float, float]:
    """((max - min) / median, coefficient of variation) of per-repeat latencies."""
    median = statistics.median(values)
    cv = statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0
    return (max(values) - min(values)) / median, cv


def per_config(outcome: RunOutcome) -> dict[str, list[float]]:
    """Mean latency (ms) of each repeat, by configuration, in repeat order."""
    found: dict[str, dict[int, float]] = defaultdict(dict)
    for cell in outcome.cells:
        if cell.metrics is not None and cell.metrics.inference_avg_us:
            name = f"{cell.delegate} t{cell.threads}"
            found[name][cell.repeat] = cell.metrics.inference_avg_us / 1000
    return {k: [v[r] for r in sorted(v)] for k, v in sorted(found.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-secs", type=float, default=20.0, help="simulated s per cell")
    args = parser.parse_args()
    base = dict(
        models=[str(MODEL)], delegates=["cpu"], threads=[1, 2, 4], repeats=args.repeats,
        warmup_runs=1, warmup_min_secs=0, num_runs=10, min_secs=args.min_secs, max_secs=600,
        thermal_sample_s=1.0,
    )  # fmt: skip
    modes = {
        "fixed, no cool-down": {"order": "fixed"},
        "shuffled + cool-down": {
            "order": "shuffled",
            "seed": 1,
            "cooldown": {"max_temp_c": 40, "timeout_s": 120, "poll_s": 0.25},
        },
    }
    results: dict[str, tuple[dict[str, list[float]], RunOutcome, float]] = {}
    with tempfile.TemporaryDirectory(prefix="farm-bench-thermal-") as tmp:
        work = Path(tmp)
        for mode, extra in modes.items():
            server = AdbServer(adb_binaries()["bundled"]).start()
            try:
                lab = Lab.start(
                    ["pixel_7"], engine="model", adb_port=server.port, adb_path=server.adb_path,
                    env=server.env, directory=work / f"lab-{len(results)}",
                )  # fmt: skip
                try:
                    set_time_scale(lab, TIME_SCALE)
                    config = Config(
                        **base, **extra, adb_servers=[server.address], output=str(work / "out")
                    )
                    started = time.perf_counter()
                    outcome = run(config=config, progress=False)
                    results[mode] = (per_config(outcome), outcome, time.perf_counter() - started)
                finally:
                    lab.down()
            finally:
                server.stop()
    print(f"pixel_7 (simulated, model engine, time_scale {TIME_SCALE}), {args.repeats} repeats, "
          f"{args.min_secs:g} simulated s per cell; latency ms per repeat")  # fmt: skip
    names = sorted({n for by_config, _o, _t in results.values() for n in by_config})
    for name in names:
        print(f"\n{name}")
        for mode, (by_config, _outcome, _took) in results.items():
            values = by_config.get(name, [])
            if len(values) < 2:
                print(f"  {mode:<22} too few ok repeats")
                continue
            rng, cv = spread(values)
            text = " ".join(f"{v:7.2f}" for v in values)
            print(f"  {mode:<22} {text}   spread {rng:6.1%}  cv {cv:6.1%}")
    print()
    for mode, (_by, outcome, took) in results.items():
        cells = outcome.cells
        hot = sum(c.hot for c in cells)
        throttled = sum(c.throttled for c in cells)
        waited = sum(c.thermal.waited_s for c in cells if c.thermal is not None)
        print(f"{mode:<22} {len(cells)} cells, {throttled} throttled, {hot} hot, "
              f"{waited:.1f} s at the gate, {took:.0f} s wall")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
