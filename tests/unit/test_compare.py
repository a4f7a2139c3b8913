"""farm compare: latency verdicts (test, CI, threshold), findings, matching, the gate, the CLI."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from typer.testing import CliRunner

from farm.cli.main import app
from farm.errors import ConfigError, InputError
from farm.results.compare import (
    Change,
    Side,
    _findings,
    compare_runs,
    latency_change,
    parse_fail_on,
    parse_threshold,
)
from farm.results.model import Run, Status, Verdict

RunMaker = Callable[..., Run]


def test_a_twelve_percent_slowdown_over_three_repeats_is_slower(
    write_run: RunMaker, noisy_cells: Callable[..., list[Any]]
) -> None:
    base = write_run("a", noisy_cells(10_000, seed=1) + noisy_cells(5_000, seed=2, delegate="gpu"))
    new = write_run("b", noisy_cells(10_000, seed=3) + noisy_cells(5_600, seed=4, delegate="gpu"))
    result = compare_runs(base, new)
    by_delegate = {c.key.delegate: c for c in result.configs}
    gpu, cpu = by_delegate["gpu"].latency, by_delegate["cpu"].latency
    assert gpu is not None and cpu is not None
    assert gpu.change is Change.SLOWER and gpu.basis == "repeats"
    assert gpu.ci_low < 1.12 < gpu.ci_high and gpu.p_value < 0.05
    assert cpu.change is Change.UNCHANGED
    assert [f.kind for f in by_delegate["gpu"].findings] == ["regression"]
    assert by_delegate["cpu"].findings == ()
    assert result.counts()["slower"] == 1 and result.counts()["unchanged"] == 1


def test_a_change_under_the_threshold_is_unchanged_even_when_significant(
    write_run: RunMaker, noisy_cells: Callable[..., list[Any]]
) -> None:
    base = write_run("a", noisy_cells(10_000, noise=0.002, seed=1))
    new = write_run("b", noisy_cells(10_300, noise=0.002, seed=2))
    (config,) = compare_runs(base, new).configs
    assert config.latency is not None and config.latency.p_value < 0.05
    assert config.change is Change.UNCHANGED
    (config,) = compare_runs(base, new, threshold=0.02).configs
    assert config.change is Change.SLOWER


def test_too_noisy_is_inconclusive_and_says_how_many_repeats(
    write_run: RunMaker, noisy_cells: Callable[..., list[Any]]
) -> None:
    base = write_run("a", noisy_cells(10_000, repeats=2, noise=0.15, seed=5))
    new = write_run("b", noisy_cells(11_000, repeats=2, noise=0.15, seed=6))
    (config,) = compare_runs(base, new).configs
    lat = config.latency
    assert lat is not None and lat.change is Change.INCONCLUSIVE
    assert lat.repeats_needed is not None and lat.repeats_needed > 2
    assert lat.advice and str(lat.repeats_needed) in lat.advice
    assert [f.kind for f in config.findings] == ["inconclusive"]


def test_one_repeat_uses_the_within_run_spread(write_run: RunMaker, cell_of: Any) -> None:
    base = write_run("a", [cell_of(median_us=10_000, std_us=400, count=50)])
    slower = write_run("b", [cell_of(median_us=11_000, std_us=400, count=50)])
    same = write_run("c", [cell_of(median_us=10_050, std_us=400, count=50)])
    (config,) = compare_runs(base, slower).configs
    assert config.latency is not None and config.latency.basis == "within-run"
    assert config.change is Change.SLOWER
    assert compare_runs(base, same).configs[0].change is Change.UNCHANGED
    noisy = write_run("d", [cell_of(median_us=11_000, std_us=9_000, count=5)])
    (config,) = compare_runs(base, noisy).configs
    assert config.change is Change.INCONCLUSIVE
    assert config.latency is not None and "--repeats" in (config.latency.advice or "")


def test_no_false_alarm_on_many_a_a_pairs() -> None:
    def side(rng: random.Random, median: float, n: int = 3) -> Side:
        values = tuple(median * rng.lognormvariate(0, 0.02) for _ in range(n))
        return Side("s", "P", "m", "a", n, {"ok": n}, values, values, (200.0,) * n, (50,) * n,
                    (), (), (), None, None)  # fmt: skip

    rng = random.Random(11)
    alarms = sum(
        latency_change(side(rng, 10_000), side(rng, 10_000)).change  # type: ignore[union-attr]
        in (Change.SLOWER, Change.FASTER)
        for _ in range(500)
    )
    assert alarms <= 5  # 1 % of 500


def test_status_marks_coverage_memory_binary_and_one_sided_configurations(
    write_run: RunMaker, cell_of: Any
) -> None:
    base = write_run(
        "a",
        [
            cell_of("s1", "cpu"),
            cell_of("s1", "gpu", verdict=Verdict.FULL, coverage="full"),
            cell_of("s1", "nnapi", memory_mb=40),
            cell_of("s1", "hexagon", status=Status.FAILED),
            cell_of("s2", "cpu"),
        ],
    )
    new = write_run(
        "b",
        [
            cell_of("s1", "cpu", status=Status.FAILED),
            cell_of("s1", "gpu", verdict=Verdict.NONE, coverage="none"),
            cell_of("s1", "nnapi", memory_mb=60),
            cell_of("s1", "hexagon"),
            cell_of("s3", "cpu", status=Status.TIMEOUT),
        ],
    )
    result = compare_runs(base, new)
    kinds = {
        (c.key.device, c.key.delegate): sorted(f.kind for f in c.findings) for c in result.configs
    }
    assert kinds == {
        ("s1", "cpu"): ["failed"],
        ("s1", "gpu"): ["coverage", "fallback"],
        ("s1", "nnapi"): ["memory"],
        ("s1", "hexagon"): ["recovered"],
        ("s2", "cpu"): ["missing"],
        ("s3", "cpu"): ["failed", "new"],
    }
    counts = result.counts()
    assert counts["only_base"] == 1 and counts["only_new"] == 1


def test_marks_are_findings_by_name_whatever_the_mark() -> None:
    def side(marks: tuple[str, ...]) -> Side:
        return Side("s", "P", "m", "a", 1, {"ok": 1}, (1.0,), (1.0,), (0.0,), (50,), marks,
                    (), (), None, None)  # fmt: skip

    found = _findings(side(("hot",)), side(("inaccurate", "throttled")), None, 0.05)
    assert sorted(f.kind for f in found) == ["cleared", "inaccurate", "throttled"]


def test_match_by_model_and_model_by_name(write_run: RunMaker, cell_of: Any) -> None:
    devices_a = [{"serial": "s1", "fingerprint": "google/panther/7:14/AP1"}]
    devices_b = [{"serial": "s9", "fingerprint": "google/panther/7:14/AP1"}]
    base = write_run("a", [cell_of("s1", model_sha256="a" * 64)], devices=devices_a)
    new = write_run(
        "b",
        [replace(cell_of("s9", model_sha256="c" * 64), device=base.cells[0].device)],
        devices=devices_b,
    )
    by_serial = compare_runs(base, new)
    assert len(by_serial.configs) == 2  # one-sided each
    by_model = compare_runs(base, new, match_by="model")
    assert len(by_model.configs) == 2 and by_model.warnings  # the model's content changed
    both = compare_runs(base, new, match_by="model", model_by="name")
    (config,) = both.configs
    assert config.change is Change.UNCHANGED
    assert config.key.device == "Phone s1 google/panther/7:14/AP1"


def test_json_and_frame_are_complete(
    write_run: RunMaker, noisy_cells: Callable[..., list[Any]]
) -> None:
    base = write_run("a", noisy_cells(10_000, seed=1), labels={"commit": "abc"})
    new = write_run("b", noisy_cells(12_000, seed=2), labels={"commit": "def"})
    result = compare_runs(base, new)
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["base"]["labels"] == {"commit": "abc"}
    (config,) = data["configs"]
    assert config["latency"]["change"] == "slower"
    assert len(config["base"]["repeat_medians_us"]) == 3
    frame = result.frame()
    assert list(frame["change"]) == ["slower"] and frame.loc[0, "kinds"] == "regression"


@pytest.mark.parametrize(
    ("text", "value"), [("5%", 0.05), ("5", 0.05), ("0.05", 0.05), ("12.5%", 0.125)]
)
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


def test_parse_fail_on_names_unknown_kinds() -> None:
    assert parse_fail_on("regression, fallback") == ("regression", "fallback")
    with pytest.raises(ValueError, match="unknown kind 'regresion'"):
        parse_fail_on("regresion")


# ---------------------------------------------------------------------------- the gate (CLI)


def _gate_runs(write_run: RunMaker, noisy_cells: Any, cell_of: Any, kind: str) -> tuple[Run, Run]:
    """A base run and a new run that differ by one finding of `kind`."""
    base_cells = noisy_cells(10_000, seed=1)
    new_cells = noisy_cells(10_000, seed=2)
    if kind == "regression":
        new_cells = noisy_cells(12_000, seed=2)
    elif kind == "failed":
        new_cells = [replace(c, status=Status.FAILED, metrics=None) for c in new_cells]
    elif kind == "missing":
        base_cells += [cell_of(delegate="gpu")]
    elif kind == "inconclusive":
        base_cells = noisy_cells(10_000, repeats=2, noise=0.2, seed=5)
        new_cells = noisy_cells(11_000, repeats=2, noise=0.2, seed=6)
    elif kind == "coverage":
        base_cells = noisy_cells(10_000, seed=1, delegate="gpu", coverage="full")
        new_cells = noisy_cells(10_000, seed=2, delegate="gpu", coverage="partial")
    elif kind == "memory":
        new_cells = noisy_cells(10_000, seed=2, memory_mb=80.0)
    elif kind == "fallback":
        base_cells = noisy_cells(10_000, seed=1, delegate="gpu", verdict=Verdict.FULL)
        new_cells = noisy_cells(10_000, seed=2, delegate="gpu", verdict=Verdict.NOT_APPLIED)
    return write_run("base", base_cells), write_run("new", new_cells)


GATE_KINDS = ["regression", "failed", "missing", "inconclusive", "coverage", "memory", "fallback"]


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_gate_exit_code_and_verdict_for_each_kind(
    kind: str, write_run: RunMaker, noisy_cells: Any, cell_of: Any
) -> None:
    base, new = _gate_runs(write_run, noisy_cells, cell_of, kind)
    runner = CliRunner()
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    args = ["compare", str(base.run_dir), str(new.run_dir)]
    hit = runner.invoke(app, [*args, "--fail-on", kind], env=env)
    assert hit.exit_code == 4, hit.output
    assert "gate: FAIL (" in hit.output and kind in hit.output.split("gate: FAIL")[1]
    others = ",".join(k for k in GATE_KINDS if k != kind)
    passed = runner.invoke(app, [*args, "--fail-on", others], env=env)
    assert passed.exit_code == 0, passed.output
    assert "gate: pass" in passed.output
    as_json = runner.invoke(app, [*args, "--json", "--fail-on", kind], env=env)
    assert as_json.exit_code == 4
    assert json.loads(as_json.stdout)["gate_failed"] is True


def test_compare_cli_errors_are_one_line(write_run: RunMaker, cell_of: Any, tmp_path: Any) -> None:
    run = write_run("a", [cell_of()])
    runner = CliRunner()
    bad = runner.invoke(app, ["compare", str(run.run_dir), str(tmp_path / "nope")])
    assert isinstance(bad.exception, InputError) and bad.exception.exit_code == 2
    assert "nope: no results.jsonl" in str(bad.exception)
    bad = runner.invoke(
        app, ["compare", str(run.run_dir), str(run.run_dir), "--fail-on", "regresion"]
    )
    assert isinstance(bad.exception, ConfigError) and "regresion" in str(bad.exception)
