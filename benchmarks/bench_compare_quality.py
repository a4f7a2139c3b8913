"""Quality of `farm compare` on the lab's noise: false alarms on A/A pairs, detection of a slowdown.

Each trial benchmarks one configuration (profile × model × delegate × threads) three times with
the `benchmark_model` stand-in's model engine, in this process, with farm's default run counts:
A and A' on a clean phone, B with the lab's `slowdown` fault (default 10 %). Every log is read by
farm's parser into cells, and the configuration is judged as `farm compare` judges it. A false
alarm is A/A' called faster or slower; a detection is A/B called slower. Targets: at most 1 %
false alarms, at least 95 % detections. The numbers printed are measured here, nothing else.

    python benchmarks/bench_compare_quality.py [--trials 300] [--repeats 1] [--factor 1.10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from farm.bench.flags import benchmark_args
from farm.bench.parse import parse_text
from farm.config import Config, DelegateSpec
from farm.profiles import get_profile
from farm.results.compare import DEFAULT_THRESHOLD, Change, latency_change, summarize
from farm.results.model import CellResult, DeviceSummary, Metrics, Status
from farm.sim import benchmark_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "models").glob("*.tflite"))
PROFILES = ["pixel_7", "galaxy_s23", "galaxy_a54"]
DELEGATES = ["cpu", "gpu"]
THREADS = [1, 4]


def phone_state(folder: Path, profile: str, slowdown: float | None) -> Path:
    """A phone state folder the stand-in reads: profile, model engine, no sleeping, faults."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.json").write_text(get_profile(profile).model_dump_json())
    (folder / "engine").write_text("model\n")
    (folder / "time_scale").write_text("0\n")
    faults = {"slowdown": {"factor": slowdown, "delegate": "*", "model": "*"}} if slowdown else {}
    (folder / "faults.json").write_text(json.dumps(faults))
    (folder / "running").mkdir(exist_ok=True)
    return folder


def run_forked(state: Path, argv: list[str]) -> tuple[int, str]:
    """The stand-in run in a forked child (a simulated delegate crash kills only the child):
    its exit status and output."""
    with tempfile.TemporaryFile() as log:
        pid = os.fork()
        if pid == 0:  # the child: the tool's streams go to the log
            code = 1
            try:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                os.environ["FARM_SIM_STATE"] = str(state)
                code = benchmark_model.main(argv)
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        log.seek(0)
        return os.waitstatus_to_exitcode(status), log.read().decode("utf-8", "replace")


def one_run(state: Path, model: Path, delegate: str, threads: int, repeat: int) -> CellResult:
    """One benchmark_model invocation on the stand-in, parsed into a cell."""
    argv = benchmark_args(
        DelegateSpec.model_validate(delegate), threads=threads, graph=str(model), config=Config()
    )
    code, text = run_forked(state, argv)
    results = parse_text(text)
    data = results[-1].to_dict() if results else None
    ok = code == 0 and data is not None and data.get("status") == "ok"
    return CellResult(
        key=f"{state.name}|{model.name}|{delegate}|{threads}|{repeat}",
        serial=state.name,
        server="",
        device=DeviceSummary(model=state.name),
        model=model.name,
        model_sha256=model.name,
        delegate=delegate,
        threads=threads,
        repeat=repeat,
        status=Status.OK if ok else Status.FAILED,
        metrics=Metrics.from_json(data),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1, help="repeats per side (default 1)")
    parser.add_argument("--factor", type=float, default=1.10)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    configs = list(itertools.product(PROFILES, MODELS, DELEGATES, THREADS))
    rng = random.Random(args.seed)
    alarms = detected = judged = skipped = 0
    verdicts: dict[str, dict[str, int]] = {"a/a": {}, "a/b": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="farm-quality-") as tmp:
        for trial in range(args.trials):
            profile, model, delegate, threads = rng.choice(configs)
            clean = phone_state(Path(tmp) / f"{profile}-clean", profile, None)
            slow = phone_state(Path(tmp) / f"{profile}-slow", profile, args.factor)
            sides = {
                name: summarize(
                    [one_run(state, model, delegate, threads, r) for r in range(args.repeats)]
                )
                for name, state in (("a", clean), ("a2", clean), ("b", slow))
            }
            aa = latency_change(sides["a"], sides["a2"], threshold=args.threshold)
            ab = latency_change(sides["a"], sides["b"], threshold=args.threshold)
            if aa is None or ab is None:  # the delegate failed on this phone: nothing to time
                skipped += 1
                continue
            judged += 1
            alarms += aa.change in (Change.SLOWER, Change.FASTER)
            detected += ab.change is Change.SLOWER
            for key, lat in (("a/a", aa), ("a/b", ab)):
                verdicts[key][lat.change.value] = verdicts[key].get(lat.change.value, 0) + 1
            if (trial + 1) % 50 == 0:
                print(f"  {trial + 1} trials ...", file=sys.stderr)
    elapsed = time.perf_counter() - start
    false_rate = alarms / judged if judged else float("nan")
    detect_rate = detected / judged if judged else float("nan")
    print(
        f"engine model (lab noise), repeats per side {args.repeats}, slowdown "
        f"{(args.factor - 1) * 100:.0f} %, threshold {args.threshold * 100:g} %"
    )
    print(f"configurations judged: {judged} (skipped, no timing: {skipped}); {elapsed:.0f} s")
    print(
        f"false alarms (A/A called faster or slower): {alarms} = {false_rate:.1%} (target <= 1 %)"
    )
    print(f"detections (A/B called slower): {detected} = {detect_rate:.1%} (target >= 95 %)")
    print(f"verdicts: {json.dumps(verdicts)}")
    ok = false_rate <= 0.01 and detect_rate >= 0.95
    if not ok:
        print(f"targets NOT met at {args.repeats} repeat(s): try --repeats {args.repeats + 2}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
