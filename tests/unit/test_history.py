"""The run history on SQLite and on a real PostgreSQL server; change points; the CLI."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from farm.cli.main import app
from farm.errors import ConfigError, InputError
from farm.history import Filters, History
from farm.history.changepoints import detect_steps
from farm.history.gate import Nightly, baseline_labels, load_baseline
from farm.history.schema import LATEST
from farm.history.store import normalise_url
from farm.results.compare import Change
from farm.results.model import Run, Status

RunMaker = Callable[..., Run]
START = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


def night(n: int) -> str:
    return (START + timedelta(days=n)).isoformat(timespec="seconds")


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.needs("postgresql"))]
)
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite'}"
    url: str = request.getfixturevalue("postgres_db")
    return url


def nightly_series(
    write_run: RunMaker, noisy_cells: Any, nights: int, step_at: int | None, factor: float = 1.12
) -> list[Run]:
    rng = random.Random(7)
    runs = []
    for n in range(nights):
        slow = factor if step_at is not None and n >= step_at else 1.0
        level = 10_000 * rng.lognormvariate(0, 0.015)
        cells = noisy_cells(level, repeats=2, noise=0.005, seed=n)
        cells += noisy_cells(4_000 * slow, repeats=2, noise=0.005, seed=1000 + n, delegate="gpu")
        runs.append(
            write_run(f"night-{n:02d}", cells, labels={"commit": f"c{n:02d}"}, started_at=night(n))
        )
    return runs


def test_record_list_show_trend_and_filters(
    history_url: str, write_run: RunMaker, noisy_cells: Any, cell_of: Any
) -> None:
    a = write_run(
        "a", noisy_cells(10_000), labels={"commit": "abc", "build": "1"}, started_at=night(0)
    )
    b = write_run(
        "b",
        noisy_cells(11_000, seed=3) + [cell_of(delegate="gpu", status=Status.FAILED)],
        labels={"commit": "def"},
        started_at=night(1),
    )
    with History(history_url) as history:
        assert history.add_run(a) == "added"
        assert history.add_run(b) == "added"
        assert history.add_run(b) == "updated"  # imported twice: one run
        rows = history.runs()
        assert [(r.run_id, r.cells, r.ok) for r in rows] == [("b", 4, 3), ("a", 3, 3)]
        assert rows[1].labels == {"commit": "abc", "build": "1"}
        assert [r.run_id for r in history.runs(Filters(labels={"commit": "abc"}))] == ["a"]
        assert [r.run_id for r in history.runs(Filters(delegate="gpu"))] == ["b"]
        assert [r.run_id for r in history.runs(Filters(since=night(1)))] == ["b"]
        assert history.runs(Filters(device="nope")) == []

        loaded = history.load_run("a")
        assert loaded.header.labels == a.header.labels
        assert loaded.cells == a.cells  # typed cells come back whole

        configs = history.configurations()
        assert [(c.delegate, c.threads) for c in configs] == [("cpu", 1), ("gpu", 1)]
        cpu = configs[0]
        trend = history.trend(cpu)
        assert [p.run_id for p in trend] == ["a", "b"]
        assert trend[1].median_us and trend[0].median_us
        assert 1.05 < trend[1].median_us / trend[0].median_us < 1.15
        (gpu_point,) = history.trend(configs[1])
        assert gpu_point.status == "failed" and gpu_point.median_us is None

        assert history.latest({"commit": "abc"}) is not None
        newest = history.latest()
        assert newest is not None and newest.header.run_id == "b"
        other = history.latest(exclude="b")
        assert other is not None and other.header.run_id == "a"
        assert history.latest({"commit": "zzz"}) is None


def test_a_step_in_sixty_nights_is_found_at_its_run(
    history_url: str, write_run: RunMaker, noisy_cells: Any
) -> None:
    runs = nightly_series(write_run, noisy_cells, 60, step_at=41)
    with History(history_url) as history:
        for run in runs:
            history.add_run(run)
        found = history.regressions()
        assert [(g.config.delegate, g.point.run_id, g.point.labels["commit"]) for g in found] == [
            ("gpu", "night-41", "c41")
        ]
        assert 10 < found[0].step.percent < 14
        assert history.regressions(Filters(since=night(50))) == []
        assert history.regressions(Filters(delegate="cpu")) == []


def test_change_points_on_synthetic_series() -> None:
    rng = random.Random(3)
    hits = 0
    for trial in range(50):
        step = 20 + trial % 30
        values = [
            1000 * rng.lognormvariate(0, 0.02) * (1.10 if i >= step else 1) for i in range(60)
        ]
        hits += [s.index for s in detect_steps(values)] == [step]
    assert hits >= 47
    flat = [1000 * rng.lognormvariate(0, 0.02) for _ in range(60)]
    assert detect_steps(flat) == []
    two = [100.0] * 20 + [120.0] * 20 + [100.0] * 20
    assert [(s.index, round(s.percent)) for s in detect_steps(two)] == [(20, 20), (40, -17)]
    assert detect_steps([100.0, 200.0]) == []


def test_migrations_are_versioned_and_newer_schemas_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    History(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        assert conn.execute(text("select version from farm_schema_version")).scalar() == LATEST
        conn.execute(text("update farm_schema_version set version = :v"), {"v": LATEST + 1})
    engine.dispose()
    with pytest.raises(InputError, match=f"history schema {LATEST + 1} is newer"):
        History(url)


def test_urls_and_bad_databases(tmp_path: Path) -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url(str(tmp_path / "x.sqlite")).startswith("sqlite:////")
    with pytest.raises(InputError, match="not a usable history URL"):
        History("nosuchdb://x")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="junk.sqlite"):
        History(str(tmp_path / "junk.sqlite"))


def test_baseline_from_history_or_folder(
    tmp_path: Path, write_run: RunMaker, noisy_cells: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    a = write_run("a", noisy_cells(10_000), labels={"branch": "main"}, started_at=night(0))
    b = write_run("b", noisy_cells(12_000, seed=4), labels={"branch": "dev"}, started_at=night(1))
    with History(url) as history:
        history.add_run(a)
        history.add_run(b)
    assert baseline_labels("history") == {}
    assert baseline_labels("history:branch=main,os=14") == {"branch": "main", "os": "14"}
    assert baseline_labels(str(a.run_dir)) is None
    assert load_baseline("history:branch=main", url).header.run_id == "a"
    assert load_baseline("history", url).header.run_id == "b"
    assert load_baseline(str(a.run_dir), url).header.run_id == "a"
    with pytest.raises(ConfigError, match="no run with branch=x"):
        load_baseline("history:branch=x", url)

    gate = Nightly(baseline="history:branch=main", history_url=url, fail_on=("regression",))
    from farm.results.model import RunOutcome

    outcome = gate.finish(b, RunOutcome(run_dir=b.run_dir), gate.baseline_run())
    assert outcome.gate_failed and outcome.exit_code == 4
    assert outcome.comparison is not None
    assert [c.change for c in outcome.comparison.configs] == [Change.SLOWER]


def test_history_cli(tmp_path: Path, write_run: RunMaker, noisy_cells: Any) -> None:
    runs = nightly_series(write_run, noisy_cells, 20, step_at=15, factor=1.2)
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    runner = CliRunner()
    env = {"COLUMNS": "200", "NO_COLOR": "1", "FARM_HISTORY": url}
    added = runner.invoke(app, ["history", "add", *(str(r.run_dir) for r in runs)], env=env)
    assert added.exit_code == 0, added.output
    assert added.output.count("added night-") == 20

    listed = runner.invoke(app, ["history", "list", "--label", "commit=c03", "--json"], env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["night-03"]
    shown = runner.invoke(app, ["history", "show", "night-03"], env=env)
    assert shown.exit_code == 0 and "commit=c03" in shown.output

    trend = runner.invoke(app, ["history", "trend", "--delegate", "gpu"], env=env)
    assert trend.exit_code == 0, trend.output
    assert trend.output.count("night-") == 20
    (step_line,) = [line for line in trend.output.splitlines() if "step" in line]
    assert "night-15" in step_line and "commit=c15" in step_line

    regressions = runner.invoke(app, ["history", "regressions", "--since", "9999d"], env=env)
    assert regressions.exit_code == 0, regressions.output
    (line,) = regressions.output.strip().splitlines()
    assert "night-15" in line and "commit=c15" in line and "gpu" in line
    quiet = runner.invoke(app, ["history", "regressions", "--since", "1d", "--json"], env=env)
    assert json.loads(quiet.stdout) == []

    missing = runner.invoke(app, ["history", "show", "nope"], env=env)
    assert isinstance(missing.exception, InputError) and "no run 'nope'" in str(missing.exception)


def test_report_trends_mark_the_step_and_come_first(
    history_url: str, write_run: RunMaker, noisy_cells: Any
) -> None:
    from farm.report.baseline import history_trends, with_trends

    runs = nightly_series(write_run, noisy_cells, 30, step_at=20)
    with History(history_url) as history:
        for run in runs:
            history.add_run(run)
    charts = history_trends(history_url, runs[-1].cells)
    assert len(charts) == len({(c.serial, c.model, c.delegate, c.threads) for c in runs[-1].cells})
    step = re.compile(r"[+-]\d+\.\d%")  # the step's size, written beside its line
    first = charts[0]
    assert first.startswith("<svg") and "· gpu ·" in first
    assert [float(m[:-1]) for m in step.findall(first)] and 10 < float(
        step.findall(first)[0][:-1]
    ) < 14
    assert not any(step.search(svg) for svg in charts[1:])
    section = with_trends(None, charts)
    assert section is not None and section.frame.empty and len(section.trends) == len(charts)
    assert with_trends(None, []) is None
