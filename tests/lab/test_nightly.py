"""The nightly story on the lab: run A, slow one phone's GPU, run B; `farm compare`, the
history and the `--baseline/--fail-on` gate see exactly that, and A against A' sees nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from junitparser import Failure, JUnitXml

from farm.history import Filters, History
from farm.results.journal import load_run
from farm.sim.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.needs("bubblewrap")]

MATRIX = {
    "delegates": ["cpu", "gpu"],
    "repeats": 3,
    "num_runs": 20,
    "warmup_runs": 1,
}


def _run_dir(stdout: str) -> Path:
    return Path(json.loads(stdout)["run_dir"])


def test_slowdown_is_found_by_compare_history_and_gate(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    lab = start_lab(["pixel_7", "galaxy_s23"], time_scale=0)
    slow = next(p.serial for p in lab.phones if p.profile == "pixel_7")
    config = run_config(**MATRIX)
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    base = ["run", "-c", config, "--json", "--no-progress", "--history-url", url]

    first = farm_cli(*base, "--label", "commit=aaa")
    assert first.returncode == 0, first.stderr
    run_a = _run_dir(first.stdout)
    again = farm_cli(*base, "--label", "commit=bbb")
    assert again.returncode == 0, again.stderr
    run_a2 = _run_dir(again.stdout)

    lab.fault(slow, "slowdown", factor=1.12, delegate="gpu")
    gated = farm_cli(
        *base,
        "--label",
        "commit=ccc",
        "--baseline",
        "history:commit=bbb",
        "--fail-on",
        "regression",
    )
    assert gated.returncode == 4, gated.stderr
    outcome = json.loads(gated.stdout)
    run_b = Path(outcome["run_dir"])
    assert outcome["gate_failed"] is True
    assert outcome["comparison"]["base"]["labels"] == {"commit": "bbb"}
    assert load_run(run_b).header.labels == {"commit": "ccc"}
    # The run's own report shows the comparison, regressions first, and junit.xml fails them.
    html = (run_b / "report.html").read_text()
    assert "Against the baseline" in html and "commit=bbb" in html
    assert 'data-plot="trend-' in html  # the run was recorded: each configuration's history
    junit = JUnitXml.fromfile(str(run_b / "junit.xml"))
    failed = {
        (suite.name, case.name)
        for suite in junit
        for case in suite
        if any(isinstance(r, Failure) and "slower" in (r.message or "") for r in case.result)
    }
    assert failed and all(name.startswith("gpu ") for _, name in failed), failed
    # farm report regenerates the same from the folders alone.
    (run_b / "junit.xml").unlink()
    again_report = farm_cli("report", run_b, "--baseline", run_a, "--fail-on", "regression",
                            "--format", "junit,html")  # fmt: skip
    assert again_report.returncode == 0, again_report.stderr
    regenerated = JUnitXml.fromfile(str(run_b / "junit.xml"))
    assert sum(1 for suite in regenerated for case in suite
               for r in case.result if isinstance(r, Failure)) == len(failed)  # fmt: skip

    # A against A': nothing to report, exit 0 even with every kind on the gate.
    same = farm_cli("compare", run_a, run_a2, "--json", "--fail-on", "regression,failed,fallback")
    assert same.returncode == 0, same.stdout + same.stderr
    data = json.loads(same.stdout)
    # Nothing is named; a configuration too noisy to call is "inconclusive" (never a finding
    # the gate fails on), with how many repeats would settle it.
    named = [f for c in data["configs"] for f in c["findings"] if f["kind"] != "inconclusive"]
    assert named == []
    changes = [c["latency"]["change"] for c in data["configs"]]
    assert set(changes) <= {"unchanged", "inconclusive"}
    assert changes.count("unchanged") >= len(changes) - 1, changes

    # A against B: exactly the slowed phone's GPU configurations, about 12 % slower.
    diff = farm_cli("compare", run_a, run_b, "--json")
    assert diff.returncode == 0, diff.stderr
    data = json.loads(diff.stdout)
    slower = [c for c in data["configs"] if c["latency"]["change"] == "slower"]
    assert {(c["key"]["device"], c["key"]["delegate"]) for c in slower} == {(slow, "gpu")}
    for c in slower:
        assert 8 < c["latency"]["percent"] < 16, c["latency"]
        assert [f["kind"] for f in c["findings"]] == ["regression"]
    others = [c for c in data["configs"] if c not in slower]
    assert others and all(c["latency"]["change"] == "unchanged" for c in others)

    text = farm_cli("compare", run_a, run_b, "--fail-on", "regression")
    assert text.returncode == 4
    assert "gate: FAIL" in text.stdout and "slower" in text.stdout
    assert slow in text.stdout

    with History(url) as history:
        assert [r.labels["commit"] for r in history.runs()] == ["ccc", "bbb", "aaa"]
        (config,) = history.configurations(Filters(device=slow, delegate="gpu"))
        trend = history.trend(config)
        assert [p.labels["commit"] for p in trend] == ["aaa", "bbb", "ccc"]
        assert trend[2].median_us and trend[1].median_us
        assert 1.08 < trend[2].median_us / trend[1].median_us < 1.16
