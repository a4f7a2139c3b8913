"""The lab's `slowdown` fault: options, and which benchmarks of a phone it slows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farm.errors import ConfigError
from farm.profiles import get_profile
from farm.sim.benchmark_model import Benchmark, Out, Phone, VirtualClock, _Marker, parse_flags
from farm.sim.faults import parse_fault


def test_slowdown_options() -> None:
    assert parse_fault("slowdown", {"factor": "1.12"}) == {
        "factor": 1.12,
        "delegate": "*",
        "model": "*",
    }
    assert parse_fault("slowdown", {"factor": 2, "delegate": "GPU", "model": "3fa2*"})[
        "delegate"
    ] == ("gpu")
    with pytest.raises(ConfigError, match="factor=... is required"):
        parse_fault("slowdown", {})
    with pytest.raises(ConfigError, match="bad value for delegate"):
        parse_fault("slowdown", {"factor": 1.1, "delegate": "tpu"})
    with pytest.raises(ConfigError, match="bad value for factor"):
        parse_fault("slowdown", {"factor": 0})


def _benchmark(tmp_path: Path, fault: dict[str, object] | None, *flags: str) -> Benchmark:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "faults.json").write_text(json.dumps({"slowdown": fault} if fault else {}))
    phone = Phone("emulator-5554", get_profile("pixel_7"), "model", state, 1.0)
    params = parse_flags(["--graph=/data/local/tmp/farm/models/3fa2c0ffee000000.tflite", *flags])
    return Benchmark(phone, params, Out(), _Marker(phone))


@pytest.mark.parametrize(
    ("fault", "flags", "factor"),
    [
        ({"factor": 1.12, "delegate": "gpu", "model": "*"}, ["--use_gpu=true"], 1.12),
        ({"factor": 1.12, "delegate": "gpu", "model": "*"}, [], 1.0),
        ({"factor": 1.12, "delegate": "cpu", "model": "*"}, [], 1.12),
        ({"factor": 1.12, "delegate": "cpu", "model": "*"}, ["--use_xnnpack=true"], 1.12),
        ({"factor": 1.12, "delegate": "cpu", "model": "*"}, ["--use_nnapi=true"], 1.0),
        ({"factor": 1.5, "delegate": "*", "model": "3fa2*"}, ["--use_nnapi=true"], 1.5),
        ({"factor": 1.5, "delegate": "*", "model": "beef*"}, [], 1.0),
        (None, ["--use_gpu=true"], 1.0),
    ],
)
def test_slowdown_matches_delegate_and_model(
    tmp_path: Path, fault: dict[str, object] | None, flags: list[str], factor: float
) -> None:
    assert _benchmark(tmp_path, fault, *flags).slowdown_factor() == factor


def test_slowed_runs_report_and_spend_the_factor(tmp_path: Path) -> None:
    bench = _benchmark(tmp_path, {"factor": 1.25, "delegate": "*", "model": "*"})
    assert isinstance(bench.clock, VirtualClock)
    bench.clock.scale = 0.0
    run = bench.slowed(lambda _warmup: 1000)
    assert run(False) == 1250
    assert bench.clock.now() == 250  # the extra time passes on the phone's clock too
    plain = _benchmark(tmp_path, None)
    same = lambda _warmup: 1000  # noqa: E731
    assert plain.slowed(same) is same
