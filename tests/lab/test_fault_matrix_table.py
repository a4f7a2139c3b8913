"""The fault matrix (farm/sim/fault_matrix.py) is complete, and docs/reliability.md shows it."""

from __future__ import annotations

import re
from pathlib import Path

from farm.bench.runner import PHASES
from farm.sim.fault_matrix import FAULTS, MATRIX, render_doc
from farm.sim.faults import FAULTS as LAB_FAULTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def test_matrix_covers_every_fault_at_every_phase() -> None:
    assert set(FAULTS) == set(LAB_FAULTS) - {"clear", "slowdown"}
    seen = [(r.fault, r.phase) for r in MATRIX]
    assert len(seen) == len(set(seen))
    assert set(seen) == {(f, p) for f in FAULTS for p in PHASES}
    for r in MATRIX:
        assert r.why and r.recovery, r.label
        if r.meaningful:
            assert r.after is not None


def test_rows_that_say_it_is_retried_expect_a_retry() -> None:
    # The lab test checks `retried` against the hit cell's `retries`; discovery has no cell.
    for r in MATRIX:
        says = re.search(r"(?<!not )\bretried\b", r.why)
        if r.meaningful and r.phase != "discovery" and says:
            assert r.retried, f"{r.label} at {r.phase} says it is retried but expects no retry"


def test_reliability_doc_shows_the_current_matrix() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, (
        "docs/reliability.md is out of date: run .venv/bin/python scripts/reliability_table.py"
    )
