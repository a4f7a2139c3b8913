"""Reports built from a run's cells: console, Markdown, CSV, JSON."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from farm.results.model import CellResult, RunHeader


def write_outputs(
    run_dir: Path | str,
    cells: Iterable[CellResult],
    *,
    header: RunHeader | None = None,
) -> dict[str, Path]:
    """Write report.md, results.csv and results.json into the run folder (see report.outputs)."""
    from farm.report.outputs import write_outputs as _write

    return _write(run_dir, cells, header=header)
