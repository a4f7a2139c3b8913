"""Reports built from a run's cells: console, Markdown, CSV, JSON, HTML, JUnit.

The wrappers here import the renderers (pandas, matplotlib) only when called.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from farm.results.model import CellResult, RunHeader


def write_outputs(
    run_dir: Path | str,
    cells: Iterable[CellResult],
    *,
    header: RunHeader | None = None,
    **options: Any,
) -> dict[str, Path]:
    """Write the report files into the run folder (see report.outputs.write_outputs for the
    options: formats, reference, fail_on, comparison, regressions)."""
    from farm.report.outputs import write_outputs as _write

    return _write(run_dir, cells, header=header, **options)


def append_step_summary(markdown_path: Path) -> Path | None:
    """Append report.md to the CI job summary $GITHUB_STEP_SUMMARY names, if set."""
    from farm.report.outputs import append_step_summary as _append

    return _append(markdown_path)
