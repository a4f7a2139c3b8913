"""Reports built from a run's cell lines: console, Markdown, CSV, JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def write_outputs(
    run_dir: Path | str,
    cells: Iterable[Mapping[str, Any]],
    *,
    header: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write report.md, results.csv and results.json into the run folder (see report.outputs)."""
    from farm.report.outputs import write_outputs as _write

    return _write(run_dir, cells, header=header)
