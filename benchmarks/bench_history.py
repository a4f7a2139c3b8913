"""History at scale: record N runs, then time `trend` for one configuration and `regressions`.

Each synthetic run has 4 devices × 2 models × 3 delegates × 1 repeat (24 cells, one step in one
series), recorded with `History.add_run` as `farm run --history` records a loaded run.
The target: with 1,000 runs, `trend` for one configuration answers in under a second.

    python benchmarks/bench_history.py [--runs 1000] [--url sqlite:///... | postgresql://...]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from farm.history import Filters, History
from farm.results.model import (
    CellResult,
    DeviceSummary,
    Metrics,
    PlanRecord,
    Run,
    RunHeader,
    Status,
)

DEVICES = ["pixel-1", "pixel-2", "s23-1", "a54-1"]
MODELS = ["a" * 64, "b" * 64]
DELEGATES = ["cpu", "gpu", "nnapi"]


def cells_for(night: int, rng: random.Random, step_at: int) -> list[CellResult]:
    out = []
    for serial in DEVICES:
        for sha in MODELS:
            for delegate in DELEGATES:
                level = 10_000.0 * (1.15 if (serial, sha, delegate) == ("pixel-1", MODELS[0], "gpu")
                                     and night >= step_at else 1.0)  # fmt: skip
                median = level * rng.lognormvariate(0, 0.02)
                out.append(
                    CellResult(
                        key=f"{serial}|{sha[:16]}|{delegate}|1|0",
                        serial=serial,
                        server="",
                        device=DeviceSummary(model=serial.split("-")[0]),
                        model=f"model-{sha[0]}.tflite",
                        model_sha256=sha,
                        delegate=delegate,
                        threads=1,
                        repeat=0,
                        status=Status.OK,
                        metrics=Metrics(
                            inference_median_us=median,
                            inference_avg_us=median,
                            inference_std_us=median * 0.03,
                            inference_count=50,
                        ),
                    )
                )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--url", default=None, help="history URL (default: a temp SQLite file)")
    args = parser.parse_args()
    rng = random.Random(1)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory(prefix="farm-bench-history-") as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'history.sqlite'}"
        with History(url) as history:
            t0 = time.perf_counter()
            for n in range(args.runs):
                run_dir = Path(tmp) / "runs" / f"run-{n:05d}"
                cells = cells_for(n, rng, step_at=args.runs - 10)
                header = RunHeader(
                    run_id=run_dir.name,
                    plan=PlanRecord(),
                    labels={"commit": f"c{n:05d}"},
                    started_at=(start + timedelta(hours=n)).isoformat(timespec="seconds"),
                )
                history.add_run(Run(path=run_dir / "results.jsonl", header=header, cells=cells))
            record_s = time.perf_counter() - t0
            filters = Filters(device="pixel-1", model="a", delegate="gpu", threads=1)
            t0 = time.perf_counter()
            (config,) = history.configurations(filters)
            points = history.trend(config)
            trend_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = history.regressions()
            regress_s = time.perf_counter() - t0
    kind = url.split(":")[0]
    print(f"history {kind}: {args.runs} runs x {len(cells)} cells recorded in {record_s:.1f} s")
    print(f"trend for one configuration: {len(points)} points in {trend_s * 1000:.0f} ms")
    steps = ", ".join(f"{g.config.key} at {g.point.run_id} {g.step.percent:+.1f} %" for g in found)
    print(f"regressions: {len(found)} step(s) in {regress_s:.2f} s: {steps}")
    return 0 if trend_s < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
