"""Fixtures for unit tests: run folders written through the real journal, from numbers."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from farm.results.journal import Journal, load_run
from farm.results.model import (
    CellResult,
    Delegation,
    DeviceSummary,
    Metrics,
    PlanRecord,
    Run,
    RunHeader,
    RunSummary,
    Status,
    Verdict,
    count_statuses,
)


def make_cell(
    serial: str = "s1",
    delegate: str = "cpu",
    threads: int = 1,
    repeat: int = 0,
    *,
    median_us: float = 10_000.0,
    std_us: float = 300.0,
    count: int = 50,
    status: Status = Status.OK,
    verdict: Verdict | None = None,
    coverage: str | None = None,
    memory_mb: float | None = 40.0,
    model: str = "mobilenet.tflite",
    model_sha256: str = "a" * 64,
) -> CellResult:
    """One cell as the runner writes it (metrics only when ok)."""
    metrics = (
        Metrics(
            threads=threads,
            inference_avg_us=median_us * 1.01,
            inference_std_us=std_us,
            inference_count=count,
            inference_median_us=median_us,
            memory_peak_mb=memory_mb,
        )
        if status is Status.OK
        else None
    )
    return CellResult(
        key=f"{serial}|{model_sha256[:16]}|{delegate}|{threads}|{repeat}",
        serial=serial,
        server="127.0.0.1:5037",
        device=DeviceSummary(model=f"Phone {serial}", soc="soc", sdk=34, abi="arm64-v8a"),
        model=model,
        model_sha256=model_sha256,
        delegate=delegate,
        threads=threads,
        repeat=repeat,
        status=status,
        reason=None if status is Status.OK else "the tool said so",
        metrics=metrics,
        delegation=Delegation(coverage=coverage) if coverage else None,
        delegate_kind=delegate.partition(":")[0],
        verdict=verdict,
        binary_sha256="b" * 64,
    )


@pytest.fixture
def cell_of() -> Callable[..., CellResult]:
    """cell_of(serial, delegate, threads, repeat, *, median_us, status, verdict, ...)."""
    return make_cell


@pytest.fixture
def noisy_cells() -> Callable[..., list[CellResult]]:
    """noisy_cells(median_us, repeats, *, noise=0.01, seed, **cell) -> one cell per repeat, its
    median drawn around `median_us` with lognormal noise of that sigma."""

    def make(
        median_us: float, repeats: int = 3, *, noise: float = 0.01, seed: int = 0, **kw: Any
    ) -> list[CellResult]:
        rng = random.Random(seed)
        return [
            make_cell(repeat=r, median_us=median_us * rng.lognormvariate(0, noise), **kw)
            for r in range(repeats)
        ]

    return make


@pytest.fixture
def write_run(tmp_path: Path) -> Callable[..., Run]:
    """write_run(run_id, cells, *, labels=None, started_at=None, devices=()) -> the loaded Run
    of a run folder written with the journal under tmp_path/runs."""

    def write(
        run_id: str,
        cells: Sequence[CellResult],
        *,
        labels: dict[str, str] | None = None,
        started_at: str | None = None,
        devices: Sequence[dict[str, Any]] = (),
    ) -> Run:
        header = RunHeader(
            run_id=run_id,
            plan=PlanRecord(devices=tuple(devices)),
            labels=labels or {},
            **({"started_at": started_at} if started_at else {}),
        )
        run_dir = tmp_path / "runs" / run_id
        journal = Journal.create(run_dir, header)
        for c in cells:
            journal.append(c)
        journal.finish(RunSummary(counts=count_statuses(cells)))
        return load_run(run_dir)

    return write
